"""VMDK files: the sparse extent header and the descriptor, as read back.

A hosted sparse VMDK (monolithicSparse, streamOptimized) starts with a
512-byte header (magic ``KDMV``) and carries its text descriptor inside; a
flat or split disk is a small text descriptor naming separate extent files.
We read only what the OVF needs: the disk type (``createType``), the
capacity and, for streamOptimized disks, how much of it is populated.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imagebuilder.errors import InputError
from imagebuilder.ova.limits import MAX_DISK_BYTES, open_regular, size_text

SECTOR = 512
MAGIC = b"KDMV"
STREAM_OPTIMIZED = "streamOptimized"
#: The OVF ``ovf:format`` of a streamOptimized disk.
STREAM_OPTIMIZED_FORMAT = ("http://www.vmware.com/interfaces/specifications/vmdk.html"
                           "#streamOptimized")
#: A header's gdOffset when the grain directory's place is in the footer.
GD_AT_END = 0xFFFFFFFFFFFFFFFF
FLAG_ZERO_GRAIN_GTE = 1 << 2
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
COMPRESSION_DEFLATE = 1
MARKER_FOOTER = 3
#: Descriptors are a few hundred bytes; refuse to read absurd ones.
MAX_DESCRIPTOR = 1 << 20

HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")
_DESCRIPTOR_START = b"# Disk DescriptorFile"
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+([0-9]{1,20})\s+(\w+)(?:\s+"([^"]*)")?'
                     r'(?:\s+([0-9]{1,20}))?\s*$', re.ASCII)
_KEY_VALUE = re.compile(r'^([A-Za-z0-9_.]+)\s*=\s*"?(.*?)"?\s*$', re.ASCII)


@dataclass(frozen=True)
class SparseHeader:
    """The fields of a hosted sparse extent header we use (offsets in sectors)."""

    version: int
    flags: int
    capacity: int
    grain_size: int
    descriptor_offset: int
    descriptor_size: int
    gtes_per_gt: int
    gd_offset: int
    overhead: int
    compress_algorithm: int

    @classmethod
    def parse(cls, data: bytes) -> SparseHeader | None:
        """The header in the first bytes of ``data``, or None when it is not one."""
        if len(data) < HEADER.size or data[:4] != MAGIC:
            return None
        (_, version, flags, capacity, grain, desc_off, desc_size, gtes, _rgd, gd, overhead,
         _unclean, _chars, compress) = HEADER.unpack_from(data)
        return cls(version, flags, capacity, grain, desc_off, desc_size, gtes, gd, overhead,
                   compress)

    @property
    def stream_layout(self) -> bool:
        """Compressed grains with markers, as streamOptimized requires."""
        return bool(self.flags & FLAG_COMPRESSED and self.flags & FLAG_MARKERS)

    def problem(self) -> str:
        """What is out of range in this header ("" when nothing): the values every
        reader (vSphere's, qemu-img's, ours) relies on to find the grains."""
        if self.version not in (1, 2, 3):
            return f"version {self.version} is not a sparse extent version (1 to 3)"
        if not _power_of_two(self.grain_size, 8, MAX_GRAIN_SECTORS):
            return (f"grainSize {self.grain_size} is not a power of two from 8 to "
                    f"{MAX_GRAIN_SECTORS} sectors")
        if not _power_of_two(self.gtes_per_gt, 1, MAX_GTES):
            return (f"numGTEsPerGT {self.gtes_per_gt} is not a power of two up to {MAX_GTES}")
        if not 0 < self.capacity <= MAX_DISK_BYTES // SECTOR:
            return (f"a capacity of {self.capacity} sectors is not from 1 sector to the "
                    f"{size_text(MAX_DISK_BYTES)} vSphere takes")
        if self.flags & FLAG_COMPRESSED and self.compress_algorithm != COMPRESSION_DEFLATE:
            return (f"compressAlgorithm {self.compress_algorithm} is not deflate "
                    f"({COMPRESSION_DEFLATE})")
        return ""


#: The grain sizes the format allows: powers of two of at least 4 KiB; 1 MiB is plenty.
MAX_GRAIN_SECTORS = 2048
MAX_GTES = 4096


def _power_of_two(value: int, low: int, high: int) -> bool:
    return low <= value <= high and value & (value - 1) == 0


@dataclass(frozen=True)
class Extent:
    """One extent line of a descriptor: ``RW 41943040 SPARSE "disk.vmdk"``."""

    access: str
    sectors: int
    kind: str
    file_name: str


@dataclass(frozen=True)
class VmdkInfo:
    """What a VMDK says about itself."""

    path: Path
    create_type: str
    capacity: int
    """Virtual disk size in bytes."""
    size: int
    """Size of this file in bytes."""
    extents: tuple[Extent, ...]
    header: SparseHeader | None
    ddb: dict[str, str]

    @property
    def layout(self) -> str:
        """What the disk really is, for messages: its createType, and where the
        header says otherwise, what the header says."""
        if self.header is None:
            return f"{self.create_type} (a descriptor whose data is in other files)"
        if self.create_type == STREAM_OPTIMIZED and not self.header.stream_layout:
            return (f"{STREAM_OPTIMIZED} by name only: its header (flags "
                    f"{self.header.flags:#x}) has no compressed grains with markers")
        return self.create_type

    @property
    def stream_optimized(self) -> bool:
        """Whether the disk is streamOptimized with the stream layout vSphere reads."""
        return (self.create_type == STREAM_OPTIMIZED and self.header is not None
                and self.header.stream_layout)

    def extent_paths(self) -> list[Path]:
        """The separate files this descriptor names (none for a monolithic disk)."""
        return [self.path.parent / e.file_name for e in self.extents
                if e.file_name and e.file_name != self.path.name]


def parse_descriptor(text: str) -> tuple[dict[str, str], list[Extent]]:
    """Key/value fields (``createType``, ``ddb.*``...) and extent lines of a descriptor."""
    fields: dict[str, str] = {}
    extents: list[Extent] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _EXTENT.match(line)
        if match:
            access, sectors, kind, name, _ = match.groups()
            extents.append(Extent(access, int(sectors), kind, name or ""))
            continue
        match = _KEY_VALUE.match(line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields, extents


def _read_exact(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def read_vmdk_at(fh: BinaryIO, offset: int, size: int, path: Path, shown: str) -> VmdkInfo:
    """Read the VMDK stored at ``offset`` (``size`` bytes) of an open file.

    Used for plain files (offset 0) and for disks inside an OVA (a tar member's
    data offset). Raises InputError naming ``shown`` when it is not a VMDK or
    its header's values are out of range.
    """
    head = _read_exact(fh, offset, SECTOR) if size else b""
    header = SparseHeader.parse(head[:size])
    if header is not None:
        fields, extents = _embedded_descriptor(fh, offset, size, header, shown)
        capacity = header.capacity * SECTOR
    elif head.startswith(_DESCRIPTOR_START) and size <= MAX_DESCRIPTOR:
        text = _read_exact(fh, offset, size).decode("utf-8", errors="replace")
        fields, extents = parse_descriptor(text)
        capacity = sum(e.sectors for e in extents) * SECTOR
        if capacity > MAX_DISK_BYTES:
            raise InputError(f"{shown}: its extents add up to {capacity} bytes, over the "
                             f"{size_text(MAX_DISK_BYTES)} vSphere takes; the file is damaged")
    elif not size:
        raise InputError(f"{shown}: an empty file (0 bytes), not a VMDK")
    else:
        raise InputError(f"{shown}: not a VMDK (no sparse header and no disk descriptor)")
    create_type = fields.get("createType", "")
    if not create_type:
        raise InputError(f"{shown}: the VMDK descriptor has no createType")
    ddb = {k: v for k, v in fields.items() if k.startswith("ddb.")}
    return VmdkInfo(path, create_type, capacity, size, tuple(extents), header, ddb)


def _embedded_descriptor(fh: BinaryIO, offset: int, size: int, header: SparseHeader,
                         shown: str) -> tuple[dict[str, str], list[Extent]]:
    problem = header.problem()
    if problem:
        raise InputError(f"{shown}: the VMDK header is damaged: {problem}")
    if header.descriptor_offset == 0 or header.descriptor_size == 0:
        raise InputError(f"{shown}: a sparse extent without a descriptor (part of a "
                         "split disk); give the disk's descriptor file instead")
    length = header.descriptor_size * SECTOR
    if length > MAX_DESCRIPTOR or (header.descriptor_offset * SECTOR + length > size):
        raise InputError(f"{shown}: the VMDK header's descriptor location is out of range; "
                         "the file is damaged")
    raw = _read_exact(fh, offset + header.descriptor_offset * SECTOR, length)
    fields, extents = parse_descriptor(raw.split(b"\0", 1)[0].decode("utf-8", errors="replace"))
    if "createType" not in fields:
        raise InputError(f"{shown}: a sparse extent without a descriptor (part of a "
                         "split disk); give the disk's descriptor file instead")
    return fields, extents


def read_vmdk(path: Path) -> VmdkInfo:
    """Read the VMDK at ``path``; InputError when it is missing, no regular file or
    not a VMDK."""
    path = Path(path)
    with open_regular(path, "a VMDK file") as fh:
        try:
            return read_vmdk_at(fh, 0, os.fstat(fh.fileno()).st_size, path, str(path))
        except OSError as exc:
            raise InputError(f"{path}: cannot read it ({exc.strerror})") from None


def is_disk_extent_only(path: Path) -> bool:
    """True for a file that is only data of a disk described elsewhere: a raw
    ``-flat.vmdk`` extent or a sparse extent without a descriptor (``-s001.vmdk``)."""
    with open_regular(path, "a VMDK file") as fh:
        head = fh.read(SECTOR)
        header = SparseHeader.parse(head)
        if header is None:
            return not head.startswith(_DESCRIPTOR_START)
        if header.descriptor_offset == 0 or header.descriptor_size == 0:
            return True
        # qemu-img points split extents at an empty descriptor area
        length = min(header.descriptor_size * SECTOR, MAX_DESCRIPTOR)
        return b"createType" not in _read_exact(fh, header.descriptor_offset * SECTOR, length)


def populated_size(fh: BinaryIO, offset: int, size: int, header: SparseHeader) -> int:
    """Bytes of the disk that hold data: allocated grains times the grain size.

    The grain directory is where the header says, or (``GD_AT_END``, as
    VMware writes streams) where the footer near the end of the file says.
    When neither can be read, the grain markers are counted instead.
    """
    grain_bytes = header.grain_size * SECTOR
    gd_offset = header.gd_offset
    if gd_offset == GD_AT_END and size >= 3 * SECTOR:
        footer = SparseHeader.parse(_read_exact(fh, offset + size - 2 * SECTOR, SECTOR))
        gd_offset = footer.gd_offset if footer else GD_AT_END
    grains = None
    if gd_offset not in (0, GD_AT_END) and header.gtes_per_gt and header.grain_size:
        grains = _count_grains_from_tables(fh, offset, size, header, gd_offset)
    if grains is None:
        grains = _count_grain_markers(fh, offset, size, header)
    return min(grains * grain_bytes, header.capacity * SECTOR)


#: Grain directory entries read at a time (the directory of a large disk is megabytes).
GD_CHUNK = 1 << 16


def _count_grains_from_tables(fh: BinaryIO, offset: int, size: int, header: SparseHeader,
                              gd_offset: int) -> int | None:
    """Allocated grains per the grain tables; None when the tables do not fit the
    file (each table takes room of its own, so a directory pointing at more
    tables than the file holds is damaged, whatever it points at)."""
    grains_total = -(-header.capacity // header.grain_size)
    tables = -(-grains_total // header.gtes_per_gt)
    gt_bytes = header.gtes_per_gt * 4
    if gd_offset * SECTOR + tables * 4 > size:
        return None
    skip = {0, 1} if header.flags & FLAG_ZERO_GRAIN_GTE else {0}
    count = used = 0
    for first in range(0, tables, GD_CHUNK):
        n = min(GD_CHUNK, tables - first)
        gd = struct.unpack(f"<{n}I", _read_exact(fh, offset + gd_offset * SECTOR + first * 4,
                                                 n * 4))
        for gt_offset in gd:
            if gt_offset == 0:
                continue
            used += gt_bytes
            if gt_offset * SECTOR + gt_bytes > size or used > size:
                return None
            table = struct.unpack(f"<{header.gtes_per_gt}I",
                                  _read_exact(fh, offset + gt_offset * SECTOR, gt_bytes))
            count += sum(1 for entry in table if entry not in skip)
    return count


def _count_grain_markers(fh: BinaryIO, offset: int, size: int, header: SparseHeader) -> int:
    """Walk a stream's markers: a grain marker is (lba, compressed size) then data;
    a metadata marker has size 0 and its type, then ``lba`` sectors of metadata."""
    pos = max(header.overhead, header.descriptor_offset + header.descriptor_size, 1) * SECTOR
    count = 0
    while pos + 16 <= size:
        lba, length, kind = struct.unpack("<QII", _read_exact(fh, offset + pos, 16))
        if length:
            count += 1
            pos += -(-(12 + length) // SECTOR) * SECTOR
        elif kind == 0 and lba == 0:
            break
        else:
            pos += SECTOR + lba * SECTOR
    return count
