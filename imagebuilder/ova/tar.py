"""The tar layer of an OVA: ustar headers, member listing, and file-system helpers.

An OVA is a ustar archive of bare-named regular files; ``tar_header`` writes
the one header kind it needs and ``list_members`` reads any tar without
reading member data. ``preallocate`` and ``advise_sequential`` make the
large sequential writes and reads cheap.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

from imagebuilder.errors import BuildError
from imagebuilder.ova.limits import MAX_DIGITS, decimal, open_regular, shown_value, size_text

BLOCK = 512
RECORD = 20 * BLOCK
#: The largest size a ustar header's 11 octal digits hold; beyond it the
#: size field is written in base-256 (GNU tar, star, Go and Python read it).
USTAR_MAX_SIZE = 8 ** 11 - 1
NAME_MAX = 100


def padding(size: int, unit: int = BLOCK) -> int:
    """Bytes of zeros that round ``size`` up to a multiple of ``unit``."""
    return -size % unit


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def tar_header(name: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
    """The 512-byte ustar header of a regular file with a bare ``name``.

    Raises ValueError for a name that is not bare ASCII of at most 100 bytes.
    """
    raw = name.encode("ascii", errors="strict")
    if not raw or len(raw) > NAME_MAX or "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a bare file name of 1 to {NAME_MAX} ASCII characters")
    if size <= USTAR_MAX_SIZE:
        size_field = _octal(size, 12)
    else:
        size_field = b"\x80" + size.to_bytes(11, "big")
    header = bytearray(BLOCK)
    fields = [
        (0, raw.ljust(100, b"\0")),
        (100, _octal(mode, 8)),
        (108, _octal(0, 8)),          # uid
        (116, _octal(0, 8)),          # gid
        (124, size_field),
        (136, _octal(max(0, int(mtime)), 12)),
        (148, b" " * 8),              # checksum, counted as spaces
        (156, b"0"),                  # regular file
        (257, b"ustar\x0000"),
        (265, b"root".ljust(32, b"\0")),
        (297, b"root".ljust(32, b"\0")),
        (329, _octal(0, 8)),
        (337, _octal(0, 8)),
    ]
    for offset, value in fields:
        header[offset:offset + len(value)] = value
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


@dataclass(frozen=True)
class Member:
    """A file in an archive: where its data starts and how long it is; ``kind``
    says what a member that is not a regular file is (``symbolic link``...)."""

    name: str
    offset: int
    size: int
    regular: bool = True
    kind: str = "file"


#: An OVA holds a descriptor, a manifest, a certificate, its disks and a few
#: small files; an archive of more members is no OVA (and is not read to its end).
MAX_MEMBERS = 1000
#: pax and GNU long-name headers carry a name or a size: a few hundred bytes.
MAX_EXTENDED = 64 << 10
_REGULAR = {b"0": "file", b"\0": "file", b"7": "file"}
_OTHER = {b"1": "hard link", b"2": "symbolic link", b"3": "character device",
          b"4": "block device", b"5": "directory", b"6": "FIFO"}
_EXTENDED = (b"x", b"g", b"L", b"K")


def list_members(path: Path) -> list[Member]:
    """The members of a tar file, in order, without reading their data.

    Reads the ustar headers itself, each bounded: a size beyond the end of the
    file is a truncated archive before anything is read, pax and GNU long-name
    headers hold at most 64 KiB, and an archive of more than ``MAX_MEMBERS``
    members is refused without reading on. Raises InputError when ``path`` is
    no regular file, BuildError when it is not a sound tar archive.
    """
    path = Path(path)
    with open_regular(path, "an OVA file") as fh:
        total = os.fstat(fh.fileno()).st_size
        members = _Headers(fh, path, total).read()
        _check_end_of_archive(fh, path, members, total)
    return members


class _Headers:
    """The header walk of ``list_members``."""

    def __init__(self, fh: BinaryIO, path: Path, total: int) -> None:
        self.fh, self.path, self.total = fh, path, total
        self.pending: dict[str, str] = {}  # name/size from a pax or GNU header

    def fail(self, number: int, text: str) -> BuildError:
        return BuildError(f"{self.path}: not a readable tar archive: member {number} {text}")

    def read(self) -> list[Member]:
        members: list[Member] = []
        pos = 0
        while True:
            self.fh.seek(pos)
            block = self.fh.read(BLOCK)
            if not block and not members:
                raise BuildError(f"{self.path}: an empty file, not an OVA")
            if len(block) < BLOCK:
                if members:  # reported as the missing end of the archive
                    return members
                raise BuildError(f"{self.path}: not a readable tar archive: "
                                 f"{len(block)} bytes, less than one tar header")
            if block.count(0) == BLOCK:
                return members
            number = len(members) + 1
            if number > MAX_MEMBERS:
                raise BuildError(f"{self.path}: more than {MAX_MEMBERS} members; an OVA holds "
                                 "a descriptor, a manifest and its disks (not read further)")
            kind, size = self._header(block, number)
            data = pos + BLOCK
            if data + size > self.total:
                raise BuildError(f"{self.path}: truncated: the archive ends inside member "
                                 f"{number}, which declares {size} bytes, {self.total - data} "
                                 "bytes after its header; copy or download it again")
            typeflag = block[156:157]
            if typeflag in _EXTENDED:
                self._extended(typeflag, data, size, number)
            else:
                name = self.pending.pop("path", "") or self._name(block)
                if kind == "directory":
                    name = name.rstrip("/")
                size = int(self.pending.pop("size", size))
                self.pending.clear()
                members.append(Member(name, data, size, kind == "file", kind))
            if typeflag not in _OTHER:  # links and the like have no data blocks
                pos = data + size + padding(size)
            else:
                pos = data

    def _header(self, block: bytes, number: int) -> tuple[str, int]:
        stored = block[148:156].replace(b"\0", b" ").strip()
        if not re.fullmatch(rb"[0-7]{1,8}", stored):
            raise self.fail(number, "has no header checksum (damaged, or not a tar file)")
        unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
        signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b > 127)
        if int(stored, 8) not in (unsigned, signed):
            raise self.fail(number, "has a header whose checksum does not match (damaged, or "
                            "not a tar file)")
        field = block[124:136]
        if field[0] & 0x80:  # base-256, GNU tar's form for sizes over 8 GiB
            size = int.from_bytes(field[1:], "big") if field[0] == 0x80 else -1
        else:
            digits = field.replace(b"\0", b" ").strip() or b"0"
            size = int(digits, 8) if re.fullmatch(rb"[0-7]{1,12}", digits) else -1
        if size < 0:
            raise self.fail(number, f"has a size field that is not a size ({bytes(field)!r})")
        typeflag = block[156:157]
        kind = _REGULAR.get(typeflag) or _OTHER.get(typeflag) or \
            f"member of tar type {typeflag!r}"
        return kind, size

    def _name(self, block: bytes) -> str:
        name = block[:100].split(b"\0", 1)[0]
        if block[257:262] == b"ustar" and block[345] != 0:
            name = block[345:500].split(b"\0", 1)[0] + b"/" + name
        return name.decode("utf-8", errors="replace")

    def _extended(self, typeflag: bytes, data: int, size: int, number: int) -> None:
        """Apply a pax (``x``) or GNU long-name (``L``) header to the next member."""
        if size > MAX_EXTENDED:
            raise self.fail(number, f"is an extended header of {size} bytes; they hold a name "
                            f"or a size, never over {size_text(MAX_EXTENDED)}")
        self.fh.seek(data)
        raw = self.fh.read(size)
        if typeflag == b"L":
            self.pending["path"] = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        elif typeflag == b"x":
            for key, value in _pax_records(raw):
                if key == "path":
                    self.pending["path"] = value
                elif key == "size":
                    if decimal(value, self.total) is None:
                        raise self.fail(number, f"is a pax header with size {shown_value(value)}"
                                        ", which is not a size within the file")
                    self.pending["size"] = value


def _pax_records(raw: bytes) -> Iterator[tuple[str, str]]:
    """The ``<length> <key>=<value>`` lines of a pax header; a malformed one ends them."""
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos, pos + MAX_DIGITS + 1)
        length = decimal(raw[pos:space].decode("ascii", "replace"), len(raw) - pos) \
            if space > 0 else None
        if not length or space >= pos + length:
            return
        record = raw[space + 1:pos + length].rstrip(b"\n")
        key, _, value = record.partition(b"=")
        yield key.decode("utf-8", "replace"), value.decode("utf-8", "replace")
        pos += length


def _check_end_of_archive(fh: BinaryIO, path: Path, members: list[Member], total: int) -> None:
    """A tar ends with two zero blocks after the last member. An archive cut right
    after a member's data (an interrupted copy) must not pass."""
    end = members[-1].offset + members[-1].size if members else 0
    end += padding(end)
    fh.seek(end)
    tail = fh.read(2 * BLOCK)
    if len(tail) < 2 * BLOCK:
        raise BuildError(f"{path}: truncated: the two zero blocks that end a tar archive are "
                         f"missing after byte {end} (the file has {total}); copy or download "
                         "it again")
    if tail.count(0) != len(tail):
        raise BuildError(f"{path}: damaged: the bytes after the last member ({end}) are not "
                         "the two zero blocks that end a tar archive")


