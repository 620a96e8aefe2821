"""The OVF descriptor: XML built as a tree, escaped, complete, for every OS of the catalog."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from pyVmomi import vim

from imagebuilder.errors import InputError
from imagebuilder.ova.inputs import custom_properties, settings_from_catalog
from imagebuilder.ova.ovf import (
    CIM_OS_IDS,
    OVF,
    RASD,
    VMW,
    VSSD,
    NodeImage,
    OvfDisk,
    VirtualHardware,
    build_ovf,
    parse_ovf,
)
from imagebuilder.ova.vmdk import STREAM_OPTIMIZED_FORMAT

NASTY = 'a & b < c > d "quoted" \'single\''
GiB = 1 << 30


def image(**overrides) -> NodeImage:
    values = dict(name="ubuntu-2204-kube-v1.37.1", os_display_name="Ubuntu 22.04",
                  kubernetes_semver="v1.37.1", ovf_os_id=94, os_type="ubuntu64Guest",
                  hardware=VirtualHardware(15, 2, 4096, "pvscsi", "vmxnet3", "bios"),
                  properties=(("KUBERNETES_SEMVER", "v1.37.1"),), eula="Terms.\n")
    values.update(overrides)
    return NodeImage(**values)


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def test_layout_and_namespaces():
    data = build_ovf(image(), [OvfDisk("d0.vmdk", 1234, 20 * GiB, 5 * GiB)])
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Envelope xmlns="' +
                           OVF.encode())
    root = ET.fromstring(data)
    assert root.tag == q(OVF, "Envelope")
    assert [c.tag for c in root] == [q(OVF, n) for n in ("References", "DiskSection",
                                                         "NetworkSection", "VirtualSystem")]
    f = root.find(f"{q(OVF, 'References')}/{q(OVF, 'File')}")
    assert f.attrib == {q(OVF, "href"): "d0.vmdk", q(OVF, "id"): "file1", q(OVF, "size"): "1234"}
    disk = root.find(f"{q(OVF, 'DiskSection')}/{q(OVF, 'Disk')}")
    assert disk.get(q(OVF, "capacity")) == str(20 * GiB)
    assert disk.get(q(OVF, "capacityAllocationUnits")) == "byte"
    assert disk.get(q(OVF, "populatedSize")) == str(5 * GiB)
    assert disk.get(q(OVF, "format")) == STREAM_OPTIMIZED_FORMAT
    net = root.find(f"{q(OVF, 'NetworkSection')}/{q(OVF, 'Network')}")
    assert net.get(q(OVF, "name")) == "nic0"
    system = root.find(q(OVF, "VirtualSystem"))
    assert system.get(q(OVF, "id")) == system.findtext(q(OVF, "Name")) == \
        "ubuntu-2204-kube-v1.37.1"
    assert system.findtext(f"{q(OVF, 'AnnotationSection')}/{q(OVF, 'Annotation')}") == \
        "Cluster API vSphere image - Ubuntu 22.04 and Kubernetes v1.37.1"
    assert system.findtext(f"{q(OVF, 'EulaSection')}/{q(OVF, 'License')}") == "Terms.\n"
    product = system.find(q(OVF, "ProductSection"))
    assert product.findtext(q(OVF, "Version")) == "kube-v1.37.1"


def test_hardware_section():
    hw = VirtualHardware(19, 4, 8192, "lsilogic", "vmxnet3", "efi")
    root = ET.fromstring(build_ovf(image(hardware=hw), [OvfDisk("a.vmdk", 1, GiB),
                                                        OvfDisk("b.vmdk", 1, 2 * GiB)]))
    section = root.find(f"{q(OVF, 'VirtualSystem')}/{q(OVF, 'VirtualHardwareSection')}")
    assert section.findtext(f"{q(OVF, 'System')}/{q(VSSD, 'VirtualSystemType')}") == "vmx-19"
    items = {}
    for item in section.iterfind(q(OVF, "Item")):
        names = [c.tag.split("}")[1] for c in item if c.tag.startswith(f"{{{RASD}}}")]
        assert names == sorted(names)  # CIM order, which vCenter enforces
        items.setdefault(item.findtext(q(RASD, "ResourceType")), []).append(item)
    assert items["3"][0].findtext(q(RASD, "VirtualQuantity")) == "4"
    assert items["4"][0].findtext(q(RASD, "VirtualQuantity")) == "8192"
    assert items["6"][0].findtext(q(RASD, "ResourceSubType")) == "lsilogic"
    controller = items["6"][0].findtext(q(RASD, "InstanceID"))
    disks = items["17"]
    assert [d.findtext(q(RASD, "HostResource")) for d in disks] == ["ovf:/disk/vmdisk1",
                                                                     "ovf:/disk/vmdisk2"]
    assert {d.findtext(q(RASD, "Parent")) for d in disks} == {controller}
    assert [d.findtext(q(RASD, "AddressOnParent")) for d in disks] == ["0", "1"]
    nic = items["10"][0]
    assert nic.findtext(q(RASD, "ResourceSubType")) == "VmxNet3"
    assert nic.findtext(q(RASD, "Connection")) == "nic0"
    assert "24" in items  # video card
    ids = [i.findtext(q(RASD, "InstanceID")) for i in section.iterfind(q(OVF, "Item"))]
    assert len(ids) == len(set(ids))
    configs = {c.get(q(VMW, "key")): c.get(q(VMW, "value"))
               for c in section.iterfind(q(VMW, "Config"))}
    assert configs["firmware"] == "efi"


def _items(section) -> dict[str, list[ET.Element]]:
    items: dict[str, list[ET.Element]] = {}
    for item in section.iterfind(q(OVF, "Item")):
        items.setdefault(item.findtext(q(RASD, "ResourceType")), []).append(item)
    return items


def _config(element) -> dict[str, str]:
    return {c.get(q(VMW, "key")): c.get(q(VMW, "value"))
            for c in element.iterfind(q(VMW, "Config"))}


def test_devices_and_keys_a_vsphere_export_writes():
    """IDE controllers with a CD-ROM drive, VMCI, PCI slots, the disk's writeThrough,
    the section's vmw:Config keys, the boot order and the vendor fields, laid out
    as in upstream's descriptor captured from a vSphere export."""
    root = ET.fromstring(build_ovf(image(), [OvfDisk("a.vmdk", 1, GiB),
                                             OvfDisk("b.vmdk", 1, GiB)]))
    system = root.find(q(OVF, "VirtualSystem"))
    section = system.find(q(OVF, "VirtualHardwareSection"))
    items = _items(section)
    order = [(i.findtext(q(RASD, "InstanceID")), i.findtext(q(RASD, "ElementName")))
             for i in section.iterfind(q(OVF, "Item"))]
    assert order == [("1", "2 virtual CPU(s)"), ("2", "4096MB of memory"),
                     ("3", "SCSI controller 0"), ("4", "IDE 1"), ("5", "IDE 0"),
                     ("6", "Video card"), ("7", "VMCI device"), ("8", "Hard disk 1"),
                     ("9", "Hard disk 2"), ("10", "Network adapter 1"), ("11", "CD/DVD drive 1")]
    ide = {i.findtext(q(RASD, "ElementName")): i for i in items["5"]}
    assert {n: i.findtext(q(RASD, "Address")) for n, i in ide.items()} == {"IDE 0": "0",
                                                                           "IDE 1": "1"}
    cdrom, = items["15"]
    assert cdrom.findtext(q(RASD, "Parent")) == ide["IDE 0"].findtext(q(RASD, "InstanceID"))
    assert cdrom.findtext(q(RASD, "AddressOnParent")) == "0"
    assert cdrom.findtext(q(RASD, "ResourceSubType")) == "vmware.cdrom.remotepassthrough"
    assert cdrom.get(q(OVF, "required")) == "false"
    assert _config(cdrom) == {"backing.exclusive": "false",
                              "connectable.allowGuestControl": "false"}
    vmci, = items["1"]
    assert vmci.findtext(q(RASD, "ResourceSubType")) == "vmware.vmci"
    assert _config(vmci) == {"slotInfo.pciSlotNumber": "32",
                             "allowUnrestrictedCommunication": "false"}
    assert _config(items["6"][0]) == {"slotInfo.pciSlotNumber": "160"}
    nic, = items["10"]
    assert nic.findtext(q(RASD, "AddressOnParent")) == "7"
    assert _config(nic)["slotInfo.pciSlotNumber"] == "192"
    assert [_config(d) for d in items["17"]] == [{"backing.writeThrough": "false"}] * 2
    assert _config(items["24"][0])["graphicsMemorySizeInKB"] == "262144"
    keys = _config(section)
    assert keys == {
        "cpuHotAddEnabled": "false", "cpuHotRemoveEnabled": "false",
        "memoryHotAddEnabled": "false", "firmware": "bios", "tools.syncTimeWithHost": "false",
        "tools.afterPowerOn": "true", "tools.afterResume": "true",
        "tools.beforeGuestShutdown": "true", "tools.beforeGuestStandby": "true",
        "powerOpInfo.powerOffType": "soft", "powerOpInfo.resetType": "soft",
        "powerOpInfo.suspendType": "hard", "powerOpInfo.standbyAction": "checkpoint",
        "nestedHVEnabled": "false", "virtualICH7MPresent": "false",
        "virtualSMCPresent": "false", "flags.vvtdEnabled": "false",
        "flags.vbsEnabled": "false", "bootOptions.efiSecureBootEnabled": "false"}
    boot = system.find(q(VMW, "BootOrderSection"))
    assert boot.get(q(VMW, "type")) == "disk"
    assert boot.get(q(VMW, "instanceId")) == "8"   # the first hard disk
    assert boot.findtext(q(OVF, "Info"))
    assert [c.tag for c in system].index(q(VMW, "BootOrderSection")) == \
        [c.tag for c in system].index(q(OVF, "VirtualHardwareSection")) + 1
    product = system.find(q(OVF, "ProductSection"))
    assert [c.tag.split("}")[1] for c in product][:7] == [
        "Info", "Product", "Vendor", "Version", "FullVersion", "VendorUrl", "Category"]
    assert product.findtext(q(OVF, "Category")) == "Cluster API Provider (CAPI)"


