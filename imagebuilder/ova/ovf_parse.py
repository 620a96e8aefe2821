"""Reading an OVF descriptor back: the files, disks, networks and properties we check.

``parse_ovf`` reads any OVF 1.x envelope with a namespace-aware parser (the
descriptors we write and those vSphere exports write alike); problems with
single values are collected rather than raised, so a verification can report
them all at once.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.parsers import expat

from imagebuilder.errors import BuildError
from imagebuilder.ova.limits import MAX_DISK_BYTES, decimal, shown_name, shown_value, size_text

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
CIM = "http://schemas.dmtf.org/wbem/wscim/1/common"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True)
class OvfFile:
    """A References File: its id, the member it names and the size it claims."""

    id: str
    href: str
    size: int | None


@dataclass(frozen=True)
class OvfDiskEntry:
    """A DiskSection Disk: which File holds it, its capacity in bytes and format."""

    disk_id: str
    file_ref: str
    capacity: int | None
    format: str


@dataclass
class ParsedOvf:
    """What we check and use of a descriptor read back from an OVA."""

    files: list[OvfFile] = field(default_factory=list)
    disks: list[OvfDiskEntry] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    name: str | None = None
    os_id: int | None = None
    os_type: str | None = None
    vmx: str | None = None
    firmware: str | None = None
    annotation: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


#: ``byte`` or ``byte * 2^20`` (DSP0004 programmatic units); bases 2 and 10, small powers.
_UNITS = re.compile(r"byte(?:\s*\*\s*(2|10)\s*\^\s*([0-9]{1,2}))?", re.ASCII)


def _capacity(disk: ET.Element, problems: list[str]) -> int | None:
    raw = disk.get(_q(OVF, "capacity"), "")
    units = disk.get(_q(OVF, "capacityAllocationUnits"), "byte").strip()
    match = _UNITS.fullmatch(units)
    count = decimal(raw, MAX_DISK_BYTES)
    where = f"Disk {shown_name(disk.get(_q(OVF, 'diskId'), ''))}"
    if count is None or not match:
        problems.append(f"{where}: capacity {shown_value(raw)} in units {shown_value(units)} "
                        "is not a byte count (ASCII digits; units byte or byte * 2^N)")
        return None
    base, power = match.groups()
    capacity = count * (int(base) ** int(power) if base else 1)
    if capacity > MAX_DISK_BYTES:
        problems.append(f"{where}: a capacity of {capacity} bytes is over the "
                        f"{size_text(MAX_DISK_BYTES)} vSphere takes")
        return None
    return capacity


class _Doctype(Exception):
    """The descriptor declares a document type."""


def _refuse_doctype(data: bytes, shown: str) -> None:
    """An OVF descriptor has no DTD; one with entities could expand without bound."""
    parser = expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise _Doctype

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except _Doctype:
        raise BuildError(f"{shown}: the OVF descriptor declares a document type (<!DOCTYPE>); "
                         "a descriptor has none, and its entities could expand without "
                         "bound") from None
    except expat.ExpatError:
        pass  # reported by the parse proper


def parse_ovf(data: bytes, shown: str) -> ParsedOvf:
    """Read a descriptor; BuildError when it is not XML or not an OVF envelope.

    Problems with individual parts (a size that is not a number...) are
    collected in ``problems`` rather than raised.
    """
    _refuse_doctype(data, shown)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise BuildError(f"{shown}: the OVF descriptor is not well-formed XML ({exc})") from None
    if root.tag != _q(OVF, "Envelope"):
        raise BuildError(f"{shown}: the root element is {root.tag}, not an OVF 1.x Envelope")
    out = ParsedOvf()
    for f in root.iterfind(f"{_q(OVF, 'References')}/{_q(OVF, 'File')}"):
        raw = f.get(_q(OVF, "size"))
        size = decimal(raw, MAX_DISK_BYTES)
        if raw is not None and size is None:
            out.problems.append(f"File {shown_name(f.get(_q(OVF, 'href'), ''))}: size "
                                f"{shown_value(raw)} is not a number of bytes (ASCII digits, "
                                f"at most {size_text(MAX_DISK_BYTES)})")
        out.files.append(OvfFile(f.get(_q(OVF, "id"), ""), f.get(_q(OVF, "href"), ""), size))
    for d in root.iterfind(f"{_q(OVF, 'DiskSection')}/{_q(OVF, 'Disk')}"):
        out.disks.append(OvfDiskEntry(d.get(_q(OVF, "diskId"), ""), d.get(_q(OVF, "fileRef"), ""),
                                      _capacity(d, out.problems), d.get(_q(OVF, "format"), "")))
    out.networks = [n.get(_q(OVF, "name"), "") for n in
                    root.iterfind(f"{_q(OVF, 'NetworkSection')}/{_q(OVF, 'Network')}")]
    system = root.find(_q(OVF, "VirtualSystem"))
    if system is None:
        out.problems.append("no VirtualSystem element")
        return out
    out.name = system.findtext(_q(OVF, "Name"))
    out.annotation = system.findtext(f"{_q(OVF, 'AnnotationSection')}/{_q(OVF, 'Annotation')}")
    os_section = system.find(_q(OVF, "OperatingSystemSection"))
    if os_section is not None:
        out.os_id = decimal(os_section.get(_q(OVF, "id"), ""), 1 << 31)
        out.os_type = os_section.get(_q(VMW, "osType"))
    hardware = system.find(_q(OVF, "VirtualHardwareSection"))
    if hardware is not None:
        out.vmx = hardware.findtext(f"{_q(OVF, 'System')}/{_q(VSSD, 'VirtualSystemType')}")
        for config in hardware.iterfind(_q(VMW, "Config")):
            if config.get(_q(VMW, "key")) == "firmware":
                out.firmware = config.get(_q(VMW, "value"))
    for product in system.iterfind(_q(OVF, "ProductSection")):
        for prop in product.iterfind(_q(OVF, "Property")):
            out.properties[prop.get(_q(OVF, "key"), "")] = prop.get(_q(OVF, "value"), "")
    return out
