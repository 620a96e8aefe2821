"""The vCenter simulator: build, start/stop, and the vsphere.json it implies.

Real processes and a real vSphere API client (pyvmomi), no mocks.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers.common import BIN, REPO, alive, connect, objects
from pyVim.task import WaitForTask
from pyVmomi import vim

from imagebuilder import vcsim as vcsim_module
from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova.ovf import parse_ovf
from imagebuilder.ova.vmdk import read_vmdk
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


# --- export: ExportVm, the NFC GET of its disks, CreateDescriptor ---------------------------

def _export(si, vm_name: str, capacity_kb: int | None = None):
    """Power off a model VM (optionally resizing its disk) and open an export lease."""
    vm = objects(si, vim.VirtualMachine)[vm_name]
    if vm.runtime.powerState != "poweredOff":
        WaitForTask(vm.PowerOffVM_Task())
    if capacity_kb is not None:
        disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
        disk.capacityInKB = capacity_kb
        disk.capacityInBytes = capacity_kb * 1024
        change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
        WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[change])))
    lease = vm.ExportVm()
    assert lease.state == "ready"
    return vm, lease


def _get(sim: Simulator, device_url) -> bytes:
    url = device_url.url.replace("*", sim.host, 1)
    with urllib.request.urlopen(url, context=ssl._create_unverified_context(), timeout=30) as r:
        return r.read()


def _qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


needs_qemu_img = pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img is not installed")


@pytest.mark.vcsim
@needs_qemu_img
def test_export_serves_stream_optimized_disks_of_the_vm_disk_size(vcsim_binary: Path,
                                                                 tmp_path: Path) -> None:
    capacity_kb = 3 * 1024 * 1024 + 40  # 3 GiB and a partial grain
    with Simulator(binary=vcsim_binary) as sim, connect(sim) as si:
        vm, lease = _export(si, "DC0_H0_VM0", capacity_kb)
        assert lease.info.entity == vm and lease.info.totalDiskCapacityInKB == capacity_kb
        [device] = lease.info.deviceUrl
        assert device.disk and device.targetId == "disk-0.vmdk"
        disk = tmp_path / "disk-0.vmdk"
        disk.write_bytes(_get(sim, device))
        assert disk.stat().st_size == device.fileSize
        lease.HttpNfcLeaseProgress(100)
        lease.HttpNfcLeaseComplete()
        with pytest.raises(urllib.error.HTTPError) as gone:  # the lease is over
            _get(sim, device)
        assert gone.value.code == 404

    check = _qemu_img("check", str(disk))
    assert check.returncode == 0 and "No errors were found" in check.stdout, check
    info = json.loads(_qemu_img("info", "--output=json", str(disk)).stdout)
    assert info["virtual-size"] == capacity_kb * 1024
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    ours = read_vmdk(disk)
    assert ours.stream_optimized and ours.capacity == capacity_kb * 1024
    raw = tmp_path / "disk.raw"
    assert _qemu_img("convert", "-O", "raw", str(disk), str(raw)).returncode == 0
    with open(raw, "rb") as fh:
        assert fh.read(64).startswith(b"vcsim export of DC0_H0_VM0, disk 0")


@pytest.mark.vcsim
def test_export_needs_a_powered_off_vm(vcsim_binary: Path) -> None:
    with Simulator(binary=vcsim_binary) as sim, connect(sim) as si:
        vm = objects(si, vim.VirtualMachine)["DC0_H0_VM1"]
        assert vm.runtime.powerState == "poweredOn"
        with pytest.raises(vim.fault.InvalidPowerState):
            vm.ExportVm()


@pytest.mark.vcsim
def test_fail_export_get_breaks_the_download_half_way_and_abort_ends_the_lease(
        vcsim_binary: Path) -> None:
    with Simulator(binary=vcsim_binary, fail_export_get=True) as sim, connect(sim) as si:
        _, lease = _export(si, "DC0_H0_VM0")
        [device] = lease.info.deviceUrl
        url = device.url.replace("*", sim.host, 1)
        with urllib.request.urlopen(url, context=ssl._create_unverified_context()) as r:
            assert int(r.headers["Content-Length"]) == device.fileSize
            with pytest.raises(http.client.IncompleteRead) as broken:
                r.read()
        assert len(broken.value.partial) == device.fileSize // 2
        lease.HttpNfcLeaseAbort()
        with pytest.raises(urllib.error.HTTPError) as gone:
            _get(sim, device)
        assert gone.value.code == 404


@pytest.mark.vcsim
def test_create_descriptor_describes_the_vm_and_the_exported_files(vcsim_binary: Path) -> None:
    with Simulator(binary=vcsim_binary) as sim, connect(sim) as si:
        vm, lease = _export(si, "DC0_H0_VM0", 2 * 1024 * 1024)
        [device] = lease.info.deviceUrl
        files = [vim.OvfManager.OvfFile(deviceId=device.key, path="node-disk-0.vmdk",
                                        size=device.fileSize)]
        result = si.content.ovfManager.CreateDescriptor(
            obj=vm, cdp=vim.OvfManager.CreateDescriptorParams(name="node", ovfFiles=files))
        lease.HttpNfcLeaseComplete()
        hardware, firmware, version = vm.config.hardware, vm.config.firmware, vm.config.version
    parsed = parse_ovf(result.ovfDescriptor.encode(), "descriptor")
    assert parsed.problems == [] and parsed.name == "node"
    assert [(f.href, f.size) for f in parsed.files] == [("node-disk-0.vmdk", device.fileSize)]
    assert [d.capacity for d in parsed.disks] == [2 * 1024 ** 3]
    assert parsed.disks[0].file_ref == parsed.files[0].id
    assert parsed.firmware == firmware and parsed.vmx == version
    quantities = _virtual_quantities(result.ovfDescriptor)
    assert quantities == {3: hardware.numCPU, 4: hardware.memoryMB}


def _virtual_quantities(descriptor: str) -> dict[int, int]:
    """ResourceType -> VirtualQuantity of a descriptor's CPU (3) and memory (4) items."""
    rasd = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
    out = {}
    for item in ET.fromstring(descriptor).iter("{http://schemas.dmtf.org/ovf/envelope/1}Item"):
        kind = int(item.findtext(f"{rasd}ResourceType"))
        if kind in (3, 4):
            out[kind] = int(item.findtext(f"{rasd}VirtualQuantity"))
    return out


