"""The vCenter simulator: build, start/stop, and the vsphere.json it implies.

Real processes and a real vSphere API client (pyvmomi), no mocks.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim
from support import connect, objects

from imagebuilder import vcsim as vcsim_module
from imagebuilder.errors import BuildError, InputError
from imagebuilder.vcsim import Simulator, vsphere_config, write_vsphere_json


@pytest.mark.vcsim
def test_vsphere_config_names_exist(vcsim: Simulator) -> None:
    config = vsphere_config(vcsim)
    assert config["vcenter_server"] == vcsim.host
    with connect(vcsim, config["username"], config["password"]) as si:
        datacenter = objects(si, vim.Datacenter)[config["datacenter"]]
        cluster = objects(si, vim.ClusterComputeResource)[config["cluster"]]
        assert cluster.parent.parent == datacenter
        datastore = objects(si, vim.Datastore)[config["datastore"]]
        assert datastore in cluster.datastore
        assert config["network"] in {n.name for n in cluster.network}
        assert "DC0_DVPG0" in objects(si, vim.Network)
        assert datacenter.vmFolder.name == "vm"  # folder "" means this one
        assert cluster.resourcePool is not None  # resource_pool "" means the root pool
        assert "DC0_C0_RP0_VM0" in objects(si, vim.VirtualMachine)


@pytest.mark.vcsim
def test_vsphere_config_shape_and_overrides(vcsim: Simulator) -> None:
    config = vsphere_config(vcsim, folder="templates", create_snapshot="true")
    assert all(isinstance(v, str) for v in config.values())
    assert config["folder"] == "templates" and config["create_snapshot"] == "true"
    assert config["insecure_connection"] == "true" and config["convert_to_template"] == "false"
    assert {"host", "resource_pool", "template", "linked_clone"} <= config.keys()


@pytest.mark.vcsim
def test_write_vsphere_json_is_private(vcsim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "vsphere.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_vsphere_json(vcsim, path, template="base")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == vsphere_config(vcsim, template="base")


@pytest.mark.vcsim
def test_wrong_password_is_refused(vcsim: Simulator) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        with connect(vcsim, password="not-" + vcsim.password):
            pass


@pytest.mark.vcsim
def test_custom_credentials_and_stop(vcsim_binary: Path) -> None:
    sim = Simulator(username="administrator@vsphere.local", password="Secret-1!",
                    binary=vcsim_binary)
    sim.start()
    try:
        assert sim.running and sim.url == f"https://{sim.host}/sdk"
        with connect(sim) as si:
            assert si.content.about.apiType == "VirtualCenter"
        with pytest.raises(vim.fault.InvalidLogin):
            with connect(sim, "user", "pass"):
                pass
    finally:
        sim.stop()
    assert not sim.running
    with pytest.raises(ProcessLookupError):
        os.kill(sim.pid, 0)
    sim.stop()  # a second stop is harmless


@pytest.mark.vcsim
def test_power_off_after(vcsim_binary: Path) -> None:
    with Simulator(binary=vcsim_binary, power_off_after=0.3) as sim, connect(sim) as si:
        vm = objects(si, vim.VirtualMachine)["DC0_H0_VM0"]
        assert vm.runtime.powerState == "poweredOn"  # the model's VMs are left alone
        WaitForTask(vm.PowerOffVM_Task())
        WaitForTask(vm.PowerOnVM_Task())
        deadline = time.monotonic() + 10
        while vm.runtime.powerState == "poweredOn" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert vm.runtime.powerState == "poweredOff"


def test_start_failure_reports_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "fake-vcsim"
    fake.write_text("#!/bin/sh\necho 'no inventory for you' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BuildError, match=r"exited with code 3(.|\n)*no inventory for you"):
        Simulator(binary=fake).start()


def test_start_timeout(tmp_path: Path) -> None:
    fake = tmp_path / "fake-vcsim"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    sim = Simulator(binary=fake, timeout=0.5)
    with pytest.raises(BuildError, match="not ready within 0.5 seconds"):
        sim.start()
    assert not sim.running


@pytest.mark.vcsim
def test_build_reuses_the_cached_binary(vcsim_binary: Path) -> None:
    first = vcsim_module.build()
    assert first == vcsim_binary
    assert first.name.startswith("vcsim-") and os.access(first, os.X_OK)
    assert vcsim_module.build() == first


def test_build_without_go_names_the_packages(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError) as info:
        vcsim_module.build(tmp_path / "cache")
    message = str(info.value)
    assert "go compiler" in message
    assert "golang-go golang-github-vmware-govmomi-dev golang-github-google-uuid-dev" in message
    assert info.value.exit_code == 2


@pytest.mark.vcsim
def test_build_failure_shows_go_output(vcsim_binary: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "main.go"
    broken.write_text("package main\n\nfunc main() { undefinedThing() }\n")
    monkeypatch.setattr(vcsim_module, "MAIN_GO", broken)
    with pytest.raises(BuildError, match="undefined: undefinedThing"):
        vcsim_module.build(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no partial binary left
