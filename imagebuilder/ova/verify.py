"""``ova-verify``: re-read a finished OVA and check everything a consumer relies on.

One sequential read of the archive feeds two worker threads: one hashes
the whole file (for ``<ova>.sha256``), the other each member the manifest
lists. Everything else (tar headers, descriptor, VMDK headers) is a few
small reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

from cryptography import x509

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova.hashing import ALGORITHMS, CHUNK, HashPipeline, new_hash
from imagebuilder.ova.limits import (
    MAX_DESCRIPTOR,
    MAX_MANIFEST,
    kind_of,
    open_regular,
    shown_name,
    shown_value,
    size_text,
)
from imagebuilder.ova.manifest import Manifest, parse_manifest
from imagebuilder.ova.ovf import ParsedOvf, parse_ovf
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.signing import chain_problems, read_certificate, signature_problems
from imagebuilder.ova.structure import manifest_problems, reference_problems, structure_problems
from imagebuilder.ova.tar import Member, advise_sequential, list_members
from imagebuilder.ova.vmdk import (
    STREAM_OPTIMIZED,
    STREAM_OPTIMIZED_FORMAT,
    VmdkInfo,
    read_vmdk_at,
)

#: Problems listed at most; the rest are counted.
MAX_LISTED = 10


@dataclass
class VerifiedOva:
    """A checked OVA: its digest, members, descriptor and manifest."""

    path: Path
    sha256: str
    members: list[Member]
    ovf_name: str
    ovf_bytes: bytes
    ovf: ParsedOvf
    manifest_name: str
    manifest_bytes: bytes
    digests: dict[str, str] = field(default_factory=dict)
    disks: dict[str, VmdkInfo] = field(default_factory=dict)
    certificate_bytes: bytes = b""
    manifest: Manifest = field(default_factory=Manifest)


def sidecar_path(ova: Path) -> Path:
    """``<name>.ova.sha256`` beside the OVA."""
    return ova.with_name(ova.name + ".sha256")


def _read(fh: BinaryIO, path: Path, member: Member, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise BuildError(f"{path}: member {member.name} is {size_text(member.size)}; {what} over "
                         f"{size_text(limit)} is not plausible")
    fh.seek(member.offset)
    return fh.read(member.size)


@dataclass
class _Parts:
    """The small members read before the digest pass."""

    ovf_bytes: bytes
    parsed: ParsedOvf
    manifest_name: str = ""
    manifest_bytes: bytes = b""
    manifest: Manifest = field(default_factory=Manifest)
    certificate_bytes: bytes = b""


@dataclass
class _Inspected:
    """Everything but the digests of the disks: what a full read adds."""

    members: list[Member]
    ovf_member: Member
    parts: _Parts
    disks: dict[str, VmdkInfo]
    problems: list[str]


def _inspect(fh: BinaryIO, path: Path, members: list[Member],
             anchors: Sequence[x509.Certificate] | None, now: dt.datetime | None) -> _Inspected:
    """The checks that take a few small reads: member kinds, names and order, the
    manifest's place, the descriptor, the signature, references, VMDK headers."""
    problems = structure_problems(members)
    ovf_member = members[0] if members and members[0].name.endswith(".ovf") else next(
        (m for m in members if m.name.endswith(".ovf")), None)
    if ovf_member is None:
        raise BuildError(f"{path}: not an OVA", _listed(
            problems + ["no OVF descriptor (.ovf) in it"]))
    manifest_member, more = manifest_problems(members, ovf_member.name)
    problems += more
    parts = _read_parts(fh, path, members, ovf_member, manifest_member, problems)
    signature = _signature_problems(parts, path, anchors, now)
    if signature and signature[0].startswith(SIGNATURE_MISMATCH):
        raise BuildError(f"{path}: {signature[0]}")
    problems += signature
    problems += reference_problems(parts.parsed, members, ovf_member, manifest_member,
                                   parts.manifest)
    disks, more = _disk_problems(fh, parts.parsed, {m.name: m for m in members}, path)
    return _Inspected(members, ovf_member, parts, disks, problems + more)


def _listed(problems: list[str]) -> list[str]:
    """At most MAX_LISTED problems, and how many more there were."""
    if len(problems) <= MAX_LISTED:
        return problems
    return problems[:MAX_LISTED] + [f"... and {len(problems) - MAX_LISTED} more"]


def _refuse(path: Path, problems: list[str]) -> BuildError:
    return BuildError(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}; "
                      "this OVA would be refused or would deploy a damaged VM",
                      _listed(problems))


def _verified(path: Path, found: _Inspected, sha256: str,
              digests: dict[str, str]) -> VerifiedOva:
    parts = found.parts
    return VerifiedOva(path, sha256, found.members, found.ovf_member.name, parts.ovf_bytes,
                       parts.parsed, parts.manifest_name, parts.manifest_bytes, digests,
                       found.disks, parts.certificate_bytes, parts.manifest)


