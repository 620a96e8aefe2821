"""Write a streamOptimized VMDK front to back, hashing it on the way.

qemu-img's streamOptimized writer keeps the grain directory and tables at the
front of the file and updates them after every grain, so its output is final
only once it exits and its digest would cost another read of it. This writer
lays the file out as VMware's streams are, strictly in order ("Virtual Disk
Format 5.0", stream-optimized compressed sparse extents): the header (grain
directory "at the end"), the embedded descriptor, each grain deflated behind
a grain marker, each grain table behind a marker after its grains, the grain
directory, the footer (the header again, now with the directory's place) and
the end-of-stream marker. Every byte is hashed as it is written.

Grains that hold only zeros are left out, as qemu-img and VMware do.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Iterable

from imagebuilder.ova.vmdk import (
    COMPRESSION_DEFLATE,
    FLAG_COMPRESSED,
    FLAG_MARKERS,
    GD_AT_END,
    HEADER,
    MAGIC,
    MARKER_FOOTER,
    SECTOR,
    STREAM_OPTIMIZED,
)

GRAIN_SECTORS = 128
GRAIN = GRAIN_SECTORS * SECTOR
GTES_PER_GT = 512
DESCRIPTOR_SECTORS = 20
#: The first grain starts 64 KiB in, as in VMware's and qemu-img's streams.
OVERHEAD_SECTORS = 128
FLAG_NEWLINE_TEST = 1
MARKER_EOS, MARKER_GT, MARKER_GD = 0, 1, 2
ZERO_GRAIN = bytes(GRAIN)
#: zlib releases the GIL: grains are deflated on this many threads while the
#: caller's thread reads the next ones and writes the finished ones in order.
WORKERS = 2
IN_FLIGHT = 16


def descriptor(file_name: str, capacity: int, adapter_type: str = "lsilogic",
               cid: int | None = None) -> bytes:
    """The embedded descriptor of a streamOptimized disk of ``capacity`` bytes,
    with the fields qemu-img writes; the content ID is random unless ``cid`` is given."""
    cid = int.from_bytes(os.urandom(4), "little") if cid is None else cid
    sectors = capacity // SECTOR
    cylinders = min(capacity // (255 * 63 * SECTOR), 65535)
    return (
        "# Disk DescriptorFile\nversion=1\n"
        f"CID={cid:08x}\nparentCID=ffffffff\n"
        f'createType="{STREAM_OPTIMIZED}"\n\n'
        f'# Extent description\nRW {sectors} SPARSE "{file_name}"\n\n'
        "# The Disk Data Base\n#DDB\n\n"
        'ddb.virtualHWVersion = "4"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        'ddb.geometry.heads = "255"\nddb.geometry.sectors = "63"\n'
        f'ddb.adapterType = "{adapter_type}"\n'
        'ddb.toolsVersion = "2147483647"\n'
    ).encode("ascii")


def _header(capacity_sectors: int, gd_offset: int) -> bytes:
    return HEADER.pack(MAGIC, 3, FLAG_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
                       capacity_sectors, GRAIN_SECTORS, 1, DESCRIPTOR_SECTORS, GTES_PER_GT, 0,
                       gd_offset, OVERHEAD_SECTORS, 0, b"\n \r\n",
                       COMPRESSION_DEFLATE).ljust(SECTOR, b"\0")


def _marker(sectors: int, kind: int) -> bytes:
    return struct.pack("<QII", sectors, 0, kind).ljust(SECTOR, b"\0")


def _pad(size: int) -> bytes:
    return bytes(-size % SECTOR)


class _Stream:
    """The output file, its position and digest, and the grain tables so far."""

    def __init__(self, fh: BinaryIO, hasher: Any, capacity: int) -> None:
        self.fh = fh
        self.hasher = hasher
        self.position = 0
        self.capacity_sectors = capacity // SECTOR
        self.directory = [0] * -(-self.capacity_sectors // (GRAIN_SECTORS * GTES_PER_GT))
        self.table = [0] * GTES_PER_GT
        self.table_number = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.hasher.update(data)
        self.position += len(data)

    def grain(self, number: int, deflated: bytes) -> None:
        self._tables_before(number // GTES_PER_GT)
        self.table[number % GTES_PER_GT] = self.position // SECTOR
        marker = struct.pack("<QI", number * GRAIN_SECTORS, len(deflated))
        self.write(marker + deflated + _pad(len(marker) + len(deflated)))

    def _tables_before(self, table_number: int) -> None:
        while self.table_number < table_number:
            data = struct.pack(f"<{GTES_PER_GT}I", *self.table)
            self.write(_marker(len(data) // SECTOR, MARKER_GT))
            self.directory[self.table_number] = self.position // SECTOR
            self.write(data)
            self.table = [0] * GTES_PER_GT
            self.table_number += 1

    def finish(self) -> None:
        self._tables_before(len(self.directory))
        data = struct.pack(f"<{len(self.directory)}I", *self.directory)
        data += _pad(len(data))
        self.write(_marker(len(data) // SECTOR, MARKER_GD))
        gd_offset = self.position // SECTOR
        self.write(data)
        self.write(_marker(1, MARKER_FOOTER))
        self.write(_header(self.capacity_sectors, gd_offset))
        self.write(_marker(0, MARKER_EOS))


def write_stream_optimized(fh: BinaryIO, hasher: Any, file_name: str, capacity: int,
                           grains: Iterable[tuple[int, bytes | bytearray]],
                           adapter_type: str = "lsilogic", cid: int | None = None) -> None:
    """Write a streamOptimized VMDK of ``capacity`` bytes to ``fh``, front to back.

    ``grains`` yields (grain number, 64 KiB of data) in increasing order;
    grains not yielded, and grains of zeros, read as zeros. Every byte written
    goes to ``hasher.update`` as well. ``file_name`` is the extent name the
    descriptor records (the disk's own file name); ``cid`` its content ID
    (default: random).
    """
    if capacity % SECTOR:
        raise ValueError(f"capacity {capacity} is not a whole number of sectors")
    text = descriptor(file_name, capacity, adapter_type, cid)
    if len(text) > DESCRIPTOR_SECTORS * SECTOR:
        raise ValueError(f"descriptor of {len(text)} bytes for {file_name!r} does not fit")
    out = _Stream(fh, hasher, capacity)
    out.write(_header(out.capacity_sectors, GD_AT_END))
    out.write(text.ljust(DESCRIPTOR_SECTORS * SECTOR, b"\0"))
    out.write(bytes((OVERHEAD_SECTORS - 1 - DESCRIPTOR_SECTORS) * SECTOR))
    pending: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="vmdk-deflate") as pool:
        try:
            last = -1
            for number, data in grains:
                if number <= last:
                    raise ValueError(f"grain {number} after grain {last}: out of order")
                last = number
                if data == ZERO_GRAIN:
                    continue
                pending.append((number, pool.submit(zlib.compress, data)))
                if len(pending) >= IN_FLIGHT:
                    done, future = pending.popleft()
                    out.grain(done, future.result())
            while pending:
                done, future = pending.popleft()
                out.grain(done, future.result())
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
    out.finish()
