"""Hostile OVAs, crafted from a good one, and a child process measured as it runs.

Each ``Case`` makes one damaged, oversized or misleading OVA (or a path that is
no OVA at all) from the members of a good OVA that our assembler wrote; the tar
headers are written here byte by byte (not with our own writer, which refuses
most of these). ``run_measured`` runs a command and returns, with its exit code
and output, the peak resident memory of that child alone (``os.wait4``).

No tests here; tests/ova/test_hostile.py and tests/vsphere/test_hostile_import.py use it.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imagebuilder.ova.limits import MAX_DESCRIPTOR

BLOCK = 512
MiB = 1 << 20
#: "Well under 200 MB": what any of these may take at its peak, Python included.
RSS_LIMIT = 160 * MiB


@dataclass
class Good:
    """The members of a good OVA, by name, in order, and its stem."""

    members: dict[str, bytes]
    stem: str

    @property
    def ovf(self) -> str:
        return f"{self.stem}.ovf"

    @property
    def mf(self) -> str:
        return f"{self.stem}.mf"

    @property
    def disk(self) -> str:
        return f"{self.stem}-disk-0.vmdk"

    @classmethod
    def read(cls, ova: Path) -> Good:
        with tarfile.open(ova) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        return cls(members, ova.name[:-4])

    def manifest_for(self, members: dict[str, bytes]) -> bytes:
        """A manifest with the right digest of every member but itself."""
        return "".join(f"SHA256({name})= {hashlib.sha256(data).hexdigest()}\n"
                       for name, data in members.items() if not name.endswith(".mf")).encode()

    def consistent(self, members: dict[str, bytes]) -> dict[str, bytes]:
        """``members`` with the descriptor's File sizes and the manifest made to
        match, so that only the damage meant is left to find."""
        ovf = members[self.ovf].decode()
        for name, data in members.items():
            ovf = re.sub(rf'(ovf:href="{re.escape(name)}" ovf:id="[^"]*" ovf:size=")\d+"',
                         rf'\g<1>{len(data)}"', ovf)
        out = dict(members, **{self.ovf: ovf.encode()})
        if self.mf in out:
            out[self.mf] = self.manifest_for(out)
        return out


def header(name: str, size: int, typeflag: bytes = b"0", linkname: str = "",
           size_field: bytes | None = None) -> bytes:
    """A ustar header, any name, type and size (``size_field``: raw 12 bytes)."""
    block = bytearray(BLOCK)
    raw = name.encode()
    block[0:len(raw[:100])] = raw[:100]
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = b"%011o\0" % 1767225600
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname.encode()
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def write_tar(path: Path, entries: list[tuple[bytes, bytes]]) -> Path:
    """(header, data) pairs, each data padded to a block, then the two zero blocks."""
    with open(path, "wb") as fh:
        for head, data in entries:
            fh.write(head + data + bytes(-len(data) % BLOCK))
        fh.write(bytes(2 * BLOCK))
    return path


def write_members(path: Path, members: dict[str, bytes]) -> Path:
    return write_tar(path, [(header(name, len(data)), data) for name, data in members.items()])


def sparse_member_ova(path: Path, good: Good, name: str, size: int) -> Path:
    """An OVA whose member ``name`` declares ``size`` bytes of zeros, written as a
    hole (the file takes no room): a descriptor or manifest of gigabytes."""
    with open(path, "wb") as fh:
        for member, data in good.members.items():
            if member == name:
                fh.write(header(member, size))
                fh.seek(size + (-size % BLOCK), os.SEEK_CUR)
            else:
                fh.write(header(member, len(data)) + data + bytes(-len(data) % BLOCK))
        fh.write(bytes(2 * BLOCK))
    return path


def vmdk_with(disk: bytes, **fields: int) -> bytes:
    """The disk with sparse header fields replaced (grain_size, gtes_per_gt, capacity,
    descriptor_size, flags, version)."""
    offsets = {"version": (4, "<I"), "flags": (8, "<I"), "capacity": (12, "<Q"),
               "grain_size": (20, "<Q"), "descriptor_size": (36, "<Q"),
               "gtes_per_gt": (44, "<I")}
    data = bytearray(disk)
    for key, value in fields.items():
        at, fmt = offsets[key]
        struct.pack_into(fmt, data, at, value)
    return bytes(data)


def with_capacity(good: Good, capacity: str, units: str | None = None) -> bytes:
    """The descriptor with its Disk's capacity (and units) replaced."""
    ovf = good.members[good.ovf].decode()
    ovf = re.sub(r'ovf:capacity="[^"]*"', f'ovf:capacity="{capacity}"', ovf)
    if units is not None:
        ovf = re.sub(r'ovf:capacityAllocationUnits="[^"]*"',
                     f'ovf:capacityAllocationUnits="{units}"', ovf)
    return ovf.encode("utf-8")


