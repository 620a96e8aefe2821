"""The OVF descriptor: built as an XML tree (every value escaped), and read back.

The document is laid out as ovftool writes it: the OVF namespace is the
default one (unprefixed elements) and attributes carry the ``ovf:`` prefix.
ElementTree cannot pair a default namespace with a prefix for the same URI,
so the tree uses prefixed names as plain tag names and declares every
namespace on the root; the text it writes is ordinary namespaced XML, which
``parse_ovf`` (and any OVF consumer) reads with a namespace-aware parser.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence

from imagebuilder.errors import InputError
from imagebuilder.ova.ovf_parse import (  # noqa: F401 (ParsedOvf, parse_ovf: read back here too)
    CIM,
    OVF,
    RASD,
    VMW,
    VSSD,
    XSI,
    ParsedOvf,
    parse_ovf,
)
from imagebuilder.ova.vmdk import STREAM_OPTIMIZED_FORMAT

NAMESPACES = {"xmlns": OVF, "xmlns:cim": CIM, "xmlns:ovf": OVF, "xmlns:rasd": RASD,
              "xmlns:vmw": VMW, "xmlns:vssd": VSSD, "xmlns:xsi": XSI}

#: CIM_OperatingSystem.OsType (the OperatingSystemSection's ovf:id) for the vSphere
#: guest ids of the OS catalog; ``ova/<os>.json`` ``ovf_os_id`` must agree (tested).
#: Sources: upstream's image-build-ova.py id map, used with its descriptor captured
#: from a vSphere export (ubuntu64Guest 94, rhel9_64Guest 80, vmwarePhoton64Guest 36,
#: other4xLinux64Guest 100); VMware's open-vmdk ova-compose (os_cim 36 with
#: vmwarePhoton64Guest in its tests, and 100 / other4xLinux64Guest as its defaults);
#: DMTF CIM_OperatingSystem.OsType (36 LINUX, 80 RedHat Enterprise Linux 64-Bit,
#: 94 Ubuntu 64-Bit, 100 Linux 2.6.x 64-Bit, 101 Linux 64-Bit). rhel8_64Guest takes
#: RHEL's 80 like rhel9_64Guest.
#: Windows: upstream's image-build-ova.py gives Server 2019 (windows2019srv_64Guest) and
#: 2022 (windows2019srvNext_64Guest, vSphere's id for Server 2022) the id 112.
CIM_OS_IDS = {"ubuntu64Guest": 94, "rhel8_64Guest": 80, "rhel9_64Guest": 80,
              "vmwarePhoton64Guest": 36, "other4xLinux64Guest": 100,
              "windows2019srv_64Guest": 112, "windows2019srvNext_64Guest": 112}

#: ProductSection vendor fields, as upstream's node image OVAs carry them.
VENDOR = "VMware Inc."
VENDOR_URL = "https://vmware.com"
CATEGORY = "Cluster API Provider (CAPI)"

#: The one logical network of a node image; deployments map it to theirs.
NETWORK_NAME = "nic0"

#: Build setting -> rasd:ResourceSubType of the SCSI controller.
CONTROLLERS = {"pvscsi": "VirtualSCSI", "lsilogic": "lsilogic",
               "lsilogic-sas": "lsilogicsas", "scsi": "lsilogic"}
#: Build setting -> rasd:ResourceSubType of the network card.
NETWORK_CARDS = {"vmxnet3": "VmxNet3", "e1000": "E1000", "e1000e": "E1000e"}
FIRMWARES = ("bios", "efi")
#: Unit numbers a SCSI controller offers its disks (7 is the controller itself).
SCSI_UNITS = tuple(n for n in range(16) if n != 7)

_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class OvfDisk:
    """A disk file of the package and the virtual disk it holds."""

    file_name: str
    file_size: int
    capacity: int
    populated_size: int | None = None


@dataclass(frozen=True)
class VirtualHardware:
    """The VM's hardware as the build made it."""

    vmx_version: int
    cpus: int
    memory_mb: int
    disk_controller: str = "pvscsi"
    network_card: str = "vmxnet3"
    firmware: str = "bios"


@dataclass(frozen=True)
class NodeImage:
    """What the descriptor says about a node image, apart from its disks."""

    name: str
    os_display_name: str
    kubernetes_semver: str
    ovf_os_id: int
    os_type: str
    hardware: VirtualHardware
    properties: tuple[tuple[str, str], ...]
    eula: str
    os_version: str = ""

    @property
    def annotation(self) -> str:
        """The AnnotationSection's text (vSphere shows it as the VM's notes)."""
        return (f"Cluster API vSphere image - {self.os_display_name} and "
                f"Kubernetes {self.kubernetes_semver}")

    @property
    def product(self) -> str:
        """The ProductSection's Product."""
        return f"{self.os_display_name} and Kubernetes {self.kubernetes_semver}"

    @property
    def version(self) -> str:
        """The Kubernetes typed version: ``kube-v1.37.1``."""
        return f"kube-{self.kubernetes_semver}"


