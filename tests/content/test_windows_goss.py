"""goss for Windows images: the provisioner joins the build's template copy when the
plugin is installed (never under communicator none), and the Windows spec renders as
goss renders it, with a Windows build's own values."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.common import REPO, write_json

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.planning.plan import plan_build, write_build_files

GOSS = REPO / "packer" / "goss"
PROVISIONER = json.loads((GOSS / "windows-provisioner.json").read_text())


@pytest.fixture
def plugin(monkeypatch, tmp_path) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "packer-provisioner-goss").write_text("#!/bin/sh\n")  # its presence is all we read
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(plugins))
    return plugins


def windows_plan(checkout, tmp_path, name="node-ova-vsphere-windows-2022", **extra):
    from helpers.common import VSPHERE
    files = write_json(tmp_path / "site.json", {**VSPHERE, **extra})
    return plan_build(checkout, parse_target(name, checkout.os_names()),
                      Knobs.from_env({"PACKER_VAR_FILES": str(files),
                                      "WINDOWS_ADMIN_PASSWORD": "Goss-Admin-12"}))


def test_goss_joins_the_windows_template_copy(checkout, tmp_path, plugin):
    plan = windows_plan(checkout, tmp_path)
    assert plan.goss_plugin
    write_build_files(plan)
    provisioners = json.loads(plan.template.read_text())["provisioners"]
    assert [p["type"] for p in provisioners] == ["ansible", "windows-restart", "goss", "powershell"]
    goss = provisioners[2]
    assert goss["target_os"] == "Windows" and goss["use_sudo"] is False
    assert goss["tests"] == ["./packer/goss/windows"] and "_comment" not in goss
    assert "goss" not in (checkout.packer_dir / "windows.json").read_text().split(
        '"provisioners"')[1]


def test_no_provisioner_without_a_guest(checkout, tmp_path, plugin):
    plan = windows_plan(checkout, tmp_path, communicator="none")
    assert plan.goss_plugin is None
    write_build_files(plan)
    assert json.loads(plan.template.read_text())["provisioners"] == []


@pytest.mark.parametrize("manager", ["windows_service", "nssm"])
def test_the_windows_spec_renders(checkout, tmp_path, gossrender, manager):
    plan = windows_plan(checkout, tmp_path, windows_service_manager=manager,
                        nssm_sha256="ab" * 32)
    values = plan.merged.resolved({})
    variables = {k: re.sub(r"\{\{user `(\w+)`\}\}", lambda m: values.get(m.group(1), ""), v)
                 for k, v in PROVISIONER["vars_inline"].items()}
    variables["cloudbase_init_url"] = "https://example.com/CloudbaseInitSetup_1_1_4_x64.msi"
    run = subprocess.run([str(gossrender), str(GOSS / "windows" / "goss.yaml")],
                         input=json.dumps(variables), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    spec = yaml.safe_load(run.stdout)
    assert set(spec) == {"command", "file"}
    for key, attrs in spec["command"].items():
        assert set(attrs) == {"exec", "exit-status", "stdout"}, key
        assert attrs["exit-status"] == 0 and isinstance(attrs["stdout"], list)
        for pattern in attrs["stdout"]:
            if re.fullmatch(r"/.*/", pattern):
                re.compile(pattern[1:-1])
    for key, attrs in spec["file"].items():
        assert attrs["exists"] is True and "<no value>" not in key, key
    assert "c:\\k\\kubelet.exe" in spec["file"]
    path_check = spec["command"]["kubelet and the runtime's tools are on the machine's PATH"]
    machine_path = "C:\\Windows\\system32;C:\\Program Files\\containerd;c:\\k"
    assert all(re.search(p[1:-1], machine_path) if p.startswith("/") else p in machine_path
               for p in path_check["stdout"])
    assert spec["command"]["kubelet is version v1.37.1"]["stdout"] == ["Kubernetes v1.37.1"]
    script = "RestartKubelet.ps1" if manager == "windows_service" else "StartKubelet.ps1"
    assert f"c:\\k\\{script}" in spec["file"]
    assert spec["file"]["C:\\Program Files\\containerd\\config.toml"]["contents"] == [
        values["pause_image"]]
