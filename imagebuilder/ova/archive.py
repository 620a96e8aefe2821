"""The OVA's layout: descriptor, manifest, certificate, disks, then small files.

``write_ova`` lays out the members in that order and reads each disk once.
The manifest (and the certificate signing it) needs the disks' digests yet
comes before them in the archive, so there are two ways to write it:

* every disk's digest is known beforehand (Packer's export manifest): the
  manifest is written first from those digests, and while the disk is copied
  one thread hashes every byte of the OVA (its ``.sha256``) and another
  re-hashes the disk (``hashing.copy_hashing``, which also shares the read and
  the write between them); the disk's digest must equal the known one at the
  end. Nothing is read twice.
* a digest is unknown: the manifest and certificate members are written as
  placeholders of their exact sizes and filled in once the disks are done;
  the whole archive's digest is then taken by a verification pass over the
  finished file.

The tar primitives live in ``ova.tar`` (re-exported here for callers of old).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from imagebuilder.errors import BuildError
from imagebuilder.ova.hashing import ALGORITHMS, copy_hashing, digest_length, new_hash
from imagebuilder.ova.limits import size_text
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.tar import (  # noqa: F401 (re-exported: the tar layer's old home)
    BLOCK,
    NAME_MAX,
    RECORD,
    USTAR_MAX_SIZE,
    Member,
    advise_sequential,
    archive_size,
    list_members,
    padding,
    preallocate,
    tar_header,
    write_all,
)


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
class SmallFile:
    """A member written from memory after the disks (the SBOM); the manifest lists it."""

    name: str
    data: bytes


@dataclass(frozen=True)
class CertificateMember:
    """The ``.cert`` member, right after the manifest: ``size`` is known before
    the manifest is final, and ``make(manifest bytes)`` returns exactly that many
    bytes (a signature of the manifest and the certificate chain)."""

    name: str
    size: int
    make: Callable[[bytes], bytes]


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
    certificate: bytes = b""


def manifest_line(algorithm: str, name: str, hexdigest: str) -> str:
    """``SHA256(name)= hex``, as ovftool writes it."""
    return f"{ALGORITHMS[algorithm]}({name})= {hexdigest}\n"


def manifest_text(algorithm: str, names: Sequence[str], digests: dict[str, str]) -> bytes:
    """The manifest: a line per name, in order."""
    return "".join(manifest_line(algorithm, n, digests[n]) for n in names).encode("ascii")


@dataclass
class _Source:
    disk: DiskFile
    fh: BinaryIO
    size: int


class _Writer:
    """Appends to the OVA's file descriptor, hashing everything when asked."""

    def __init__(self, fd: int, whole: Any | None, algorithm: str, mtime: int) -> None:
        self.fd = fd
        self.whole = whole
        self.algorithm = algorithm
        self.mtime = mtime

    def emit(self, data: bytes) -> None:
        write_all(self.fd, data)
        if self.whole is not None:
            self.whole.update(data)

    def member(self, name: str, data: bytes) -> int:
        """Header, data and padding; returns where the data starts."""
        self.emit(tar_header(name, len(data), self.mtime))
        offset = os.lseek(self.fd, 0, os.SEEK_CUR)
        self.emit(data + bytes(padding(len(data))))
        return offset

    def disk(self, source: _Source, progress: ByteProgress) -> str:
        """Copy a disk member, reading it once; returns its digest."""
        hasher = new_hash(self.algorithm)
        self.emit(tar_header(source.disk.name, source.size, self.mtime))
        offset = os.lseek(self.fd, 0, os.SEEK_CUR)
        copy_hashing(source.fh.fileno(), self.fd, offset, source.size, hasher, self.whole,
                     progress.advance, source.disk.path)
        os.lseek(self.fd, offset + source.size, os.SEEK_SET)
        if os.fstat(source.fh.fileno()).st_size != source.size:
            raise BuildError(f"{source.disk.path}: the file changed size while it was being "
                             "read; is something writing it?")
        self.emit(bytes(padding(source.size)))
        return hasher.hexdigest()

    def end(self) -> int:
        """The two zero blocks and the record padding; returns the archive's size."""
        end = os.lseek(self.fd, 0, os.SEEK_CUR) + 2 * BLOCK
        self.emit(bytes(2 * BLOCK + padding(end, RECORD)))
        return os.lseek(self.fd, 0, os.SEEK_END)