def with_file_size(good: Good, size: str) -> bytes:
    ovf = good.members[good.ovf].decode()
    return re.sub(rf'(ovf:href="{re.escape(good.disk)}" ovf:id="[^"]*" ovf:size=")\d+"',
                  rf"\g<1>{size}" + '"', ovf).encode("utf-8")


def renamed_disk(good: Good, new: str) -> dict[str, bytes]:
    """The disk under another name, in the descriptor and the manifest too."""
    members = {}
    for name, data in good.members.items():
        if name == good.ovf:
            data = data.replace(f'ovf:href="{good.disk}"'.encode(), f'ovf:href="{new}"'.encode())
        members[new if name == good.disk else name] = data
    members[good.mf] = good.manifest_for(members)
    return members


@dataclass
class Case:
    """One hostile input: ``make(good, directory)`` returns the path to give the
    command; ``code`` and ``line`` are what it must answer (the line is a
    fragment of stderr, after ``{stem}``/``{disk}`` are filled in)."""

    id: str
    make: Callable[[Good, Path], Path]
    line: str
    code: int = 1
    #: Whether importers (deploy-ova, publish) see it: an OVA, not a file beside it.
    imported: bool = True
    marks: list = field(default_factory=list)


#: Runs argv[2:] and writes its peak RSS (kB) into argv[1]. A small process of its own:
#: Linux counts the image a child had before exec in its peak, so the child of a big
#: pytest process would report pytest's size.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 120) -> tuple[int, str, str, int]:
    """Run ``argv``; return (exit code, stdout, stderr, peak RSS in bytes of that child).

    The child is killed after ``timeout`` seconds (a hang), which the exit code shows.
    """
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        try:
            result = subprocess.run([sys.executable, "-c", _MEASURE, str(peak), *argv], env=env,
                                    cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{argv} still ran after {timeout}s") from exc
        rss = int(peak.read_text()) * 1024 if peak.exists() else 0
    return (result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"), rss)


def _replace(**changes: Callable[[Good], bytes | None]) -> Callable[[Good, Path], Path]:
    """An OVA with members replaced (or, for None, dropped), the rest made consistent."""
    def make(good: Good, directory: Path) -> Path:
        members = dict(good.members)
        for key, change in changes.items():
            name = {"ovf": good.ovf, "mf": good.mf, "disk": good.disk}[key]
            data = change(good)
            if data is None:
                members.pop(name)
            else:
                members[name] = data
        keep = {good.mf: members[good.mf]} if "mf" in changes and good.mf in members else {}
        return write_members(directory / f"{good.stem}.ova", {**good.consistent(members), **keep})
    return make


def _descriptor(change: Callable[[Good], bytes]) -> Callable[[Good, Path], Path]:
    """An OVA with another descriptor, listed with its right digest in the manifest."""
    def make(good: Good, directory: Path) -> Path:
        members = dict(good.members, **{good.ovf: change(good)})
        members[good.mf] = good.manifest_for(members)
        return write_members(directory / f"{good.stem}.ova", members)
    return make


def _entries(make_entries: Callable[[Good], list[tuple[bytes, bytes]]]
             ) -> Callable[[Good, Path], Path]:
    def make(good: Good, directory: Path) -> Path:
        return write_tar(directory / f"{good.stem}.ova", make_entries(good))
    return make


def _members(make_members: Callable[[Good], dict[str, bytes]]) -> Callable[[Good, Path], Path]:
    def make(good: Good, directory: Path) -> Path:
        return write_members(directory / f"{good.stem}.ova", make_members(good))
    return make


def _plain(good: Good, name: str) -> list[tuple[bytes, bytes]]:
    return [(header(n, len(d)), d) for n, d in good.members.items() if n != name]


def _linked(kind: bytes) -> Callable[[Good], list[tuple[bytes, bytes]]]:
    def entries(good: Good) -> list[tuple[bytes, bytes]]:
        out = _plain(good, "")
        out[2] = (header(good.disk, 0, kind, linkname="/etc/passwd"), b"")
        return out
    return entries


def _many_members(good: Good, directory: Path) -> Path:
    path = directory / f"{good.stem}.ova"
    with open(path, "wb") as fh:
        for name, data in good.members.items():
            fh.write(header(name, len(data)) + data + bytes(-len(data) % BLOCK))
        empty = header("x", 0)
        fh.write(empty * 200_000)
        fh.write(bytes(2 * BLOCK))
    return path


def _huge_declared(good: Good) -> list[tuple[bytes, bytes]]:
    out = _plain(good, "")
    data = good.members[good.disk]
    out[2] = (header(good.disk, 0, size_field=b"\x80" + (1 << 80).to_bytes(11, "big")), data)
    return out


def _huge_pax(good: Good) -> list[tuple[bytes, bytes]]:
    record = b"path=" + b"a" * (MiB + 100)
    pax = b"%d " % (len(record) + 10) + record + b"\n"
    return [(header("PaxHeader", len(pax), b"x"), pax)] + _plain(good, "")


def _sidecar(kind: str) -> Callable[[Good, Path], Path]:
    def make(good: Good, directory: Path) -> Path:
        ova = write_members(directory / f"{good.stem}.ova", good.members)
        sidecar = directory / f"{good.stem}.ova.sha256"
        if kind == "zero":
            sidecar.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(sidecar)
        else:
            sidecar.mkdir()
        return ova
    return make


def _fifo(good: Good, directory: Path) -> Path:
    path = directory / "pipe.ova"
    os.mkfifo(path)
    return path


def _directory(good: Good, directory: Path) -> Path:
    path = directory / "dir.ova"
    path.mkdir()
    return path


def _cut(good: Good, directory: Path) -> Path:
    path = write_members(directory / f"{good.stem}.ova", good.members)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1
                                                else b"&lol;" * 10) for i in range(1, 10))
          + b']>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&lol9;</Envelope>')


