"""The product of the vSphere targets, end to end against the simulator with the real Packer:
Packer's own export (ExportVm over NFC, CreateDescriptor, a sha256 manifest) -> our OVA ->
ova-verify -> deploy-ova -> the deployed template has the OVF's hardware."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers.common import BIN, REPO, connect, invoke, objects, write_json
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder.ova.ovf import parse_ovf
from imagebuilder.vcsim import Simulator, vsphere_config
from imagebuilder.vcsim.simulation import simulator_var_files

pytestmark = [pytest.mark.vcsim, pytest.mark.packer, pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")]

K8S = "v1.37.1"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
#: Small hardware, so the simulator's generated disks and the OVAs stay small.
HARDWARE = {"cpu": "2", "memory": "3072", "disk_size": "8192"}  # the OS floors: 5120 ubuntu, 8192 photon


def var_files(sim: Simulator, tmp_path: Path, **vsphere: str) -> str:
    files = simulator_var_files(sim, tmp_path / "sim", **vsphere)
    files.append(write_json(tmp_path / "hardware.json", HARDWARE))
    return " ".join(map(str, files))


def ovf_of(ova: Path) -> bytes:
    with tarfile.open(ova) as tar:
        first = tar.next()
        assert first is not None and first.name.endswith(".ovf")
        return tar.extractfile(first).read()


def ovf_hardware(descriptor: bytes) -> dict[str, int]:
    """numCPU and memoryMB as the descriptor's CPU (3) and memory (4) items say."""
    out = {}
    for item in ET.fromstring(descriptor).iter("{http://schemas.dmtf.org/ovf/envelope/1}Item"):
        kind = item.findtext(f"{RASD}ResourceType")
        if kind in ("3", "4"):
            out["numCPU" if kind == "3" else "memoryMB"] = int(item.findtext(f"{RASD}VirtualQuantity"))
    return out


def deploy(sim: Simulator, tmp_path: Path, ova: Path, name: str) -> subprocess.CompletedProcess:
    files = write_json(tmp_path / "deploy-vsphere.json", vsphere_config(sim))
    env = dict(os.environ, PACKER_VAR_FILES=str(files))
    return subprocess.run([str(BIN / "invoke"), "deploy-ova", str(ova), "--name", name,
                           "--template"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def hardware_of(sim: Simulator, name: str) -> dict:
    with connect(sim) as si:
        vm = objects(si, vim.VirtualMachine)[name]
        config = vm.config
        disks = [d.capacityInBytes or d.capacityInKB * 1024 for d in config.hardware.device
                 if isinstance(d, vim.vm.device.VirtualDisk)]
        return {"template": config.template, "numCPU": config.hardware.numCPU,
                "memoryMB": config.hardware.memoryMB, "disks": disks,
                "firmware": config.firmware}


def check_the_loop(checkout, sim: Simulator, tmp_path: Path, target: str, os_name: str) -> dict:
    """After a successful build: the OVA and its .sha256, Packer's sha256 manifest, ova-verify,
    deploy-ova; returns the built template's hardware."""
    name = f"{os_name}-kube-{K8S}"
    out = checkout.output_dir / name
    ova = out / f"{name}.ova"
    assert ova.is_file(), sorted(p.name for p in out.iterdir())
    sidecar = (out / f"{name}.ova.sha256").read_text().split()
    assert sidecar[0] == hashlib.sha256(ova.read_bytes()).hexdigest()
    # Packer's export wrote a manifest (export_manifest sha256; with "none" it says nothing);
    # the OVA's own .mf, written over it, holds the digest of the disk Packer downloaded.
    log = (checkout.output_dir / "logs" / f"{target}.log").read_text()
    assert "Starting export..." in log and "Creating manifest..." in log
    disk = out / f"{name}-disk-0.vmdk"
    manifest = (out / f"{name}.mf").read_text()
    assert f"SHA256({disk.name})= {hashlib.sha256(disk.read_bytes()).hexdigest()}" in manifest

    verified = invoke("ova-verify", str(ova))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    descriptor = ovf_of(ova)
    parsed = parse_ovf(descriptor, ova.name)
    built = hardware_of(sim, name)
    assert built["template"] is True
    deployed_name = f"{name}-deployed"
    result = deploy(sim, tmp_path, ova, deployed_name)
    assert result.returncode == 0, result.stdout + result.stderr
    deployed = hardware_of(sim, deployed_name)
    assert deployed["template"] is True
    assert {k: deployed[k] for k in ("numCPU", "memoryMB")} == ovf_hardware(descriptor)
    assert deployed["disks"] == [d.capacity for d in parsed.disks]
    # The simulator ignores vmw:Config firmware on import: the built VM is where it is kept.
    assert parsed.firmware == built["firmware"]
    assert ovf_hardware(descriptor) == {"numCPU": built["numCPU"], "memoryMB": built["memoryMB"]}
    return built


FRESH = own_simulator("function", password="fresh-Secret-1", power_off_after=0.5)


@FRESH
def test_vsphere_iso_build_makes_an_ova_that_deploys_back(checkout, vcsim, tmp_path):
    target = "build-node-ova-vsphere-ubuntu-2204-efi"
    result = invoke(target, env_extra={"PACKER_VAR_FILES": var_files(vcsim, tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    built = check_the_loop(checkout, vcsim, tmp_path, target, "ubuntu-2204-efi")
    assert built == {"template": True, "numCPU": 2, "memoryMB": 3072, "disks": [8192 << 20],
                     "firmware": "efi"}


@FRESH
def test_vsphere_clone_build_makes_an_ova_that_deploys_back(checkout, vcsim, tmp_path):
    target = "build-node-ova-vsphere-clone-photon-5"
    files = var_files(vcsim, tmp_path, template="DC0_H0_VM0")
    result = invoke(target, env_extra={"PACKER_VAR_FILES": files})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Cloning VM..." in (checkout.output_dir / "logs" / f"{target}.log").read_text()
    built = check_the_loop(checkout, vcsim, tmp_path, target, "photon-5")
    assert (built["numCPU"], built["memoryMB"]) == (2, 3072)


@own_simulator("function", password="failing-Secret-1", power_off_after=0.5,
               fail_export_get=True)
def test_an_export_broken_half_way_leaves_no_ova_and_no_vm(checkout, vcsim, tmp_path):
    target = "build-node-ova-vsphere-clone-photon-5"
    files = var_files(vcsim, tmp_path, template="DC0_H0_VM0")
    result = invoke(target, env_extra={"PACKER_VAR_FILES": files})
    assert result.returncode == 1, result.stdout + result.stderr
    log = (checkout.output_dir / "logs" / f"{target}.log").read_text()
    assert "Downloading: photon-5-kube-v1.37.1-disk-0.vmdk" in log
    assert "unexpected EOF" in log, log[-2000:]
    assert "Running post-processor" not in log
    # The output directory this build made held only the half-downloaded disk: removed.
    assert not (checkout.output_dir / f"photon-5-kube-{K8S}").exists()
    with connect(vcsim) as si:
        assert f"photon-5-kube-{K8S}" not in objects(si, vim.VirtualMachine)
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    assert summary["builds"][0]["result"] == "failed"
