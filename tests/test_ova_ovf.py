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
