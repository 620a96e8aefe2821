"""Assemble a node image OVA: plan (every check, nothing written), then build.

    plan = plan_from_packer(Path("output/ubuntu-2204-kube-v1.37.1"))
    result = assemble(plan)

Planning (``assembly_plan``) reads the inputs, checks the tools (converter,
ovftool), the settings, the signing key and the free space, and raises one
InputError listing every problem before any work starts. ``assemble``
converts disks that are not streamOptimized, builds the descriptor (and the
SBOM), writes the OVA under a temporary name (signed when a key is given),
verifies it, and only then renames it and its companions (``.ovf``, ``.mf``,
``.cert``, ``.cdx.json``, ``.provenance.json``, ``.ova.sha256``) into place.

When every disk's digest is known beforehand (Packer's export manifest, or
taken while we wrote the converted disk), each disk is read once: the OVA's
digest and the disk's are computed while it is copied, and the verification
skips its full read. Otherwise (a disk vmware-vdiskmanager converted, an
export without a manifest) a second pass reads the finished OVA
(``verify_ova``).
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.config.checkout import Checkout
from imagebuilder.errors import BuildError
from imagebuilder.ova.archive import CertificateMember, DiskFile, SmallFile, write_ova
from imagebuilder.ova.assembly_plan import (  # noqa: F401 (re-exported: their old home)
    EULA_FILE,
    ArtifactNames,
    AssembleOptions,
    AssemblyPlan,
    Log,
    artifact_names,
    plan_from_packer,
    plan_from_vmdks,
    quiet,
)
from imagebuilder.ova.convert import convert_to_stream_optimized
from imagebuilder.ova.limits import size_text
from imagebuilder.ova.ovf import OvfDisk, PackageFile, build_ovf
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.provenance import signature_path, statement, statement_bytes
from imagebuilder.ova.sbom import sbom_bytes, sbom_document
from imagebuilder.ova.staging import Staging
from imagebuilder.ova.verify import VerifiedOva, verify_ova
from imagebuilder.ova.vmdk import VmdkInfo, populated_size
from imagebuilder.processes import run_child

_quiet = quiet


@dataclass
class AssemblyResult:
    """The files an assembly left, and how long it took."""

    ova: Path
    ovf: Path
    manifest: Path
    checksum: Path
    sha256: str
    disks: list[str]
    converted: list[str]
    seconds: float
    verified: VerifiedOva | None = None
    sbom: Path | None = None
    provenance: Path | None = None
    signed: bool = False

    def summary(self) -> str:
        """One line: path, size, disks, conversions, time and digest."""
        size = self.ova.stat().st_size
        converted = f", converted {', '.join(self.converted)}" if self.converted else ""
        signed = ", signed" if self.signed else ""
        return (f"{self.ova} ({size_text(size)}, {len(self.disks)} disk"
                f"{'s' if len(self.disks) != 1 else ''}{converted}{signed}) in "
                f"{self.seconds:.1f}s; sha256 {self.sha256}")


@dataclass
class _Disk:
    name: str
    info: VmdkInfo
    populated: int
    file: DiskFile


def _prepare_disks(plan: AssemblyPlan, scratch: Path, log: Log) -> tuple[list[_Disk], list[str]]:
    """Each disk as it goes into the OVA (converted when it must be); its digest
    when one is on record."""
    names = plan.names
    disks, converted = [], []
    for index, source in enumerate(plan.sources):
        info = source
        known = plan.known_digest(source)
        digest, known_from = (known.hexdigest, str(known.source)) if known else (None, "")
        if not source.stream_optimized:
            conversion = convert_to_stream_optimized(
                source, scratch / names.disk(index), plan.converter, log,
                plan.options.manifest_algorithm, _content_id(plan, index))
            info = conversion.info
            converted.append(source.path.name)
            digest, known_from = conversion.digest, f"the conversion of {source.path}"
        with open(info.path, "rb") as fh:
            populated = populated_size(fh, 0, info.size, info.header)
        disks.append(_Disk(names.disk(index), info, populated,
                           DiskFile(names.disk(index), info.path, digest,
                                    known_from if digest else "")))
    return disks, converted


def _content_id(plan: AssemblyPlan, index: int) -> int | None:
    """With SOURCE_DATE_EPOCH, a converted disk's content ID follows from the inputs."""
    if plan.options.source_date_epoch is None:
        return None
    seed = f"{plan.names.disk(index)} {plan.options.source_date_epoch}".encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:4], "little")


def _sbom(plan: AssemblyPlan, log: Log) -> bytes | None:
    if plan.inventory is None:
        log(plan.sbom_note)
        return None
    downloads = plan.record.downloads if plan.record else None
    document = sbom_document(plan.settings.artifact, f"kube-{plan.settings.kubernetes_semver}",
                             plan.mtime, plan.inventory, downloads)
    log(f"SBOM: {len(plan.inventory.packages)} {plan.inventory.manager} packages"
        + (f", {len(downloads)} downloads" if downloads is not None
           else "; the build's record was not found, so no downloads"))
    return sbom_bytes(document)


def _write(plan: AssemblyPlan, ovf: bytes, disks: list[_Disk], sbom: bytes | None,
           ova_tmp: Path, progress: ByteProgress, log: Log) -> tuple[str, dict[str, str]] | None:
    """Our own writer; returns the digests it computed on the way, if it did."""
    names = plan.names
    files = [d.file for d in disks]
    single = all(f.known for f in files)
    log(f"writing {names.ova}" + (" (disk digests from "
        + ", ".join(sorted({f.known_from for f in files})) + ": one read of each disk)"
        if single else ""))
    signer = plan.options.signer
    certificate = CertificateMember(
        names.certificate, signer.certificate_size(names.manifest),
        lambda manifest: signer.certificate(names.manifest, manifest)) if signer else None
    written = write_ova(ova_tmp, names.ovf, ovf, names.manifest, files,
                        plan.options.manifest_algorithm, plan.mtime, progress, names.ova,
                        trailing=[SmallFile(names.sbom, sbom)] if sbom is not None else (),
                        certificate=certificate)
    return (written.sha256, written.digests) if written.sha256 is not None else None


