"""``vcsim-build`` for every OS of the catalog: Packer's real vsphere-iso builder against
the embedded simulator, the OVA verified and deployed back as a template, the round trip
through a Content Library. The six installers that take typed boot commands (RHEL 8/9,
Rocky, Alma, Photon 4/5) type their kickstart URL as ``boot_media_path``: the simulator,
which has no console, must get none of it, and our own simulator file must not make the
planner warn about settings that have no effect."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.checkout import find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.vcsim import simulation

pytestmark = [pytest.mark.packer, pytest.mark.vcsim,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")]

OS_NAMES = find_checkout().os_names()
TYPED = {"rhel-8", "rhel-9", "rockylinux-9", "almalinux-9", "photon-4", "photon-5"}
# RHEL registers with Red Hat: the check wants credentials, the simulator build uses none
ENV = {"RHSM_USER": "rhsm-user", "RHSM_PASS": "rhsm-Secret-1234"}


def test_the_catalog_has_the_typed_boot_command_oses():
    assert TYPED <= set(OS_NAMES) and len(OS_NAMES) == 17


@pytest.mark.parametrize("os_name", OS_NAMES)
def test_vcsim_build_of_every_os(os_name, checkout, vcsim_binary):
    target = parse_target(f"build-node-ova-vsphere-{os_name}", checkout.os_names())
    out = io.StringIO()
    report = simulation.build_against_simulator([target], out=out, checkout=checkout,
                                                knobs=Knobs.from_env(ENV))
    text = out.getvalue()
    assert report.exit_code == 0, text
    assert "warning" not in text.lower()
    name = f"{os_name}-kube-v1.37.1"
    assert f"OVA: {checkout.output_dir / name / name}.ova (verified" in text
    assert f"  {name}-ova  (template)" in text and f"  {name}-from-library  (template)" in text
    log = (checkout.logs_dir / f"build-node-ova-vsphere-{os_name}.log").read_text()
    assert "Typing boot command" in log and "PutUsbScanCodes" not in log
    # the simulator's own var files went with it
    assert not list((checkout.work_root / "vcsim").iterdir())


def test_the_simulator_file_leaves_no_no_effect_warning(checkout, vcsim):
    """A clone has no boot command, a Windows target no iso_url: the simulator's file sets
    them for every target and, being imagebuilder's own, warns about none of them."""
    from imagebuilder import api
    files = simulation.simulator_var_files(vcsim, simulation.work_dir(checkout, "test"))
    knobs = Knobs.from_env(dict(ENV, PACKER_VAR_FILES=" ".join(map(str, files))))
    targets = [parse_target(f"build-node-ova-{hv}-{os_name}", checkout.os_names())
               for hv, os_name in (("vsphere-clone", "ubuntu-2204"), ("vsphere", "rhel-9"),
                                   ("vsphere", "windows-2019-efi"))]
    plans = api.plan_all(targets, "build", checkout, knobs)
    assert [plan.warnings for plan in plans] == [[], [], []]
    # the same settings in a file of the user's do warn (the check is not blind)
    mine = checkout.root / "mine.json"
    mine.write_text(files[1].read_text())
    knobs = Knobs.from_env(dict(ENV, PACKER_VAR_FILES=f"{files[0]} {mine}"))
    plans = api.plan_all(targets, "build", checkout, knobs)
    assert "boot_wait" in " ".join(plans[0].warnings)
    assert "iso_url" in " ".join(plans[2].warnings)


def test_a_vendor_version_keeps_upstreams_names_through_the_whole_loop(checkout, vcsim_binary,
                                                                      tmp_path):
    """kubernetes_semver v1.33.1+vmware.1 (a vendor's build, its URLs and sha256 given):
    VM, output directory, OVA, template and Content Library item keep the +, as upstream's
    names do, and vSphere (the simulator) takes them as they are."""
    vendor = tmp_path / "vendor.json"
    vendor.write_text(json.dumps({
        "kubernetes_semver": "v1.33.1+vmware.1", "kubernetes_series": "v1.33",
        "kubernetes_source_type": "http", "kubernetes_http_source": "https://vendor.example.com",
        "containerd_version": "v2.0.4+vmware.1", "containerd_sha256": "0" * 64,
        "containerd_url": "https://vendor.example.com/containerd-v2.0.4+vmware.1.tar.gz"}))
    target = parse_target("build-node-ova-vsphere-ubuntu-2204", checkout.os_names())
    out = io.StringIO()
    report = simulation.build_against_simulator(
        [target], out=out, checkout=checkout, knobs=Knobs.from_env(
            dict(ENV, PACKER_VAR_FILES=str(vendor))))
    text = out.getvalue()
    assert report.exit_code == 0, text
    name = "ubuntu-2204-kube-v1.33.1+vmware.1"
    ova = checkout.output_dir / name / f"{name}.ova"
    assert f"OVA: {ova} (verified" in text and ova.with_name(f"{name}.ova.sha256").is_file()
    for listed in (name, f"{name}-ova", f"{name}-from-library"):
        assert f"  {listed}  (template)" in text
    assert f"as item '{name}'" in text
