"""Publishing OVAs to the simulator's Content Library and deploying them back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import connect, objects
from helpers.ova import MiB, flip_byte_in_member, make_vmdk, member_bytes
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.vcsim import vsphere_config, write_vsphere_json
from imagebuilder.vsphere.library import RestSession, find_library, item_files, items
from imagebuilder.vsphere.library_deploy import deploy_from_library, split_library_item
from imagebuilder.vsphere.publish import library_problems, publish_ova
from imagebuilder.vsphere.session import VSphereSettings

pytestmark = [pytest.mark.vcsim, own_simulator("module")]
STEM = "ubuntu-2204-kube-v1.37.1"
INVENTORY = ('{"manager": "dpkg", "distro": "ubuntu", "packages": '
             '["bash\\t5.1-6ubuntu1\\tamd64\\tbash"]}')


@pytest.fixture
def settings(vcsim) -> VSphereSettings:
    return VSphereSettings.from_vars(vsphere_config(vcsim), env={})


@pytest.fixture
def ova(checkout, tmp_path, monkeypatch) -> Path:
    for knob in ("SOURCE_DATE_EPOCH", "IB_SIGNING_KEY", "IB_SIGNING_CERT", "IB_OVFTOOL"):
        monkeypatch.delenv(knob, raising=False)
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(MiB))])
    inventory = tmp_path / "package-inventory.json"
    inventory.write_text(INVENTORY)
    return assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "out",
                                    inventory=inventory)).ova


def library_items(settings, library):
    with RestSession(settings) as rest:
        found = find_library(rest, library)
        return {} if found is None else {
            i.name: (i, {f["name"]: f.get("size") for f in item_files(rest, i)})
            for i in items(rest, found)}


def publish_cli(sim, checkout, tmp_path, *args, wait=True):
    files = write_vsphere_json(sim, tmp_path / "sim-vsphere.json")
    env = dict(os.environ, IB_ROOT=str(checkout.root), PACKER_VAR_FILES=str(files))
    argv = [sys.executable, "-m", "imagebuilder.cli.publish", *args]
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_publish_list_and_deploy_as_template(settings, ova, vcsim):
    published = publish_ova(settings, ova, "acceptance", create=True)
    listed = library_items(settings, "acceptance")
    item, files = listed[STEM]
    assert item.type == "ovf"
    sizes = {f.name: f.size for f in published.files}
    assert files == sizes
    assert set(files) == {f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}-disk-0.vmdk", f"{STEM}.cdx.json"}
    assert "KUBERNETES_SEMVER=v1.37.1" in item.description
    assert f"OVA_SHA256={(ova.parent / (ova.name + '.sha256')).read_text().split()[0]}" \
        in item.description
    deploy_from_library(settings, *split_library_item(f"acceptance/{STEM}"), "from-lib",
                        template=True)
    with connect(vcsim) as si:
        vm = objects(si, vim.VirtualMachine)["from-lib"]
        assert vm.config.template
        descriptor = member_bytes(ova, f"{STEM}.ovf").decode()
        cpus = int(re.search(r"<rasd:VirtualQuantity>(\d+)<", descriptor).group(1))
        assert vm.config.hardware.numCPU == cpus   # the descriptor's hardware
    with pytest.raises(InputError, match="already exists"):
        deploy_from_library(settings, "acceptance", STEM, "from-lib")
    with pytest.raises(InputError, match="has no item 'nope'"):
        deploy_from_library(settings, "acceptance", "nope", "other")


def test_second_publish_needs_force(vcsim, checkout, ova, tmp_path):
    first = publish_cli(vcsim, checkout, tmp_path, str(ova), "--library", "twice",
                        "--create")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"twice/{STEM}"
    again = publish_cli(vcsim, checkout, tmp_path, str(ova), "--library", "twice")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: library 'twice' already has an item named '{STEM}'; pass --force to replace it"]
    forced = publish_cli(vcsim, checkout, tmp_path, str(ova), "--library", "twice",
                         "--force")
    assert forced.returncode == 0, forced.stderr
    assert "(replaced)" in forced.stderr


def test_missing_library_names_the_candidates(settings, ova):
    publish_ova(settings, ova, "present", create=True)
    with pytest.raises(InputError) as err:
        publish_ova(settings, ova, "absent")
    assert "library 'absent' not found" in err.value.message
    assert "present" in err.value.message and "--create" in err.value.message
    assert library_problems(settings, "absent", create=False)[0].startswith(
        "content_library: library 'absent' not found; the libraries there:")
    assert library_problems(settings, "absent", create=True) == []
    assert library_problems(settings, "present", create=False) == []


def test_a_damaged_upload_fails_the_session_and_leaves_no_item(settings, ova, tmp_path):
    """The disk changed after the manifest was written: the publish's own digest of
    what it uploaded (taken before vCenter's checksum check) fails the session;
    the item this publish made is gone."""
    bad = flip_byte_in_member(ova, f"{STEM}-disk-0.vmdk", 4096, tmp_path / f"{STEM}.ova")
    with pytest.raises(BuildError, match="disk-0.vmdk: its SHA256 digest is"):
        publish_ova(settings, bad, "damaged", create=True)
    assert library_items(settings, "damaged") == {}


def test_sigterm_mid_upload_leaves_no_half_item(vcsim, checkout, tmp_path, settings):
    """A large OVA; the publisher is stopped (SIGSTOP) once it starts uploading, the
    simulator shows the half item, then SIGTERM: exit 143, no item."""
    disk = make_vmdk(tmp_path / "big.vmdk", size=256 * MiB,
                     data=[(i * 4 * MiB, os.urandom(4 * MiB)) for i in range(24)])
    ova = assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "big")).ova
    publish_ova(settings, ova, "stopped", create=True, item_name="other")  # the library exists
    proc = publish_cli(vcsim, checkout, tmp_path, str(ova), "--library", "stopped",
                       wait=False)
    try:
        for line in proc.stderr:
            if line.startswith("uploading"):
                proc.send_signal(signal.SIGSTOP)
                break
        assert STEM in library_items(settings, "stopped")       # the half item, mid-upload
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "the upload session was failed" in err
    assert set(library_items(settings, "stopped")) == {"other"}


def test_tls_is_verified_unless_insecure(vcsim, ova):
    strict = VSphereSettings.from_vars(vsphere_config(vcsim, insecure_connection="false"),
                                       env={})
    with pytest.raises(InputError, match="cannot verify the certificate"):
        publish_ova(strict, ova, "tls", create=True)


def test_the_item_description_and_files_are_json_clean(settings, ova):
    """What the REST API hands back is plain JSON the client reads (no surprises)."""
    published = publish_ova(settings, ova, "clean", create=True)
    assert json.loads(member_bytes(ova, f"{STEM}.cdx.json"))["bomFormat"] == "CycloneDX"
    assert {f.algorithm for f in published.files} == {"SHA256"}


def test_the_invoke_tasks(vcsim, checkout, tmp_path, monkeypatch):
    """As a user runs it: publish-node-ova-<hv>-<os> publishes what the target's build
    left; deploy-ova --from-library LIB/ITEM NAME deploys it back as a template."""
    from helpers.common import BIN, REPO, write_json
    for knob in ("SOURCE_DATE_EPOCH", "IB_SIGNING_KEY", "IB_SIGNING_CERT", "IB_OVFTOOL"):
        monkeypatch.delenv(knob, raising=False)
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(MiB))])
    assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1"))   # where the target's build puts it
    env = dict(os.environ, PACKER_VAR_FILES=str(write_json(tmp_path / "v.json",
                                                           vsphere_config(vcsim))))

    def invoke(*args):
        return subprocess.run([str(BIN / "invoke"), *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    published = invoke("publish-node-ova-local-ubuntu-2204", "--library", "by-invoke", "--create")
    assert published.returncode == 0, published.stdout + published.stderr
    assert published.stdout.strip().endswith(f"by-invoke/{STEM}")
    again = invoke("publish-node-ova-local-ubuntu-2204", "--library", "by-invoke")
    assert again.returncode == 2 and "pass --force to replace it" in again.stderr
    deployed = invoke("deploy-ova", "--from-library", f"by-invoke/{STEM}", "via-invoke",
                      "--template")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with connect(vcsim) as si:
        assert objects(si, vim.VirtualMachine)["via-invoke"].config.template