def write_ova(target: Path, ovf_name: str, ovf: bytes, mf_name: str,
              disks: Sequence[DiskFile], algorithm: str = "sha256", mtime: int = 0,
              progress: ByteProgress | None = None, shown: str | None = None, *,
              trailing: Sequence[SmallFile] = (),
              certificate: CertificateMember | None = None) -> WrittenOva:
    """Write an OVA at ``target`` (an existing, empty temporary file; ``shown``
    names it in progress reports).

    Members in order: descriptor, manifest, ``certificate`` (when given),
    disks, ``trailing`` files; every member's time is ``mtime``. Each disk is
    read once; its digest is computed while it is copied. When every disk has a
    ``known`` digest, the OVA's SHA-256 is computed on the way too, and a
    disk whose digest differs from the known one fails the write (BuildError
    naming the disk file and the record; ``target`` is removed). Raises
    BuildError on a write error (a full disk names the directory); the caller
    removes ``target``.
    """
    progress = progress or NoByteProgress()
    extra = [certificate.name] if certificate else []
    names = [ovf_name, mf_name, *extra] + [d.name for d in disks] + [f.name for f in trailing]
    if len(set(names)) != len(names):
        raise BuildError(f"{target.name}: two members would share a name: {names}")
    listed = [ovf_name] + [d.name for d in disks] + [f.name for f in trailing]
    digests = {ovf_name: hashlib.new(algorithm, ovf).hexdigest()}
    digests.update((f.name, hashlib.new(algorithm, f.data).hexdigest()) for f in trailing)
    single_read = bool(disks) and all(d.known for d in disks)
    if single_read:
        digests.update((d.name, d.known.lower()) for d in disks)  # type: ignore[union-attr]
        manifest = manifest_text(algorithm, listed, digests)
    else:  # a placeholder of the same size, filled in at the end
        manifest = manifest_text(algorithm, listed, {**dict.fromkeys(listed, "0" * digest_length(
            algorithm)), **digests})
    whole = hashlib.sha256() if single_read else None
    with contextlib.ExitStack() as stack:
        sources = _open_sources(disks, stack)
        written = _write_members(target, ovf_name, ovf, mf_name, manifest, sources, trailing,
                                 certificate, _Writer(0, whole, algorithm, mtime), progress,
                                 shown or target.name)
    actual, size, manifest, cert = written
    if whole is None:
        digests.update(actual)
    else:
        _compare_known(target, shown or target.name, disks, actual, algorithm)
    return WrittenOva(target, manifest, digests, size,
                      whole.hexdigest() if whole is not None else None, cert)


def _open_sources(disks: Sequence[DiskFile], stack: contextlib.ExitStack) -> list[_Source]:
    sources = []
    for disk in disks:
        try:
            fh = stack.enter_context(open(disk.path, "rb", buffering=0))
        except OSError as exc:
            raise BuildError(f"{disk.path}: cannot read it ({exc.strerror})") from None
        sources.append(_Source(disk, fh, os.fstat(fh.fileno()).st_size))
        advise_sequential(fh.fileno())
    return sources


def _write_members(target: Path, ovf_name: str, ovf: bytes, mf_name: str, manifest: bytes,
                   sources: list[_Source], trailing: Sequence[SmallFile],
                   certificate: CertificateMember | None, writer: _Writer,
                   progress: ByteProgress, shown: str
                   ) -> tuple[dict[str, str], int, bytes, bytes]:
    """Every member in order; returns the disks' digests, the archive's size, and
    the final manifest and certificate."""
    total = sum(s.size for s in sources)
    sizes = [len(ovf), len(manifest), *([certificate.size] if certificate else []),
             *(s.size for s in sources), *(len(f.data) for f in trailing)]
    expected = archive_size(sizes)
    writer.fd = os.open(target, os.O_WRONLY | os.O_TRUNC)
    try:
        with _write_errors(target, total):
            preallocate(writer.fd, expected)
            progress.begin(f"writing {shown}", total)
            final = writer.whole is not None   # the manifest is final already
            writer.member(ovf_name, ovf)
            mf_offset = writer.member(mf_name, manifest if final else bytes(len(manifest)))
            cert = b""
            if certificate is not None:
                cert = _certificate(certificate, manifest) if final else bytes(certificate.size)
                cert_offset = writer.member(certificate.name, cert)
            actual = {s.disk.name: writer.disk(s, progress) for s in sources}
            for small in trailing:
                writer.member(small.name, small.data)
            size = writer.end()
            if not final:
                manifest = _fill_in(manifest, actual)
                os.pwrite(writer.fd, manifest, mf_offset)
                if certificate is not None:
                    cert = _certificate(certificate, manifest)
                    os.pwrite(writer.fd, cert, cert_offset)
            if size != expected:
                raise BuildError(f"{target}: wrote {size} bytes where the layout needs "
                                 f"{expected}; this is a bug")
    finally:
        os.close(writer.fd)
        progress.end()
    return actual, size, manifest, cert


@contextlib.contextmanager
def _write_errors(target: Path, total: int) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildError(f"{target.parent}: no space left while writing the OVA "
                             f"({exc.strerror}); it needs about {size_text(total)} "
                             "there") from None
        raise BuildError(f"{target}: cannot write the OVA ({exc.strerror})") from None


def _fill_in(placeholder: bytes, actual: dict[str, str]) -> bytes:
    """The placeholder manifest with the disks' real digests (same length)."""
    lines = []
    for line in placeholder.decode("ascii").splitlines(keepends=True):
        name = line[line.index("(") + 1:line.rindex(")")]
        if name in actual:
            line = line[:line.rindex(" ") + 1] + actual[name] + "\n"
        lines.append(line)
    filled = "".join(lines).encode("ascii")
    if len(filled) != len(placeholder):
        raise BuildError("the manifest changed its length when the digests were filled in; "
                         "this is a bug")
    return filled


def _certificate(certificate: CertificateMember, manifest: bytes) -> bytes:
    data = certificate.make(manifest)
    if len(data) != certificate.size:
        raise BuildError(f"{certificate.name}: {len(data)} bytes where {certificate.size} "
                         "were laid out; this is a bug")
    return data


def _compare_known(target: Path, shown: str, disks: Sequence[DiskFile],
                   actual: dict[str, str], algorithm: str) -> None:
    """Every disk read must be the disk on record; else the OVA goes."""
    wrong = [f"{d.path}: its {ALGORITHMS[algorithm]} digest is {actual[d.name]}, "
             f"{d.known_from or 'the record'} says {(d.known or '').lower()}; the disk changed "
             "or was damaged after it was written"
             for d in disks if actual[d.name] != (d.known or "").lower()]
    if wrong:
        target.unlink(missing_ok=True)
        raise BuildError(f"{shown}: removed: a disk is not the one its digest describes; "
                         "build or export it again", wrong)
