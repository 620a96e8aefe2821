"""Every Windows target passes the real ``packer validate`` (Packer 1.6.6) through the
planner's argv, with upstream-shaped Windows var files layered on top."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.common import REPO, VSPHERE, write_json

from imagebuilder import api
from imagebuilder.config.knobs import Knobs

pytestmark = [pytest.mark.packer,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")]

CORPUS = REPO / "tests" / "data" / "upstream_shaped" / "windows"
WINDOWS = ("windows-2019", "windows-2019-efi", "windows-2022", "windows-2022-efi")


@pytest.mark.parametrize("hv", ["local", "vsphere"])
@pytest.mark.parametrize("os_name", WINDOWS)
def test_validate(checkout, tmp_path, hv, os_name):
    isos = []
    for name in ("windows.iso", "vmtools.iso"):
        (tmp_path / name).write_bytes(b"stand-in")
        isos.append((tmp_path / name).as_uri())
    files = [write_json(tmp_path / "vsphere.json", VSPHERE), CORPUS / "windows-settings.json",
             write_json(tmp_path / "isos.json", {"os_iso_url": isos[0], "vmtools_iso_url": isos[1]})]
    env = {"PACKER_VAR_FILES": " ".join(map(str, files)),
           "WINDOWS_ADMIN_PASSWORD": "Validate-Admin-7"}
    [target] = api.resolve_targets([f"validate-node-ova-{hv}-{os_name}"], checkout)
    report = api.run([target], "validate", checkout=checkout, knobs=Knobs.from_env(env))
    [result] = report.results
    log = open(result.log).read()
    assert result.ok, log
    assert "Error" not in log and "Validate-Admin-7" not in log
    argv_file = checkout.work_root / target.name / "windows.json"
    template = json.loads(argv_file.read_text())  # the copy Packer validated
    assert [p["type"] for p in template["provisioners"]][:2] == ["ansible", "windows-restart"]
    assert {b["communicator"] for b in template["builders"]} == {"{{user `communicator`}}"}


def test_validate_failure_is_reported(checkout, tmp_path):
    """A value our schemas let through but Packer refuses fails the target, with its log."""
    bad = write_json(tmp_path / "bad.json", {"winrm_timeout": "4h", "boot_wait": "soon"})
    [target] = api.resolve_targets(["validate-node-ova-vsphere-windows-2022"], checkout)
    env = {"PACKER_VAR_FILES": f"{write_json(tmp_path / 'vc.json', VSPHERE)} {bad}"}
    report = api.run([target], "validate", checkout=checkout, knobs=Knobs.from_env(env))
    [result] = report.results
    assert report.exit_code == 1 and result.result == "failed"
    assert "boot_wait" in open(result.log).read()