def _system_config(hw: VirtualHardware) -> list[tuple[str, str]]:
    """The VirtualHardwareSection's own vmw:Config keys, as a vSphere export
    of a node VM writes them (values: upstream's captured descriptor)."""
    return [
        ("cpuHotAddEnabled", "false"), ("cpuHotRemoveEnabled", "false"),
        ("memoryHotAddEnabled", "false"), ("firmware", hw.firmware),
        # the guest keeps time with chrony/NTP; VMware Tools must not step the clock
        ("tools.syncTimeWithHost", "false"),
        ("tools.afterPowerOn", "true"), ("tools.afterResume", "true"),
        ("tools.beforeGuestShutdown", "true"), ("tools.beforeGuestStandby", "true"),
        ("powerOpInfo.powerOffType", "soft"), ("powerOpInfo.resetType", "soft"),
        ("powerOpInfo.suspendType", "hard"),
        # upstream turns nested virtualization on for Windows only; our images are Linux
        ("nestedHVEnabled", "false"),
        ("virtualICH7MPresent", "false"), ("virtualSMCPresent", "false"),
        ("flags.vvtdEnabled", "false"), ("flags.vbsEnabled", "false"),
        # off, as the build VM ran (the builders leave it off); vSphere writes it for BIOS too
        ("bootOptions.efiSecureBootEnabled", "false"),
        ("powerOpInfo.standbyAction", "checkpoint"),
    ]


def hardware_problems(hw: VirtualHardware) -> list[str]:
    """What a descriptor cannot express about ``hw``, one line each."""
    problems = []
    if hw.disk_controller not in CONTROLLERS:
        problems.append(f"disk_controller_type: {hw.disk_controller!r} cannot be described in "
                        f"the OVA; use one of {', '.join(CONTROLLERS)}")
    if hw.network_card not in NETWORK_CARDS:
        problems.append(f"network_card: {hw.network_card!r} cannot be described in the OVA; "
                        f"use one of {', '.join(NETWORK_CARDS)}")
    if hw.firmware not in FIRMWARES:
        problems.append(f"firmware: {hw.firmware!r} is neither bios nor efi")
    for what, value in (("vmx_version", hw.vmx_version), ("cpu", hw.cpus),
                        ("memory", hw.memory_mb)):
        if value <= 0:
            problems.append(f"{what}: {value} is not a positive number")
    return problems


def xml_text_problem(value: str, where: str) -> str | None:
    """Why ``value`` cannot appear in an XML document, or None."""
    bad = _XML_ILLEGAL.search(value)
    if bad:
        return (f"{where}: contains the character U+{ord(bad.group()):04X}, which XML "
                "cannot carry; remove it")
    return None


class _Builder:
    """Element helpers that refuse values XML cannot carry."""

    def el(self, parent: ET.Element | None, tag: str, text: object = None,
           **attrs: object) -> ET.Element:
        clean = {k.replace("__", ":"): self._value(v, f"{tag} {k}") for k, v in attrs.items()
                 if v is not None}
        node = ET.Element(tag, clean) if parent is None else ET.SubElement(parent, tag, clean)
        if text is not None:
            node.text = self._value(text, tag)
        return node

    def _value(self, value: object, where: str) -> str:
        text = str(value)
        problem = xml_text_problem(text, where)
        if problem:
            raise InputError(problem)
        return text

    def item(self, parent: ET.Element, rasd: dict[str, object], required: bool = True,
             config: dict[str, str] | None = None) -> ET.Element:
        attrs = {} if required else {"ovf__required": "false"}
        node = self.el(parent, "Item", **attrs)
        # The CIM schema orders rasd elements alphabetically; vCenter insists.
        for name in sorted(rasd):
            self.el(node, f"rasd:{name}", rasd[name])
        for key, value in (config or {}).items():
            self.el(node, "vmw:Config", ovf__required="false", vmw__key=key, vmw__value=value)
        return node


@dataclass(frozen=True)
class PackageFile:
    """A file of the package that is not a disk (the SBOM): listed in References only."""

    file_name: str
    file_size: int