def digest_problems(manifest: Manifest, found: dict[str, str]) -> list[str]:
    """One line per member whose digest (in ``found``) is not the manifest's."""
    problems = []
    for name, (algorithm, expected) in manifest.entries.items():
        actual = found.get(name)
        if actual is not None and actual != expected:
            problems.append(f"{name}: its {ALGORITHMS[algorithm]} digest is {actual}, the "
                            f"manifest says {expected}; the file is corrupt")
    return problems


def verify_ova(path: Path, progress: ByteProgress | None = None,
               check_sidecar: bool = True, shown: str | None = None,
               digests: tuple[str, dict[str, str]] | None = None,
               anchors: Sequence[x509.Certificate] | None = None,
               now: dt.datetime | None = None) -> VerifiedOva:
    """Check the OVA at ``path``; return what was read, or raise BuildError listing
    every problem: member order and names, manifest presence and digests,
    descriptor references and sizes, VMDK format and capacities, the
    signature of a ``.cert`` member, and (when ``check_sidecar`` and it
    exists) ``<ova>.sha256``. ``shown`` names the file in progress reports
    (default: its name). With ``anchors`` (the CA certificates of ``--ca``)
    the OVA must be signed and its chain must lead to one of them, every
    certificate valid at ``now``. A signature that does not match is the one
    line of the error: nothing else in such a package can be trusted.
    InputError when ``path`` is no regular file.

    ``digests`` (the file's SHA-256, each member's digest) skips the pass that
    reads the whole file: the writer that computed them on the way passes them,
    and everything else is still checked, in a few small reads."""
    path = Path(path)
    progress = progress or NoByteProgress()
    members = list_members(path)
    with open_regular(path, "an OVA file") as fh:
        advise_sequential(fh.fileno())
        found = _inspect(fh, path, members, anchors, now)
        if digests is None:
            sha256, hashed = _digest_pass(fh, path, members, found.parts.manifest, progress,
                                          shown or path.name)
        else:
            sha256, hashed = digests[0], dict(digests[1])
    problems = found.problems + digest_problems(found.parts.manifest, hashed)
    if check_sidecar:
        problems += _sidecar_problems(path, sha256)
    if problems:
        raise _refuse(path, problems)
    return _verified(path, found, sha256, hashed)


def check_before_import(path: Path, anchors: Sequence[x509.Certificate] | None = None,
                        now: dt.datetime | None = None) -> VerifiedOva:
    """What an importer (``deploy-ova``, a Content Library publish) runs before it
    creates anything: every check of ``verify_ova`` but the digests of the disks,
    which the importer takes as it uploads them (``digest_problems`` on what it
    hashed) so the archive is read once. The descriptor's and every other
    member's digests are checked here. The result's ``sha256`` is empty; its
    ``digests`` hold what was hashed. Raises as ``verify_ova`` does."""
    path = Path(path)
    members = list_members(path)
    with open_regular(path, "an OVA file") as fh:
        found = _inspect(fh, path, members, anchors, now)
        if found.problems:
            raise _refuse(path, found.problems)
        manifest = found.parts.manifest
        hashed = {m.name: member_digest(fh, m, manifest.entries[m.name][0])
                  for m in members if m.name in manifest.entries and m.name not in found.disks}
    problems = digest_problems(manifest, hashed)
    if problems:
        raise _refuse(path, problems)
    return _verified(path, found, "", hashed)


def member_digest(fh: BinaryIO, member: Member, algorithm: str) -> str:
    """The digest of one member's data, read from the open archive in chunks."""
    hasher = new_hash(algorithm)
    fh.seek(member.offset)
    left = member.size
    while left:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            raise BuildError(f"{member.name}: the OVA became shorter while it was read; is "
                             "something writing it?")
        hasher.update(chunk)
        left -= len(chunk)
    return hasher.hexdigest()


def _read_parts(fh: BinaryIO, path: Path, members: list[Member], ovf_member: Member,
                manifest_member: Member | None, problems: list[str]) -> _Parts:
    ovf_bytes = _read(fh, path, ovf_member, MAX_DESCRIPTOR, "a descriptor")
    parts = _Parts(ovf_bytes, parse_ovf(ovf_bytes, f"{path.name}:{ovf_member.name}"))
    problems += [f"{ovf_member.name}: {p}" for p in parts.parsed.problems]
    if manifest_member is not None:
        parts.manifest_name = manifest_member.name
        parts.manifest_bytes = _read(fh, path, manifest_member, MAX_MANIFEST, "a manifest")
        parts.manifest = parse_manifest(parts.manifest_bytes.decode("utf-8", errors="replace"),
                                        manifest_member.name)
        problems += parts.manifest.problems
    certs = [(i, m) for i, m in enumerate(members) if m.name.endswith(".cert")]
    if certs:
        index, cert = certs[0]
        expected = ovf_member.name[:-len(".ovf")] + ".cert"
        previous = members[index - 1].name if index else ""
        if len(certs) > 1 or cert.name != expected or previous != parts.manifest_name:
            problems.append(f"the certificate must be one member named {expected}, right after "
                            "the manifest")
        parts.certificate_bytes = _read(fh, path, cert, MAX_MANIFEST, "a certificate")
    return parts