def test_descriptor_is_valid_against_the_ovf_envelope_rules():
    """What the DMTF schema requires of these elements: every Item's rasd
    children in CIM (alphabetical) order, unique InstanceIDs, every Parent and
    HostResource resolving, a Section's Info first."""
    root = ET.fromstring(build_ovf(image(hardware=VirtualHardware(19, 2, 4096, "lsilogic",
                                                                  "e1000e", "efi")),
                                   [OvfDisk("a.vmdk", 1, GiB)]))
    section = root.find(f"{q(OVF, 'VirtualSystem')}/{q(OVF, 'VirtualHardwareSection')}")
    ids = set()
    disks = {d.get(q(OVF, "diskId")) for d in root.iter(q(OVF, "Disk"))}
    for item in section.iterfind(q(OVF, "Item")):
        rasd = [c.tag.split("}")[1] for c in item if c.tag.startswith(f"{{{RASD}}}")]
        assert rasd == sorted(rasd)
        assert [c.tag for c in item][len(rasd):] == [q(VMW, "Config")] * (len(item) - len(rasd))
        ids.add(item.findtext(q(RASD, "InstanceID")))
    for item in section.iterfind(q(OVF, "Item")):
        if item.findtext(q(RASD, "Parent")):
            assert item.findtext(q(RASD, "Parent")) in ids
        host = item.findtext(q(RASD, "HostResource"))
        if host:
            assert host.removeprefix("ovf:/disk/") in disks
    assert len(ids) == len(list(section.iterfind(q(OVF, "Item"))))
    for sec in root.iter():
        if sec.tag.endswith("Section"):
            assert sec[0].tag == q(OVF, "Info"), sec.tag
    assert _config(section)["firmware"] == "efi"


