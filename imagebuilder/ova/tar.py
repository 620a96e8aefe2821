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
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from imagebuilder.errors import BuildError, InputError

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
    """A file in an archive: where its data starts and how long it is."""

    name: str
    offset: int
    size: int
    regular: bool = True


def list_members(path: Path) -> list[Member]:
    """The members of a tar file, in order, without reading their data.

    Raises BuildError when ``path`` is not a readable tar archive or ends
    before its last member does.
    """
    path = Path(path)
    try:
        total = path.stat().st_size
        with tarfile.open(path, "r:") as tar:
            infos = tar.getmembers()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    except (tarfile.TarError, EOFError) as exc:
        if "unexpected end of data" in str(exc):
            raise BuildError(f"{path}: truncated: the archive ends inside a member; copy or "
                             "download it again") from None
        raise BuildError(f"{path}: not a readable tar archive ({exc})") from None
    members = [Member(i.name, i.offset_data, i.size, i.isreg()) for i in infos]
    for m in members:
        if m.offset + m.size > total:
            raise BuildError(f"{path}: truncated: member {m.name} needs {m.offset + m.size} "
                             f"bytes but the file has {total}")
    _check_end_of_archive(path, members, total)
    return members


def _check_end_of_archive(path: Path, members: list[Member], total: int) -> None:
    """A tar ends with two zero blocks after the last member. Python's tarfile
    reads an archive cut right after a member's data without complaint, so an
    OVA that lost its last kilobyte (an interrupted copy) would pass."""
    end = members[-1].offset + members[-1].size if members else 0
    end += padding(end)
    with open(path, "rb") as fh:
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