def _dense(good: Good) -> bytes:
    """A descriptor just under the size limit, of empty elements (the most objects
    an XML parser can be made to build per byte)."""
    ovf = good.members[good.ovf]
    filler = b"<a/>" * ((MAX_DESCRIPTOR - len(ovf) - 64) // 4)
    return ovf.replace(b"</Envelope>", b"<Extra>" + filler + b"</Extra></Envelope>")


def _same_disk_many_times(good: Good) -> bytes:
    """Four thousand Disks of one File: each would be read, and imported, again."""
    ovf = good.members[good.ovf].decode()
    disk = re.search(r"<Disk [^>]*/>", ovf).group(0)
    copies = "".join(disk.replace('ovf:diskId="vmdisk1"', f'ovf:diskId="d{i}"')
                     for i in range(4000))
    return ovf.replace(disk, disk + copies).encode()


def _junk_manifest(good: Good) -> bytes:
    return b"SHA256(x= 00\n" * (MiB // 16)


def _bad_cases() -> list[Case]:
    """Broken OVAs of every class: structure (issue 16, item 2) and bounds (item 3)."""
    return [
        Case("no-manifest", _replace(mf=lambda g: None), "no manifest: {stem}.mf is missing"),
        Case("symlink-disk", _entries(_linked(b"2")),
             "member 3 ({disk}) is a symbolic link, not a regular file"),
        Case("hardlink-disk", _entries(_linked(b"1")),
             "member 3 ({disk}) is a hard link, not a regular file"),
        Case("empty-disk", _replace(disk=lambda g: b""), "an empty file (0 bytes), not a VMDK"),
        Case("bad-vmdk-magic", _replace(disk=lambda g: b"XXXX" + g.members[g.disk][4:]),
             "not a VMDK (no sparse header and no disk descriptor)"),
        Case("grain-size-0", _replace(disk=lambda g: vmdk_with(g.members[g.disk], grain_size=0)),
             "the VMDK header is damaged: grainSize 0 is not a power of two"),
        Case("gtes-0", _replace(disk=lambda g: vmdk_with(g.members[g.disk], gtes_per_gt=0)),
             "numGTEsPerGT 0 is not a power of two"),
        Case("capacity-2^63", _replace(disk=lambda g: vmdk_with(g.members[g.disk],
                                                                capacity=1 << 63)),
             "a capacity of 9223372036854775808 sectors is not from 1 sector"),
        Case("vmdk-descriptor-huge", _replace(
            disk=lambda g: vmdk_with(g.members[g.disk], descriptor_size=1 << 40)),
            "the VMDK header's descriptor location is out of range"),
        Case("stream-by-name-only", _replace(
            disk=lambda g: vmdk_with(g.members[g.disk], flags=3)),
            "the VMDK is streamOptimized by name only: its header (flags 0x3) has no "
            "compressed grains with markers, not streamOptimized"),
        Case("two-descriptors", _members(lambda g: {**g.members, "second.ovf": b"<x/>"}),
             "more than one OVF descriptor: {stem}.ovf, second.ovf"),
        Case("same-name-twice", _entries(lambda g: _plain(g, "") + [(header(g.disk, 0), b"")]),
             "more than one member named {disk}"),
        Case("slash-in-name", _members(lambda g: renamed_disk(g, "sub/disk.vmdk")),
             "member 3 (sub/disk.vmdk) is not a bare file name"),
        Case("dot-dot-name", _members(lambda g: renamed_disk(g, "../disk.vmdk")),
             "member 3 (../disk.vmdk) is not a bare file name"),
        Case("flipped-disk-byte", _replace(
            disk=lambda g: g.members[g.disk][:700_000] + bytes([g.members[g.disk][700_000] ^ 1])
            + g.members[g.disk][700_001:], mf=lambda g: g.members[g.mf]),
            "{disk}: its SHA256 digest is"),
        Case("descriptor-3GiB", lambda g, d: sparse_member_ova(d / f"{g.stem}.ova", g, g.ovf,
                                                               3 << 30),
             "member {stem}.ovf is 3.0 GiB; a descriptor over 1.0 MiB is not plausible"),
        Case("manifest-3GiB", lambda g, d: sparse_member_ova(d / f"{g.stem}.ova", g, g.mf,
                                                             3 << 30),
             "member {stem}.mf is 3.0 GiB; a manifest over 1.0 MiB is not plausible"),
        Case("200000-members", _many_members, "more than 1000 members"),
        Case("units-2^3000000000", _descriptor(lambda g: with_capacity(
            g, "1", "byte * 2^3000000000")), "is not a byte count"),
        Case("capacity-5000-digits", _descriptor(lambda g: with_capacity(g, "9" * 5000)),
             "is not a byte count"),
        Case("capacity-unicode-digits", _descriptor(lambda g: with_capacity(g, "\uff16\uff14")),
             "capacity '\uff16\uff14' in units 'byte' is not a byte count"),
        Case("file-size-superscript", _descriptor(lambda g: with_file_size(g, "\u00b2")),
             "size '\u00b2' is not a number of bytes"),
        Case("file-size-5000-digits", _descriptor(lambda g: with_file_size(g, "7" * 5000)),
             "is not a number of bytes"),
        Case("tar-size-2^80", _entries(_huge_declared), "which declares "
             "1208925819614629174706176 bytes"),
        Case("pax-header-1MiB", _entries(_huge_pax), "is an extended header of"),
        Case("billion-laughs", _descriptor(lambda g: LAUGHS),
             "the OVF descriptor declares a document type"),
        Case("one-file-4000-disks", _descriptor(_same_disk_many_times),
             "Disk d0 is the file {disk}, as Disk vmdisk1 is; each disk has a file of its own"),
        Case("junk-manifest", _replace(mf=_junk_manifest), "not read past line 5"),
        Case("truncated", _cut, "truncated"),
        Case("not-a-tar", lambda g, d: _write(d / "junk.ova", b"\x01" * 8192),
             "not a readable tar archive"),
        Case("ova-is-a-fifo", _fifo, "is a FIFO (named pipe), not an OVA file", code=2),
        Case("ova-is-a-directory", _directory, "is a directory, not an OVA file", code=2),
        Case("ova-is-dev-zero", lambda g, d: Path("/dev/zero"),
             "/dev/zero: is a character device, not an OVA file", code=2),
        Case("sidecar-dev-zero", _sidecar("zero"),
             "{stem}.ova.sha256 is a character device, not a checksum file", imported=False),
        Case("sidecar-fifo", _sidecar("fifo"),
             "{stem}.ova.sha256 is a FIFO (named pipe), not a checksum file", imported=False),
        Case("sidecar-directory", _sidecar("dir"),
             "{stem}.ova.sha256 is a directory, not a checksum file", imported=False),
    ]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


#: Every hostile case; ``imported`` ones are also given to deploy-ova and publish.
CASES = _bad_cases()
#: A descriptor of 4 MiB of elements, otherwise sound: verified (exit 0) in bounded memory.
DENSE = Case("dense-descriptor", _descriptor(_dense), "ok: 3 members", code=0, imported=False)
