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
from imagebuilder.ova.hashing import ALGORITHMS, HashPipeline, new_hash
from imagebuilder.ova.manifest import Manifest, parse_manifest
from imagebuilder.ova.ovf import ParsedOvf, parse_ovf
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.signing import chain_problems, read_certificate, signature_problems
from imagebuilder.ova.tar import Member, advise_sequential, list_members
from imagebuilder.ova.vmdk import (
    STREAM_OPTIMIZED,
    STREAM_OPTIMIZED_FORMAT,
    VmdkInfo,
    read_vmdk_at,
)

MAX_DESCRIPTOR = 16 << 20


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


def sidecar_path(ova: Path) -> Path:
    """``<name>.ova.sha256`` beside the OVA."""
    return ova.with_name(ova.name + ".sha256")


def _read(fh: BinaryIO, member: Member, limit: int) -> bytes:
    if member.size > limit:
        raise BuildError(f"member {member.name} is {member.size} bytes; a descriptor or manifest "
                         f"over {limit} bytes is not plausible")
    fh.seek(member.offset)
    return fh.read(member.size)


def _structure_problems(members: list[Member]) -> list[str]:
    problems = []
    for i, m in enumerate(members):
        if not m.regular:
            problems.append(f"member {i + 1} ({m.name}) is not a regular file; an OVA holds "
                            "only files")
        elif "/" in m.name or m.name in (".", ".."):
            problems.append(f"member {i + 1} ({m.name}) is not a bare file name; vSphere looks "
                            "files up by the names the descriptor uses")
    if not members:
        problems.append("the archive is empty")
    elif not members[0].name.endswith(".ovf"):
        problems.append(f"the first member is {members[0].name}, not the OVF descriptor; the "
                        "descriptor must come first")
    ovfs = [m.name for m in members if m.name.endswith(".ovf")]
    if len(ovfs) > 1:
        problems.append(f"more than one OVF descriptor: {', '.join(ovfs)}")
    return problems


def _manifest_problems(members: list[Member], ovf_name: str) -> tuple[Member | None, list[str]]:
    manifests = [(i, m) for i, m in enumerate(members) if m.name.endswith(".mf")]
    expected = ovf_name[:-len(".ovf")] + ".mf"
    if not manifests:
        return None, [f"no manifest: {expected} is missing, so nothing proves the files are "
                      "intact"]
    problems = []
    if len(manifests) > 1:
        problems.append("more than one manifest: " + ", ".join(m.name for _, m in manifests))
    index, manifest = manifests[0]
    if manifest.name != expected:
        problems.append(f"the manifest is named {manifest.name}; it must be {expected}, after "
                        "the descriptor")
    after_ovf = index == 1
    at_end = all(m.name.endswith((".mf", ".cert")) for m in members[index:])
    if not (after_ovf or at_end):
        problems.append(f"the manifest {manifest.name} is member {index + 1}; it must come right "
                        "after the descriptor (or at the very end)")
    return manifest, problems