def test_pvscsi_is_virtual_scsi():
    root = ET.fromstring(build_ovf(image(), [OvfDisk("a.vmdk", 1, GiB)]))
    subtypes = [e.text for e in root.iter(q(RASD, "ResourceSubType"))]
    assert "VirtualSCSI" in subtypes


def test_every_value_is_escaped_and_survives():
    props = (("KUBERNETES_SEMVER", "v1.37.1"), ("CUSTOM", NASTY), ("X<&>", NASTY))
    data = build_ovf(image(os_display_name=f"Ubuntu {NASTY}", properties=props,
                           eula=f"No warranty {NASTY}\n"),
                     [OvfDisk(f"d&<{1}>.vmdk", 1, GiB)])
    assert b'"quoted"' not in data.split(b"<Annotation>")[0]  # attributes: &quot;
    parsed = parse_ovf(data, "t.ovf")
    assert parsed.problems == []
    assert parsed.properties["CUSTOM"] == NASTY and parsed.properties["X<&>"] == NASTY
    assert parsed.annotation == f"Cluster API vSphere image - Ubuntu {NASTY} and Kubernetes v1.37.1"
    assert parsed.files[0].href == "d&<1>.vmdk"
    root = ET.fromstring(data)
    assert root.find(f".//{q(OVF, 'License')}").text == f"No warranty {NASTY}\n"