def build_ovf(image: NodeImage, disks: list[OvfDisk],
              extra_files: Sequence[PackageFile] = ()) -> bytes:
    """The OVF descriptor (UTF-8 XML) of a node image with ``disks`` (first = boot disk).

    ``extra_files`` are listed in References after the disks (the OVF rule
    for an archive: its members follow the order of References).
    Raises InputError for hardware the descriptor cannot express, more disks
    than one controller holds, or text XML cannot carry.
    """
    problems = hardware_problems(image.hardware)
    if not disks:
        problems.append("no disk: an OVA needs at least one VMDK")
    if len(disks) > len(SCSI_UNITS):
        problems.append(f"{len(disks)} disks: one SCSI controller holds {len(SCSI_UNITS)}")
    if problems:
        raise InputError(f"{image.name}: cannot describe this image in an OVF", problems)
    b = _Builder()
    root = b.el(None, "Envelope", **{k.replace(":", "__"): v for k, v in NAMESPACES.items()})
    _references(b, root, disks, extra_files)
    _disk_section(b, root, disks)
    section = b.el(root, "NetworkSection")
    b.el(section, "Info", "The list of logical networks")
    net = b.el(section, "Network", ovf__name=NETWORK_NAME)
    b.el(net, "Description", "The network of the node")

    system = b.el(root, "VirtualSystem", ovf__id=image.name)
    b.el(system, "Info", "A Kubernetes node virtual machine")
    b.el(system, "Name", image.name)
    section = b.el(system, "AnnotationSection")
    b.el(section, "Info", "A human-readable annotation")
    b.el(section, "Annotation", image.annotation)
    section = b.el(system, "OperatingSystemSection", ovf__id=image.ovf_os_id,
                   ovf__version=image.os_version or None, vmw__osType=image.os_type)
    b.el(section, "Info", "The operating system installed")
    b.el(section, "Description", image.os_display_name)
    boot_disk = _hardware_section(b, system, image, disks)
    # Boot from the first disk, as the build VM did (Packer's boot_order disk,cdrom).
    order = b.el(system, "vmw:BootOrderSection", vmw__instanceId=boot_disk, vmw__type="disk")
    b.el(order, "Info", "Virtual hardware device boot order")
    section = b.el(system, "EulaSection")
    b.el(section, "Info", "An end-user license agreement")
    b.el(section, "License", image.eula.replace("\r\n", "\n").strip() + "\n")
    _product_section(b, system, image)

    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def _references(b: _Builder, root: ET.Element, disks: list[OvfDisk],
                extra_files: Sequence[PackageFile]) -> None:
    refs = b.el(root, "References")
    for i, disk in enumerate(disks, 1):
        b.el(refs, "File", ovf__href=disk.file_name, ovf__id=f"file{i}", ovf__size=disk.file_size)
    for i, extra in enumerate(extra_files, len(disks) + 1):
        b.el(refs, "File", ovf__href=extra.file_name, ovf__id=f"file{i}",
             ovf__size=extra.file_size)


def _disk_section(b: _Builder, root: ET.Element, disks: list[OvfDisk]) -> None:
    section = b.el(root, "DiskSection")
    b.el(section, "Info", "Virtual disk information")
    for i, disk in enumerate(disks, 1):
        b.el(section, "Disk", ovf__capacity=disk.capacity, ovf__capacityAllocationUnits="byte",
             ovf__diskId=f"vmdisk{i}", ovf__fileRef=f"file{i}",
             ovf__format=STREAM_OPTIMIZED_FORMAT, ovf__populatedSize=disk.populated_size)


def _hardware_section(b: _Builder, system: ET.Element, image: NodeImage,
                      disks: list[OvfDisk]) -> int:
    """The VirtualHardwareSection; returns the boot disk's InstanceID.

    The devices and keys a vSphere export of a node VM writes, in its order
    (upstream's descriptor was captured from one). Left out on purpose:
    vmw:CoresPerSocket (the build's custom_data does not carry cpu_cores;
    upstream writes a fixed 2 whatever the build used, vSphere's one core per
    socket applies); USB, floppy, serial and sound devices (the build VMs have
    none); MAC addresses and UUIDs (a template's clones get their own).
    """
    hw = image.hardware
    section = b.el(system, "VirtualHardwareSection")
    b.el(section, "Info", "Virtual hardware requirements")
    sys_el = b.el(section, "System")
    b.el(sys_el, "vssd:ElementName", "Virtual Hardware Family")
    b.el(sys_el, "vssd:InstanceID", 0)
    b.el(sys_el, "vssd:VirtualSystemIdentifier", image.name)
    b.el(sys_el, "vssd:VirtualSystemType", f"vmx-{hw.vmx_version:02d}")
    b.item(section, {"AllocationUnits": "hertz * 10^6", "Description": "Number of Virtual CPUs",
                     "ElementName": f"{hw.cpus} virtual CPU(s)", "InstanceID": 1,
                     "ResourceType": 3, "VirtualQuantity": hw.cpus})
    b.item(section, {"AllocationUnits": "byte * 2^20", "Description": "Memory Size",
                     "ElementName": f"{hw.memory_mb}MB of memory", "InstanceID": 2,
                     "ResourceType": 4, "VirtualQuantity": hw.memory_mb})
    _controllers_and_devices(b, section, hw)
    instance = DEVICES_BEFORE_DISKS
    boot_disk = instance + 1
    for i, _disk in enumerate(disks):
        instance += 1
        b.item(section, {"AddressOnParent": SCSI_UNITS[i], "ElementName": f"Hard disk {i + 1}",
                         "HostResource": f"ovf:/disk/vmdisk{i + 1}", "InstanceID": instance,
                         "Parent": SCSI_CONTROLLER_ID, "ResourceType": 17},
               config={"backing.writeThrough": "false"})
    _nic_and_cdrom(b, section, hw, instance)
    for key, value in _system_config(hw):
        b.el(section, "vmw:Config", ovf__required="false", vmw__key=key, vmw__value=value)
    return boot_disk


