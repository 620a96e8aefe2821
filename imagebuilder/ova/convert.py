"""Conversion of a VMDK (a local build's monolithicSparse disk) to streamOptimized.

With vmware-vdiskmanager installed, VMware's own tool converts (``-r IN -t 5
OUT``) and the converted disk has no digest yet. Otherwise qemu-img says where
the source's data lies (``qemu-img map``: file and offset of every allocated
range), we read it from there and write the streamOptimized file ourselves,
front to back (``stream.write_stream_optimized``), so its digest comes with
it and the OVA can be written in one read of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from imagebuilder.errors import BuildError
from imagebuilder.ova.hashing import new_hash
from imagebuilder.ova.stream import GRAIN, write_stream_optimized
from imagebuilder.ova.vmdk import STREAM_OPTIMIZED, VmdkInfo, read_vmdk
from imagebuilder.processes import run_child

CONVERTERS = ("vmware-vdiskmanager", "qemu-img")
MISSING_CONVERTER = ("no VMDK converter found: install qemu-img (apt-get install qemu-utils, "
                     "dnf install qemu-img, brew install qemu) or VMware's vmware-vdiskmanager, "
                     "and put it on PATH")


@dataclass(frozen=True)
class Converter:
    """A tool that reads VMDKs for a streamOptimized copy: vmware-vdiskmanager or qemu-img."""

    name: str
    path: str


def find_converter() -> Converter | None:
    """vmware-vdiskmanager when installed (VMware's own writer), else qemu-img."""
    for name in CONVERTERS:
        path = shutil.which(name)
        if path:
            return Converter(name, path)
    return None


@dataclass(frozen=True)
class Conversion:
    """A converted disk and, when it was taken while writing, its digest."""

    info: VmdkInfo
    digest: str | None


def convert_to_stream_optimized(source: VmdkInfo, target: Path, converter: Converter,
                                log: Callable[[str], None] = lambda _: None,
                                algorithm: str = "sha256", cid: int | None = None) -> Conversion:
    """Write a streamOptimized copy of ``source`` at ``target`` and read its header back.

    ``cid`` fixes the copy's content ID (reproducible OVAs; qemu-img path only).

    With qemu-img the copy is written here and its digest (``algorithm``)
    comes back with it; vmware-vdiskmanager's copy comes without one. The
    caller owns ``target`` (a temporary name; removed here when the
    conversion fails). Raises BuildError with the tool's output when it
    fails or writes something that is not streamOptimized.
    """
    log(f"converting {source.path.name} ({source.create_type}) to {STREAM_OPTIMIZED} "
        f"with {converter.name}")
    digest = None
    try:
        if converter.name == "vmware-vdiskmanager":
            _run(converter, ["-r", str(source.path), "-t", "5", str(target)], source)
        else:
            hasher = new_hash(algorithm)
            with open(target, "wb") as fh:
                write_stream_optimized(fh, hasher, target.name, source.capacity,
                                       _grains(_mapped(converter, source), source), cid=cid)
            digest = hasher.hexdigest()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    info = read_vmdk(target)
    if not info.stream_optimized:
        raise BuildError(f"{converter.name} wrote {info.layout}, not {STREAM_OPTIMIZED}, "
                         f"from {source.path}")
    if info.capacity != source.capacity:
        raise BuildError(f"{converter.name} changed the capacity of {source.path} from "
                         f"{source.capacity} to {info.capacity} bytes")
    return Conversion(info, digest)


def _run(converter: Converter, args: list[str], source: VmdkInfo) -> str:
    result = run_child([converter.path, *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, errors="replace")
    if result.returncode != 0:
        output = (result.stdout + "\n" + result.stderr).strip()
        tail = "\n".join(output.splitlines()[-20:])
        raise BuildError(f"{converter.name} failed (exit code {result.returncode}) converting "
                         f"{source.path} to {STREAM_OPTIMIZED}:\n{tail}")
    return result.stdout


class Mapped(NamedTuple):
    """A range of the virtual disk stored as is at ``offset`` of ``path``."""

    start: int
    length: int
    offset: int
    path: str


def _mapped(converter: Converter, source: VmdkInfo) -> list[Mapped]:
    """The ranges ``qemu-img map`` reports (its human format names each range's
    file: split disks and parents keep data in other files). Ranges it leaves
    out read as zeros; data it cannot place (compressed) makes it fail."""
    out = _run(converter, ["map", "-f", "vmdk", "--output=human",
                           os.path.abspath(source.path)], source)
    ranges = []
    for line in out.splitlines()[1:]:
        fields = line.split(None, 3)
        if len(fields) != 4:
            raise BuildError(f"{converter.name} map {source.path}: cannot read the line "
                             f"{line!r}")
        start, length, offset = (int(f, 16) for f in fields[:3])
        ranges.append(Mapped(start, length, offset, fields[3]))
    return ranges


def _grains(ranges: list[Mapped], source: VmdkInfo) -> Iterator[tuple[int, bytearray]]:
    """(grain number, its data) of every grain a mapped range touches, in order."""
    files: dict[str, int] = {}
    number, grain = -1, bytearray()
    try:
        for start, length, offset, path in ranges:
            if path not in files:
                try:
                    files[path] = os.open(path, os.O_RDONLY)
                except OSError as exc:
                    raise BuildError(f"{path}: cannot read it ({exc.strerror}); it holds data "
                                     f"of {source.path}") from None
            position, end = start, min(start + length, source.capacity)
            while position < end:
                index, within = divmod(position, GRAIN)
                if index != number:
                    if number >= 0:
                        yield number, grain
                    number, grain = index, bytearray(GRAIN)
                count = min(GRAIN - within, end - position)
                data = os.pread(files[path], count, offset + position - start)
                if len(data) != count:
                    raise BuildError(f"{path}: ends before the data of {source.path} that "
                                     "qemu-img maps there; the disk is damaged")
                grain[within:within + count] = data
                position += count
        if number >= 0:
            yield number, grain
    finally:
        for fd in files.values():
            os.close(fd)
