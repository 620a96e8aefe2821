"""The OVA container: a ustar archive of bare-named regular files.

``write_ova`` lays out the descriptor, the manifest and the disks in that
order and reads each disk once. The manifest needs the disks' digests yet
comes before them in the archive, so there are two ways to write it:

* every disk's digest is known beforehand (Packer's export manifest): the
  manifest is written first from those digests, and while the disk is copied
  one thread hashes every byte of the OVA (its ``.sha256``) and another
  re-hashes the disk (``hashing.copy_hashing``, which also shares the read and
  the write between them); the disk's digest must equal the known one at the
  end. Nothing is read twice.
* a digest is unknown: the manifest member is written as a placeholder of the
  exact size and filled in once the disks are done; the whole archive's
  digest is then taken by a verification pass over the finished file.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova.hashing import ALGORITHMS, copy_hashing, digest_length, new_hash
from imagebuilder.ova.progress import ByteProgress, NoByteProgress

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


@dataclass(frozen=True)
class DiskFile:
    """A disk going into the archive under ``name``, read from ``path``;
    ``known`` is its digest (in the manifest's algorithm) when one is already
    on record, ``known_from`` names that record for messages."""

    name: str
    path: Path
    known: str | None = None
    known_from: str = ""


@dataclass(frozen=True)
class WrittenOva:
    """What ``write_ova`` wrote: the manifest text, each member's digest and,
    when it was computed on the way (every disk digest known), the SHA-256 of
    the whole archive."""

    path: Path
    manifest: bytes
    digests: dict[str, str]
    size: int
    sha256: str | None = None


def manifest_line(algorithm: str, name: str, hexdigest: str) -> str:
    """``SHA256(name)= hex``, as ovftool writes it."""
    return f"{ALGORITHMS[algorithm]}({name})= {hexdigest}\n"


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


def _libc_fallocate():
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


def _write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_ova(target: Path, ovf_name: str, ovf: bytes, mf_name: str,
              disks: Sequence[DiskFile], algorithm: str = "sha256", mtime: int = 0,
              progress: ByteProgress | None = None, shown: str | None = None) -> WrittenOva:
    """Write an OVA at ``target`` (an existing, empty temporary file; ``shown``
    names it in progress reports).

    Members in order: descriptor, manifest, disks. Each disk is read once;
    its digest is computed while it is copied. When every disk has a
    ``known`` digest, the OVA's SHA-256 is computed on the way too, and a
    disk whose digest differs from the known one fails the write (BuildError
    naming the disk file and the record; ``target`` is removed). Raises
    BuildError on a write error (a full disk names the directory); the caller
    removes ``target``.
    """
    progress = progress or NoByteProgress()
    names = [ovf_name, mf_name] + [d.name for d in disks]
    if len(set(names)) != len(names):
        raise BuildError(f"{target.name}: two members would share a name: {names}")
    listed = [ovf_name] + [d.name for d in disks]
    digests = {ovf_name: hashlib.new(algorithm, ovf).hexdigest()}
    single_read = bool(disks) and all(d.known for d in disks)
    if single_read:
        digests.update((d.name, d.known.lower()) for d in disks)
        manifest = _manifest(algorithm, listed, digests)
    else:  # a placeholder of the same size, filled in at the end
        manifest = _manifest(algorithm, listed, dict.fromkeys(listed,
                                                              "0" * digest_length(algorithm)))
    mf_size = len(manifest)
    whole = hashlib.sha256() if single_read else None
    sources = []
    try:
        for disk in disks:
            try:
                fh = open(disk.path, "rb", buffering=0)
            except OSError as exc:
                raise BuildError(f"{disk.path}: cannot read it ({exc.strerror})") from None
            sources.append((disk, fh, os.fstat(fh.fileno()).st_size))
            advise_sequential(fh.fileno())
        fd = os.open(target, os.O_WRONLY | os.O_TRUNC)
        try:
            total = sum(size for _, _, size in sources)
            expected = archive_size([len(ovf), mf_size] + [size for _, _, size in sources])
            preallocate(fd, expected)
            progress.begin(f"writing {shown or target.name}", total)
            def emit(data: bytes) -> None:
                _write_all(fd, data)
                if whole is not None:
                    whole.update(data)
            emit(tar_header(ovf_name, len(ovf), mtime) + ovf + bytes(padding(len(ovf))))
            emit(tar_header(mf_name, mf_size, mtime))
            mf_offset = os.lseek(fd, 0, os.SEEK_CUR)
            emit((manifest if whole is not None else bytes(mf_size)) + bytes(padding(mf_size)))
            hashers = {}
            for disk, fh, size in sources:
                hashers[disk.name] = new_hash(algorithm)
                emit(tar_header(disk.name, size, mtime))
                offset = os.lseek(fd, 0, os.SEEK_CUR)
                copy_hashing(fh.fileno(), fd, offset, size, hashers[disk.name], whole,
                             progress.advance, disk.path)
                os.lseek(fd, offset + size, os.SEEK_SET)
                if os.fstat(fh.fileno()).st_size != size:
                    raise BuildError(f"{disk.path}: the file changed size while it was being "
                                     "read; is something writing it?")
                emit(bytes(padding(size)))
            end = os.lseek(fd, 0, os.SEEK_CUR) + 2 * BLOCK
            emit(bytes(2 * BLOCK + padding(end, RECORD)))
            actual = {name: hasher.hexdigest() for name, hasher in hashers.items()}
            if whole is None:
                digests.update(actual)
                manifest = _manifest(algorithm, listed, digests)
                assert len(manifest) == mf_size
                os.pwrite(fd, manifest, mf_offset)
            size = os.lseek(fd, 0, os.SEEK_END)
            assert size == expected, (size, expected)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise BuildError(f"{target.parent}: no space left while writing the OVA "
                                 f"({exc.strerror}); it needs about {total >> 20} MiB "
                                 "there") from None
            raise BuildError(f"{target}: cannot write the OVA ({exc.strerror})") from None
        finally:
            os.close(fd)
            progress.end()
    finally:
        for _, fh, _ in sources:
            fh.close()
    if whole is not None:
        _compare_known(target, shown or target.name, disks, actual, algorithm)
    return WrittenOva(target, manifest, digests, size,
                      whole.hexdigest() if whole is not None else None)


def _manifest(algorithm: str, names: list[str], digests: dict[str, str]) -> bytes:
    return "".join(manifest_line(algorithm, n, digests[n]) for n in names).encode("ascii")


def _compare_known(target: Path, shown: str, disks: Sequence[DiskFile],
                   actual: dict[str, str], algorithm: str) -> None:
    """Every disk read must be the disk on record; else the OVA goes."""
    wrong = [f"{d.path}: its {ALGORITHMS[algorithm]} digest is {actual[d.name]}, "
             f"{d.known_from or 'the record'} says {d.known.lower()}; the disk changed or was "
             "damaged after it was written" for d in disks if actual[d.name] != d.known.lower()]
    if wrong:
        target.unlink(missing_ok=True)
        raise BuildError(f"{shown}: removed: a disk is not the one its digest describes; "
                         "build or export it again", wrong)
