"""Bounds on everything read from an OVA, a VMDK or a file beside them.

Every reader here goes through these: a path must be a regular file (a FIFO
would block, a device or ``/dev/zero`` would never end, a directory is no
file), a small file is read up to a limit, and a number is ASCII decimal of
a bounded length and value (``int()`` takes Unicode digits and, with
thousands of digits, fails or takes long).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from imagebuilder.errors import InputError

#: The largest virtual disk vSphere takes (62 TiB); no capacity or size in an OVA is larger.
MAX_DISK_BYTES = 62 << 40
#: Descriptors are tens of kilobytes (a long EULA included), manifests a few lines: the
#: limits leave room, and keep a descriptor parsed into elements well under 100 MB.
MAX_DESCRIPTOR = 1 << 20
MAX_MANIFEST = 1 << 20
#: Digits of the largest number any field may hold (2^64 has 20).
MAX_DIGITS = 20
_DECIMAL = re.compile(r"[0-9]{1,%d}" % MAX_DIGITS, re.ASCII)

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """``a directory``, ``a FIFO (named pipe)``... for a file mode that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@contextlib.contextmanager
def open_regular(path: Path, what: str) -> Iterator[BinaryIO]:
    """``path`` opened for reading, unbuffered; InputError naming ``what`` when it is
    missing, unreadable or not a regular file. Opening never blocks (a FIFO is
    refused before anything waits for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        noun = what.split(" ", 1)[1] if what.startswith(("a ", "an ")) else what
        raise InputError(f"{path}: no such {noun}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: is {kind_of(mode)}, not {what}")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh  # type: ignore[misc]


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: InputError naming ``what``
    when it is larger, missing, unreadable or not a regular file."""
    with open_regular(path, what) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{path}: over {size_text(limit)}; not {what}")
    return data


def decimal(text: str | None, limit: int = MAX_DISK_BYTES) -> int | None:
    """``text`` as a whole number when it is ASCII decimal (surrounding blanks
    allowed) of at most 20 digits and at most ``limit``; None otherwise."""
    if text is None:
        return None
    raw = text.strip()
    if not _DECIMAL.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= limit else None


def shown_value(text: str, width: int = 40) -> str:
    """A value from a hostile file, quoted and cut short for a message."""
    return repr(text if len(text) <= width else text[:width] + "...")


def shown_name(name: str, width: int = 80) -> str:
    """A member or file name from a hostile file for a message: as it is when it is
    short and plain, else quoted and cut short."""
    if len(name) <= width and name.isprintable() and name.strip() == name and " " not in name:
        return name
    return shown_value(name, width)


_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def size_text(size: int) -> str:
    """``512 bytes``, ``1.5 KiB``, ``40 MiB``, ``2.3 GiB``: a size that reads
    right at every scale (``size >> 20`` says 0 MiB for a small file)."""
    if size < 1024:
        return f"{size} byte{'s' if size != 1 else ''}"
    value = float(size)
    for unit in _UNITS[1:]:
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