def assemble(plan: AssemblyPlan, progress: ByteProgress | None = None,
             log: Log = quiet) -> AssemblyResult:
    """Build, verify and move into place the OVA that ``plan`` describes."""
    started = time.monotonic()
    progress = progress or NoByteProgress()
    names = plan.names
    out = plan.output_dir
    final = {kind: out / getattr(names, kind) for kind in
             ("ova", "ovf", "manifest", "checksum", "certificate", "sbom", "provenance")}
    with Staging() as staging:
        staging.output_directory(out)
        scratch = staging.directory(out, f"{names.stem}.work")
        disks, converted = _prepare_disks(plan, scratch, log)
        sbom = _sbom(plan, log)
        in_ova = sbom is not None and not plan.ovftool
        ovf = build_ovf(plan.image(), [OvfDisk(d.name, d.info.size, d.info.capacity,
                                               d.populated) for d in disks],
                        [PackageFile(names.sbom, len(sbom))] if in_ova and sbom else [])
        known_sums = None
        if plan.ovftool:
            ova_tmp = _run_ovftool(plan, ovf, disks, scratch, log)
            staging.adopt(ova_tmp, final["ova"])
            if sbom is not None:
                log(f"{names.sbom}: written beside the OVA only (ovftool made the OVA, so the "
                    "SBOM is not one of its members)")
        else:
            ova_tmp = staging.file_for(final["ova"])
            known_sums = _write(plan, ovf, disks, sbom, ova_tmp, progress, log)
        verified = verify_ova(ova_tmp, progress, check_sidecar=False, shown=names.ova,
                              digests=known_sums)
        staging.write(final["ovf"], verified.ovf_bytes)
        staging.write(final["manifest"], verified.manifest_bytes)
        if verified.certificate_bytes:
            staging.write(final["certificate"], verified.certificate_bytes)
        if sbom is not None:
            staging.write(final["sbom"], sbom)
        provenance = _provenance(plan, verified, sbom, staging, final["provenance"])
        staging.write(final["checksum"], f"{verified.sha256}  {names.ova}\n".encode())
        staging.commit()
    return AssemblyResult(final["ova"], final["ovf"], final["manifest"], final["checksum"],
                          verified.sha256, [d.name for d in disks], converted,
                          time.monotonic() - started, verified,
                          final["sbom"] if sbom is not None else None, provenance,
                          bool(verified.certificate_bytes))


def _provenance(plan: AssemblyPlan, verified: VerifiedOva, sbom: bytes | None,
                staging: Staging, target: Path) -> Path:
    """Stage ``<name>.provenance.json`` (and its signature, with a key)."""
    names = plan.names
    byproducts = {names.ovf: hashlib.sha256(verified.ovf_bytes).hexdigest(),
                  names.manifest: hashlib.sha256(verified.manifest_bytes).hexdigest()}
    if sbom is not None:
        byproducts[names.sbom] = hashlib.sha256(sbom).hexdigest()
    document = statement_bytes(statement(names.ova, verified.sha256, plan.record, byproducts))
    staging.write(target, document)
    if plan.options.signer is not None:
        staging.write(signature_path(target), plan.options.signer.sign(document))
    return target


def _run_ovftool(plan: AssemblyPlan, ovf: bytes, disks: list[_Disk], scratch: Path,
                 log: Log) -> Path:
    """Run ovftool with IB_OVFTOOL_ARGS, our descriptor in, an OVA out (in ``scratch``)."""
    names = plan.names
    source = scratch / "ovftool-in"
    source.mkdir()
    (source / names.ovf).write_bytes(ovf)
    for disk in disks:
        (source / disk.name).symlink_to(disk.info.path.resolve())
    target_dir = scratch / "ovftool-out"
    target_dir.mkdir()
    target = target_dir / names.ova
    argv = [plan.ovftool or "ovftool", *plan.options.ovftool_args, str(source / names.ovf),
            str(target)]
    log("running " + shlex.join(argv))
    try:
        result = run_child(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace")
    except OSError as exc:
        raise BuildError(f"cannot run ovftool ({plan.ovftool}): {exc.strerror}") from None
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-20:])
        raise BuildError(f"ovftool failed (exit code {result.returncode}) making {names.ova}"
                         + (f":\n{tail}" if tail else ""))
    if not target.is_file():
        raise BuildError(f"ovftool exited 0 but wrote no {target}; check IB_OVFTOOL_ARGS "
                         f"({shlex.join(plan.options.ovftool_args) or 'empty'})")
    return target


def assemble_from_packer(build_dir: Path, options: AssembleOptions | None = None,
                         progress: ByteProgress | None = None, log: Log = quiet,
                         checkout: Checkout | None = None) -> AssemblyResult | None:
    """What the template's ``ova`` post-processor runs: plan and assemble the OVA of
    the build in ``build_dir``. Returns None (after saying so through ``log``)
    when the build exported no disk."""
    plan = plan_from_packer(build_dir, options, checkout)
    if plan is None:
        log(f"{build_dir}: the build exported no disk (no .vmdk in "
            "packer-manifest.json); no OVA to assemble")
        return None
    return assemble(plan, progress, log)