def test_text_xml_cannot_carry_is_refused():
    with pytest.raises(InputError, match="U\\+0001"):
        build_ovf(image(properties=(("K", "bell\x01"),)), [OvfDisk("a.vmdk", 1, GiB)])


@pytest.mark.parametrize("field,value,message", [
    ("disk_controller", "nvme", "disk_controller_type: 'nvme'"),
    ("network_card", "rtl8139", "network_card: 'rtl8139'"),
    ("firmware", "uefi", "firmware: 'uefi'"),
])
def test_hardware_the_descriptor_cannot_express(field, value, message):
    hw = dict(vmx_version=15, cpus=2, memory_mb=4096)
    hw[field] = value
    with pytest.raises(InputError) as err:
        build_ovf(image(hardware=VirtualHardware(**hw)), [OvfDisk("a.vmdk", 1, GiB)])
    assert any(message in p for p in err.value.problems)


def test_every_catalog_os_gets_its_ids(checkout):
    guest_ids = set(vim.vm.GuestOsDescriptor.GuestOsIdentifier.values)
    for os_name in checkout.os_names():
        settings = settings_from_catalog(checkout, os_name, "v1.37.1", now=0)
        catalog = json.loads(checkout.os_file(os_name).read_text())
        parsed = parse_ovf(build_ovf(
            image(name=settings.artifact, os_display_name=settings.os_display_name,
                  ovf_os_id=settings.ovf_os_id, os_type=settings.guest_os_type,
                  hardware=settings.hardware, properties=tuple(settings.properties()),
                  os_version=settings.distro_version),
            [OvfDisk("a.vmdk", 1, GiB)]), os_name)
        assert parsed.os_id == int(catalog["ovf_os_id"]), os_name
        assert parsed.os_id == CIM_OS_IDS[parsed.os_type], os_name
        assert parsed.os_type == catalog["vsphere_guest_os_type"], os_name
        assert parsed.os_type in guest_ids, os_name
        assert parsed.firmware == catalog["firmware"], os_name
        vmx = int(parsed.vmx.split("-")[1])
        assert vmx >= int(catalog.get("min_vmx_version", 0)), os_name
        assert parsed.properties["DISTRO_NAME"] == catalog["distro_name"]
        assert not re.search(r"\{\{", parsed.properties["DISTRO_VERSION"]), os_name


def test_custom_properties_validation(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"TEAM": NASTY, "REPLICAS": 3, "RATIO": 0.5, "GPU": False}))
    assert custom_properties(good, {"BUILD_DATE"}) == [
        ("TEAM", NASTY), ("REPLICAS", "3"), ("RATIO", "0.5"), ("GPU", "false")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"NESTED": {"a": 1}, "LIST": [1], "NULL": None, "": "x",
                               "BUILD_DATE": "now", "CTRL": "\x07"}))
    with pytest.raises(InputError) as err:
        custom_properties(bad, {"BUILD_DATE"})
    text = "\n".join(err.value.problems)
    for expected in ("NESTED: dict is not a scalar", "LIST: list is not a scalar",
                     "NULL: null is not a scalar", "an empty property name",
                     "BUILD_DATE: the build sets this property", "CTRL: contains the character"):
        assert expected in text
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a JSON object"):
        custom_properties(array, set())
    with pytest.raises(InputError, match="no such file"):
        custom_properties(tmp_path / "absent.json", set())