def archive_size(member_sizes: Sequence[int]) -> int:
    """Bytes of a tar of members of these sizes: headers, padding, end blocks, record."""
    size = sum(BLOCK + s + padding(s) for s in member_sizes) + 2 * BLOCK
    return size + padding(size, RECORD)


def preallocate(fd: int, size: int) -> None:
    """Reserve the file's blocks before writing: a full disk fails now rather than
    gigabytes later, and ext4 allocates in one go instead of on writeback.

    Uses Linux's fallocate(2) directly: glibc's posix_fallocate writes zeros on
    filesystems without it (doubling the writes); here they just go without.
    Raises OSError (ENOSPC, EDQUOT) when the space is not there. Skipped on
    tmpfs, which has no blocks to lay out and would zero every page first
    (a second write of the whole OVA); a full tmpfs fails on the write.
    """
    fallocate = _libc_fallocate()
    if fallocate is None or size <= 0 or _on_tmpfs(fd):
        return
    if fallocate(fd, 0, ctypes.c_int64(0), ctypes.c_int64(size)) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err, os.strerror(err))


TMPFS_MAGIC = 0x01021994


def _on_tmpfs(fd: int) -> bool:
    """fstatfs(2)'s f_type, the first field (a C long) of struct statfs."""
    try:
        fstatfs = ctypes.CDLL(None, use_errno=True).fstatfs
    except (OSError, AttributeError):
        return False
    buf = ctypes.create_string_buffer(256)
    if fstatfs(fd, buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value == TMPFS_MAGIC


def _libc_fallocate() -> Any:
    if sys.platform != "linux":
        return None
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    return fallocate


def advise_sequential(fd: int) -> None:
    """Ask the kernel for a larger read-ahead: files are read front to back once."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def write_all(fd: int, data: memoryview | bytes) -> None:
    """``os.write`` until every byte of ``data`` is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


