"""Every target of the matrix passes the real ``packer validate`` (Debian's Packer 1.6.6)."""

from __future__ import annotations

import shutil

import pytest
from helpers.common import REPO, VSPHERE, write_json

from imagebuilder import api
from imagebuilder.config.catalog import HYPERVISORS
from imagebuilder.config.checkout import find_checkout
from imagebuilder.config.knobs import Knobs

pytestmark = [pytest.mark.packer,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")]

#: Windows targets: tests/content/test_windows_packer_validate.py
OS_NAMES = [o for o in find_checkout().os_names() if not o.startswith("windows-")]

#: Flatcar's checksum is a DIGESTS file that vmware-iso's validate downloads;
#: tests never reach out, so Flatcar's local targets get a literal checksum.
OFFLINE_FLATCAR = {"iso_checksum_type": "sha512", "iso_checksum": "0" * 128}

CORPUS = REPO / "tests" / "data" / "upstream_shaped"
UPSTREAM_SHAPED = sorted((CORPUS / "config").glob("*.json")) + sorted((CORPUS / "docs").glob("*.json"))


@pytest.mark.parametrize("hv", list(HYPERVISORS))
@pytest.mark.parametrize("os_name", OS_NAMES)
def test_validate(checkout, tmp_path, hv, os_name):
    vmx = tmp_path / "base.vmx"
    vmx.write_text("")
    files = [write_json(tmp_path / "vsphere.json", VSPHERE),
             write_json(tmp_path / "vmx.json", {"source_path": str(vmx)})]
    # upstream-shaped var files setting every variable upstream's Linux OVA targets take
    files += UPSTREAM_SHAPED
    if os_name == "flatcar":
        files.append(write_json(tmp_path / "offline.json", OFFLINE_FLATCAR))
    env = {"PACKER_VAR_FILES": " ".join(map(str, files)), "RHSM_USER": "someone",
           "RHSM_PASS": "rhsm-Secret-42"}
    targets = api.resolve_targets([f"validate-node-ova-{hv}-{os_name}"], checkout)
    report = api.run(targets, "validate", checkout=checkout, knobs=Knobs.from_env(env))
    [result] = report.results
    log = open(result.log).read()
    assert result.ok, log
    assert "Error" not in log  # Packer 1.6.6 validates silently; 1.7+ says so


def test_validate_failure_is_reported(checkout, tmp_path):
    """A value our schemas let through but Packer refuses fails the target, with its log."""
    bad = write_json(tmp_path / "bad.json", {"boot_wait": "ten seconds"})
    targets = api.resolve_targets(["validate-node-ova-local-ubuntu-2404"], checkout)
    report = api.run(targets, "validate", checkout=checkout,
                     knobs=Knobs.from_env({"PACKER_VAR_FILES": str(bad)}))
    [result] = report.results
    assert report.exit_code == 1 and result.result == "failed"
    assert "packer validate exited with code 1" in result.error
    assert "boot_wait" in open(result.log).read()
