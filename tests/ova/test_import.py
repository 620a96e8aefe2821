"""Assembled OVAs imported into the vCenter simulator: OvfManager.CreateImportSpec
without errors, ImportVApp, the disks streamed over NFC from inside the OVA,
lease completed; the VM's hardware must match the build."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from helpers.common import connect
from helpers.ova import MiB, flip_byte_in_member, make_vmdk, write_manifest
from pyVmomi import vim

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova import (
    AssembleOptions,
    assemble,
    assemble_from_packer,
    plan_from_vmdks,
    verify_ova,
)
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.ovf_import import import_ova

pytestmark = pytest.mark.vcsim

MARKUP = 'R&D <nodes> "blue" > red'
PLACEMENT = dict(datacenter="DC0", cluster="DC0_C0", datastore="LocalDS_0",
                 network="VM Network", verify_tls=False)


@pytest.fixture
def env(checkout, monkeypatch):
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES"):
        monkeypatch.delenv(knob, raising=False)
    return checkout


class Counted:
    """Counts the bytes each pass reports."""

    def __init__(self):
        self.passes = {}
        self.label = ""

    def begin(self, label, total):
        self.label = label
        self.passes[label] = [total, 0]

    def advance(self, count):
        self.passes[self.label][1] += count

    def end(self):
        pass


def vm_facts(si, vm) -> dict:
    props = Driver(si).properties([vm], vim.VirtualMachine, [
        "name", "config.version", "config.firmware", "config.guestId", "config.annotation",
        "config.hardware.device", "config.hardware.numCPU", "config.hardware.memoryMB",
        "config.extraConfig", "network"])[vm]
    devices = props["config.hardware.device"]
    by_key = {d.key: d for d in devices}
    return {
        "name": props["name"], "version": props["config.version"],
        "firmware": props["config.firmware"], "guest": props["config.guestId"],
        "annotation": props["config.annotation"], "cpus": props["config.hardware.numCPU"],
        "memory": props["config.hardware.memoryMB"],
        "disks": [d.capacityInKB * 1024 for d in devices
                  if isinstance(d, vim.vm.device.VirtualDisk)],
        "disk_labels": [d.deviceInfo.label for d in devices
                        if isinstance(d, vim.vm.device.VirtualDisk)],
        "controllers": [type(d).__name__.split(".")[-1] for d in devices
                        if isinstance(d, vim.vm.device.VirtualSCSIController)],
        "nics": [type(d).__name__.split(".")[-1] for d in devices
                 if isinstance(d, vim.vm.device.VirtualEthernetCard)],
        "networks": sorted(n.name for n in props.get("network", [])),
        "extra": {o.key: o.value for o in props["config.extraConfig"]},
        "ide": sorted(d.busNumber for d in devices
                      if isinstance(d, vim.vm.device.VirtualIDEController)),
        "cdroms": [(by_key[d.controllerKey].deviceInfo.label, d.unitNumber) for d in devices
                   if isinstance(d, vim.vm.device.VirtualCdrom)],
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_bios_image_from_a_packer_build(vcsim, env, tmp_path, monkeypatch):
    out = env.output_dir / "ubuntu-2204-kube-v1.37.1"
    out.mkdir(parents=True)
    disk = make_vmdk(out / "ubuntu-2204-kube-v1.37.1.vmdk", "monolithicSparse")
    write_manifest(out, [disk], {"os_display_name": f"Ubuntu 22.04 {MARKUP}", "cpu": "2",
                                 "memory": "4096"})
    props = tmp_path / "props.json"
    props.write_text(json.dumps({"OWNER": MARKUP}))
    monkeypatch.setenv("OVF_CUSTOM_PROPERTIES", str(props))
    result = assemble_from_packer(out, AssembleOptions.from_env())
    verified = verify_ova(result.ova)
    assert verified.ovf.properties["OWNER"] == MARKUP
    counted = Counted()
    name = unique("bios")
    with connect(vcsim) as si:
        vm = import_ova(si, result.ova, name, progress=counted,
                        properties={"OWNER": verified.ovf.properties["OWNER"]}, **PLACEMENT)
        facts = vm_facts(si, vm)
    assert facts["name"] == name
    assert facts["version"] == "vmx-15" and facts["firmware"] == "bios"
    assert facts["guest"] == "ubuntu64Guest"
    assert facts["disks"] == [64 * MiB]
    assert facts["disk_labels"] == ["Hard disk 1"]  # read from the descriptor by vCenter
    assert facts["controllers"] == ["ParaVirtualSCSIController"]
    assert facts["nics"] == ["VirtualVmxnet3"] and facts["networks"] == ["VM Network"]
    assert facts["cpus"] == 2 and facts["memory"] == 4096
    assert facts["annotation"] == ("Cluster API vSphere image - Ubuntu 22.04 "
                                   f"{MARKUP} and Kubernetes v1.37.1")
    assert facts["extra"]["OWNER"] == MARKUP
    # The CD-ROM drive hangs off the descriptor's IDE 0 (the simulator adds its own
    # two IDE controllers to every VM; it ignores VMCI items and PCI slot keys).
    assert len(facts["ide"]) == 4
    assert len(facts["cdroms"]) == 1 and facts["cdroms"][0][1] == 0
    assert facts["cdroms"][0][0].startswith("ide-")
    disk_member = verified.members[2]
    assert counted.passes[f"uploading {result.ova.name}"] == [disk_member.size] * 2


def test_efi_image_with_two_disks(vcsim, env, tmp_path):
    boot = make_vmdk(tmp_path / "boot.vmdk", data=[(MiB, os.urandom(MiB))])
    data = make_vmdk(tmp_path / "data.vmdk", "monolithicSparse", size=32 * MiB)
    plan = plan_from_vmdks([boot, data], "rhel-9", "v1.37.1", tmp_path / "out")
    result = assemble(plan)
    with connect(vcsim) as si:
        vm = import_ova(si, result.ova, unique("efi"), **PLACEMENT)
        facts = vm_facts(si, vm)
    assert facts["version"] == "vmx-18" and facts["firmware"] == "efi"
    assert facts["guest"] == "rhel9_64Guest"
    assert facts["disks"] == [64 * MiB, 32 * MiB]
    assert facts["annotation"] == "Cluster API vSphere image - RHEL 9 and Kubernetes v1.37.1"
    assert len(facts["cdroms"]) == 1


def test_a_corrupt_disk_aborts_the_import(vcsim, env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(2 * MiB))])
    ova = assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "out")).ova
    bad = flip_byte_in_member(ova, "ubuntu-2204-kube-v1.37.1-disk-0.vmdk", 600_000,
                              tmp_path / "bad.ova")
    with connect(vcsim) as si:
        with pytest.raises(BuildError, match="disk-0.vmdk: its SHA256 digest is .* the file is corrupt"):
            import_ova(si, bad, unique("corrupt"), **PLACEMENT)


def test_placement_and_network_names_are_checked(vcsim, env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk")
    ova = assemble(plan_from_vmdks([disk], "photon-5", "v1.37.1", tmp_path / "out")).ova
    with connect(vcsim) as si:
        with pytest.raises(InputError, match="descriptor does not have; its networks: nic0"):
            import_ova(si, ova, unique("net"), network_mapping={"eth0": "VM Network"},
                       **PLACEMENT)
        with pytest.raises(InputError, match="datastore 'nowhere' not found"):
            import_ova(si, ova, unique("ds"), **dict(PLACEMENT, datastore="nowhere"))
        with pytest.raises(InputError, match="needs a resource pool, cluster or host"):
            import_ova(si, ova, unique("rp"), **dict(PLACEMENT, cluster=""))