@dataclass
class _Parts:
    """The small members read before the digest pass."""

    ovf_bytes: bytes
    parsed: ParsedOvf
    manifest_name: str = ""
    manifest_bytes: bytes = b""
    manifest: Manifest = field(default_factory=Manifest)
    certificate_bytes: bytes = b""


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

    ``digests`` (the file's SHA-256, each member's digest) skips the pass that
    reads the whole file: the writer that computed them on the way passes them,
    and everything else is still checked, in a few small reads."""
    path = Path(path)
    progress = progress or NoByteProgress()
    members = list_members(path)
    problems = _structure_problems(members)
    by_name = {m.name: m for m in members}
    ovf_member = members[0] if members and members[0].name.endswith(".ovf") else next(
        (m for m in members if m.name.endswith(".ovf")), None)
    if ovf_member is None:
        raise BuildError(f"{path}: not an OVA", problems + ["no OVF descriptor (.ovf) in it"])
    manifest_member, more = _manifest_problems(members, ovf_member.name)
    problems += more
    with open(path, "rb", buffering=0) as fh:
        advise_sequential(fh.fileno())
        parts = _read_parts(fh, path, members, ovf_member, manifest_member, problems)
        signature = _signature_problems(parts, path, anchors, now)
        if signature and signature[0].startswith(SIGNATURE_MISMATCH):
            raise BuildError(f"{path}: {signature[0]}")
        problems += signature
        problems += _reference_problems(parts.parsed, members, ovf_member, manifest_member,
                                        parts.manifest)
        disks, more = _disk_problems(fh, parts.parsed, by_name, path)
        problems += more
        if digests is None:
            sha256, found = _digest_pass(fh, path, members, parts.manifest, progress,
                                         shown or path.name)
        else:
            sha256, found = digests[0], dict(digests[1])
    for name, (algorithm, expected) in parts.manifest.entries.items():
        actual = found.get(name)
        if actual is not None and actual != expected:
            problems.append(f"{name}: its {ALGORITHMS[algorithm]} digest is {actual}, the "
                            f"manifest says {expected}; the file is corrupt")
    if check_sidecar:
        problems += _sidecar_problems(path, sha256)
    if problems:
        raise BuildError(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}; "
                         "this OVA would be refused or would deploy a damaged VM", problems)
    return VerifiedOva(path, sha256, members, ovf_member.name, parts.ovf_bytes, parts.parsed,
                       parts.manifest_name, parts.manifest_bytes, found, disks,
                       parts.certificate_bytes)


def _read_parts(fh: BinaryIO, path: Path, members: list[Member], ovf_member: Member,
                manifest_member: Member | None, problems: list[str]) -> _Parts:
    ovf_bytes = _read(fh, ovf_member, MAX_DESCRIPTOR)
    parts = _Parts(ovf_bytes, parse_ovf(ovf_bytes, f"{path.name}:{ovf_member.name}"))
    problems += [f"{ovf_member.name}: {p}" for p in parts.parsed.problems]
    if manifest_member is not None:
        parts.manifest_name = manifest_member.name
        parts.manifest_bytes = _read(fh, manifest_member, MAX_DESCRIPTOR)
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
        parts.certificate_bytes = _read(fh, cert, MAX_DESCRIPTOR)
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


def _reference_problems(parsed: ParsedOvf, members: list[Member], ovf_member: Member,
                        manifest_member: Member | None, manifest: Manifest) -> list[str]:
    problems = []
    by_name = {m.name: m for m in members}
    package = {ovf_member.name} | ({manifest_member.name} if manifest_member else set())
    package |= {m.name for m in members if m.name.endswith(".cert")}
    referenced = set()
    for f in parsed.files:
        referenced.add(f.href)
        member = by_name.get(f.href)
        if member is None:
            problems.append(f"{ovf_member.name} references {f.href} (File {f.id}), which is not "
                            "in the archive")
        elif f.size is not None and f.size != member.size:
            problems.append(f"{ovf_member.name} gives {f.href} a size of {f.size} bytes; the "
                            f"member has {member.size}")
    for m in members:
        if m.name not in referenced and m.name not in package:
            problems.append(f"member {m.name} is not referenced by {ovf_member.name}")
    if manifest_member is not None:
        for name in [ovf_member.name] + sorted(referenced & set(by_name)):
            if name not in manifest.entries:
                problems.append(f"{manifest_member.name} has no digest for {name}")
        for name in manifest.entries:
            if name not in by_name:
                problems.append(f"{manifest_member.name} lists {name}, which is not in the "
                                "archive")
    return problems


def _disk_problems(fh: BinaryIO, parsed: ParsedOvf, by_name: dict[str, Member],
                   path: Path) -> tuple[dict[str, VmdkInfo], list[str]]:
    problems = []
    disks: dict[str, VmdkInfo] = {}
    files = {f.id: f for f in parsed.files}
    if not parsed.disks:
        problems.append("the descriptor's DiskSection lists no disk")
    for disk in parsed.disks:
        ref = files.get(disk.file_ref)
        if ref is None:
            problems.append(f"Disk {disk.disk_id} refers to File {disk.file_ref!r}, which "
                            "References does not list")
            continue
        member = by_name.get(ref.href)
        if member is None:
            continue  # reported with the references
        if disk.format != STREAM_OPTIMIZED_FORMAT:
            problems.append(f"Disk {disk.disk_id}: format {disk.format!r} is not "
                            f"{STREAM_OPTIMIZED_FORMAT}")
        try:
            info = read_vmdk_at(fh, member.offset, member.size, Path(member.name),
                                f"{path.name}:{member.name}")
        except InputError as exc:
            problems.append(exc.message)
            continue
        disks[member.name] = info
        if not info.stream_optimized:
            problems.append(f"{member.name}: the VMDK is {info.create_type}, not "
                            f"{STREAM_OPTIMIZED} (or lacks compressed grains with markers)")
        if disk.capacity is not None and disk.capacity != info.capacity:
            problems.append(f"Disk {disk.disk_id}: the descriptor says a capacity of "
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
    if not sidecar.exists():
        return []
    words = sidecar.read_text(errors="replace").split()
    recorded = words[0].lower() if words else ""
    if recorded != sha256:
        return [f"{sidecar.name} records {recorded or 'nothing'}, the OVA's SHA-256 is {sha256}"]
    return []