#: InstanceIDs of the SCSI controller and the IDE controller the CD-ROM drive hangs on.
SCSI_CONTROLLER_ID, IDE0_ID = 3, 5
#: The last InstanceID before the disks (CPU, memory, controllers, video, VMCI).
DEVICES_BEFORE_DISKS = 7


def _controllers_and_devices(b: _Builder, section: ET.Element, hw: VirtualHardware) -> None:
    # PCI slots as vSphere assigns them to a new VM's first SCSI controller, VMCI
    # device and NIC: a deployed node gets the same slots (so the same interface
    # names, e.g. ens192) as the VM the image was built in.
    b.item(section, {"Address": 0, "Description": "SCSI Controller",
                     "ElementName": "SCSI controller 0", "InstanceID": SCSI_CONTROLLER_ID,
                     "ResourceSubType": CONTROLLERS[hw.disk_controller], "ResourceType": 6},
           config={"slotInfo.pciSlotNumber": "160"})
    # IDE controllers and a CD-ROM drive: users attach ISOs (cloud-init seeds,
    # tools) to node VMs, and a template without a drive cannot take one.
    b.item(section, {"Address": 1, "Description": "IDE Controller", "ElementName": "IDE 1",
                     "InstanceID": 4, "ResourceType": 5})
    b.item(section, {"Address": 0, "Description": "IDE Controller", "ElementName": "IDE 0",
                     "InstanceID": IDE0_ID, "ResourceType": 5})
    b.item(section, {"AutomaticAllocation": "false", "ElementName": "Video card",
                     "InstanceID": 6, "ResourceType": 24}, required=False,
           config={"useAutoDetect": "false", "videoRamSizeInKB": "4096",
                   "enable3DSupport": "false", "use3dRenderer": "automatic",
                   "graphicsMemorySizeInKB": "262144"})
    b.item(section, {"AutomaticAllocation": "false", "ElementName": "VMCI device",
                     "InstanceID": DEVICES_BEFORE_DISKS, "ResourceSubType": "vmware.vmci",
                     "ResourceType": 1},
           required=False, config={"slotInfo.pciSlotNumber": "32",
                                   "allowUnrestrictedCommunication": "false"})


def _nic_and_cdrom(b: _Builder, section: ET.Element, hw: VirtualHardware, last: int) -> None:
    b.item(section, {"AddressOnParent": 7, "AutomaticAllocation": "true",
                     "Connection": NETWORK_NAME,
                     "Description": f"{NETWORK_CARDS[hw.network_card]} ethernet adapter",
                     "ElementName": "Network adapter 1", "InstanceID": last + 1,
                     "ResourceSubType": NETWORK_CARDS[hw.network_card], "ResourceType": 10},
           config={"slotInfo.pciSlotNumber": "192", "wakeOnLanEnabled": "false",
                   "connectable.allowGuestControl": "true"})
    b.item(section, {"AddressOnParent": 0, "AutomaticAllocation": "false",
                     "ElementName": "CD/DVD drive 1", "InstanceID": last + 2,
                     "Parent": IDE0_ID, "ResourceSubType": "vmware.cdrom.remotepassthrough",
                     "ResourceType": 15}, required=False,
           config={"backing.exclusive": "false", "connectable.allowGuestControl": "false"})


def _product_section(b: _Builder, system: ET.Element, image: NodeImage) -> None:
    section = b.el(system, "ProductSection")
    b.el(section, "Info", "Information about the installed software")
    b.el(section, "Product", image.product)
    # Vendor, VendorUrl and Category as upstream's OVAs carry them (vSphere's
    # deploy wizard shows them; tools that list node images read Category).
    b.el(section, "Vendor", VENDOR)
    b.el(section, "Version", image.version)
    b.el(section, "FullVersion", image.version)
    b.el(section, "VendorUrl", VENDOR_URL)
    b.el(section, "Category", CATEGORY)
    for key, value in image.properties:
        b.el(section, "Property", ovf__key=key, ovf__type="string",
             ovf__userConfigurable="false", ovf__value=value)