def test_the_binary_name_covers_every_compiled_source(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    before = vcsim_module._sources_digest()
    for name, original in (("PACKAGE_GO", vcsim_module.PACKAGE_GO),
                           ("MAIN_GO", vcsim_module.MAIN_GO)):
        sources = original if isinstance(original, tuple) else (original,)
        edited = []
        for source in sources:
            copy = tmp_path / name / source.name
            copy.parent.mkdir(exist_ok=True)
            copy.write_text(source.read_text() + "\n// edited\n")
            edited.append(copy)
        monkeypatch.setattr(vcsim_module, name, tuple(edited) if isinstance(original, tuple)
                            else edited[0])
        assert vcsim_module._sources_digest() != before
        monkeypatch.setattr(vcsim_module, name, original)
    assert vcsim_module._sources_digest() == before


@pytest.mark.vcsim
def test_an_unknown_govmomi_nfc_handler_is_reported(vcsim_binary: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    name, _, new = vcsim_module.NFC_GET
    monkeypatch.setattr(vcsim_module, "NFC_GET", (name, "\t\tno such line\n", new))
    with pytest.raises(BuildError, match="is not the version imagebuilder knows"):
        vcsim_module.build(tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nothing left behind


@pytest.mark.vcsim
def test_the_password_is_not_on_the_command_line(vcsim_binary: Path) -> None:
    """Any user can read a process's arguments: the password travels in its environment,
    verbatim, whatever it holds."""
    password = "vc{{ .Secret }}'$(id)`id` -x"
    with Simulator(password=password, binary=vcsim_binary) as sim:
        with open(f"/proc/{sim.pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        assert not [a for a in argv if b"Secret" in a or b"-password" in a]
        with connect(sim) as si:
            assert si.content.about.apiType == "VirtualCenter"


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


@pytest.mark.vcsim
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                       (signal.SIGINT, 130)])
def test_invoke_vcsim_stops_its_simulator_on_a_signal(vcsim_binary, tmp_path, sig, code):
    """``invoke vcsim`` stopped by a plain kill, a closed terminal or Ctrl-C: the
    simulator stops, its temporary directory goes, the exit code says which signal."""
    vsphere_json = tmp_path / "vcsim" / "vsphere.json"
    proc = subprocess.Popen([str(BIN / "invoke"), "vcsim", "--vsphere-json", str(vsphere_json)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 300
        while "Ctrl-C stops the simulator" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        children = _children(proc.pid)
        assert len(children) == 1 and vsphere_json.is_file()
        with open(f"/proc/{children[0]}/cmdline", "rb") as fh:
            argv = [a.decode() for a in fh.read().split(b"\0")]
        work = Path(argv[argv.index("-ready-file") + 1]).parent
        assert work.is_dir()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(children[0]):
        time.sleep(0.1)
    assert not alive(children[0])
    assert not work.exists()