#: How a signature problem that makes the package untrustworthy begins.
SIGNATURE_MISMATCH = "signature mismatch: "


def _signature_problems(parts: _Parts, path: Path, anchors: Sequence[x509.Certificate] | None,
                        now: dt.datetime | None) -> list[str]:
    if not parts.certificate_bytes:
        return [f"{path.name} is not signed (no .cert member), but --ca asks for a signed "
                "OVA"] if anchors is not None else []
    try:
        check = read_certificate(parts.certificate_bytes, f"{path.name}: .cert")
    except ValueError as exc:
        return [str(exc)]
    if not parts.manifest_name:
        return ["a .cert member without a manifest: there is nothing it signs"]
    found = signature_problems(check, parts.manifest_name, parts.manifest_bytes, ".cert")
    if found:
        return [SIGNATURE_MISMATCH + found[0]]
    if anchors is not None:
        return chain_problems(check.chain, anchors, now or dt.datetime.now(dt.timezone.utc),
                              ".cert")
    return []


def _disk_problems(fh: BinaryIO, parsed: ParsedOvf, by_name: dict[str, Member],
                   path: Path) -> tuple[dict[str, VmdkInfo], list[str]]:
    problems = []
    disks: dict[str, VmdkInfo] = {}
    files = {f.id: f for f in parsed.files}
    if not parsed.disks:
        problems.append("the descriptor's DiskSection lists no disk")
    used: dict[str, str] = {}
    for disk in parsed.disks:
        ref = files.get(disk.file_ref)
        shown = shown_name(disk.disk_id)
        if ref is None:
            problems.append(f"Disk {shown} refers to File {shown_value(disk.file_ref)}, which "
                            "References does not list")
            continue
        member = by_name.get(ref.href)
        if member is None:
            continue  # reported with the references
        if member.name in used:
            problems.append(f"Disk {shown} is the file {member.name}, as Disk "
                            f"{used[member.name]} is; each disk has a file of its own")
            continue
        used[member.name] = shown
        if disk.format != STREAM_OPTIMIZED_FORMAT:
            problems.append(f"Disk {shown}: format {shown_value(disk.format, 100)} is not "
                            f"{STREAM_OPTIMIZED_FORMAT}")
        try:
            info = read_vmdk_at(fh, member.offset, member.size, Path(member.name),
                                f"{path.name}:{member.name}")
        except InputError as exc:
            problems.append(exc.message)
            continue
        disks[member.name] = info
        if not info.stream_optimized:
            problems.append(f"{member.name}: the VMDK is {info.layout}, not {STREAM_OPTIMIZED} "
                            "(compressed grains with markers, as vSphere imports them)")
        if disk.capacity is not None and disk.capacity != info.capacity:
            problems.append(f"Disk {shown}: the descriptor says a capacity of "
                            f"{disk.capacity} bytes; the VMDK {member.name} holds "
                            f"{info.capacity}")
    return disks, problems


def _digest_pass(fh: BinaryIO, path: Path, members: list[Member], manifest: Manifest,
                 progress: ByteProgress, shown: str) -> tuple[str, dict[str, str]]:
    """One read of the whole file: its SHA-256 on one thread, the manifest's
    members on another."""
    regions = []
    for m in members:
        entry = manifest.entries.get(m.name)
        if entry is not None:
            regions.append((m.offset, m.offset + m.size, m.name, new_hash(entry[0])))
    whole = hashlib.sha256()
    total = path.stat().st_size
    fh.seek(0)
    pos = 0
    progress.begin(f"verifying {shown}", total)
    try:
        with HashPipeline(lanes=2) as pipe:
            while True:
                buf = pipe.next_buffer()
                count = fh.readinto(buf)
                if not count:
                    break
                chunk = buf[:count]
                pipe.feed(0, whole, chunk)
                end = pos + count
                for start, stop, _, hasher in regions:
                    if start < end and stop > pos:
                        pipe.feed(1, hasher, chunk[max(start, pos) - pos:min(stop, end) - pos])
                pos = end
                progress.advance(count)
    finally:
        progress.end()
    return whole.hexdigest(), {name: hasher.hexdigest() for _, _, name, hasher in regions}


def _sidecar_problems(path: Path, sha256: str) -> list[str]:
    sidecar = sidecar_path(path)
    try:
        mode = sidecar.stat().st_mode
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{sidecar.name}: cannot read it ({exc.strerror})"]
    try:
        with open_regular(sidecar, "a checksum file") as fh:
            head = fh.read(MAX_SIDECAR)
    except InputError:
        return [f"{sidecar.name} is {kind_of(mode)}, not a checksum file"]
    except OSError as exc:
        return [f"{sidecar.name}: cannot read it ({exc.strerror})"]
    words = head.decode("ascii", errors="replace").split()
    recorded = words[0].lower() if words else ""
    if recorded != sha256:
        return [f"{sidecar.name} records {shown_name(recorded) if recorded else 'nothing'}, "
                f"the OVA's SHA-256 is {sha256}"]
    return []


#: ``<sha256>  <name>``: a line; more is read no further.
MAX_SIDECAR = 4096
