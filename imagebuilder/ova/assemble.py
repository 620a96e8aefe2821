"""Assemble a node image OVA: plan (every check, nothing written), then build.

    plan = plan_from_packer(Path("output/ubuntu-2204-kube-v1.37.1"))
    result = assemble(plan)

Planning reads the inputs, checks the tools (converter, ovftool), the
settings and the free space, and raises one InputError listing every
problem before any work starts. ``assemble`` converts disks that are not
streamOptimized, builds the descriptor, writes the OVA under a temporary
name, verifies it, and only then renames it and its companions
(``.ovf``, ``.mf``, ``.ova.sha256``) into place.

When every disk's digest is known beforehand (Packer's export manifest, or
taken while we wrote the converted disk), each disk is read once: the OVA's
digest and the disk's are computed while it is copied, and the verification
skips its full read. Otherwise (a disk vmware-vdiskmanager converted, an
export without a manifest) a second pass reads the finished OVA
(``verify_ova``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from imagebuilder.config import naming
from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova.archive import NAME_MAX, DiskFile, write_ova
from imagebuilder.ova.convert import (
    MISSING_CONVERTER,
    Converter,
    convert_to_stream_optimized,
    find_converter,
)
from imagebuilder.ova.hashing import ALGORITHMS
from imagebuilder.ova.inputs import (
    BuildSettings,
    KnownDigest,
    catalog_minimum_vmx,
    custom_properties,
    disks_of_build,
    export_digests,
    read_packer_manifest,
    settings_from_catalog,
    settings_from_values,
)
from imagebuilder.ova.ovf import NodeImage, OvfDisk, build_ovf, hardware_problems
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.staging import Staging
from imagebuilder.ova.verify import VerifiedOva, verify_ova
from imagebuilder.ova.vmdk import VmdkInfo, populated_size, read_vmdk

EULA_FILE = "EULA.txt"
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class AssembleOptions:
    """How to assemble, apart from what: manifest digest, ovftool, extra properties."""

    manifest_algorithm: str = "sha256"
    use_ovftool: bool = False
    ovftool_args: tuple[str, ...] = ()
    custom_properties_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 manifest_algorithm: str = "sha256") -> AssembleOptions:
        """Read ``IB_OVFTOOL``, ``IB_OVFTOOL_ARGS`` (split like a shell does) and
        ``OVF_CUSTOM_PROPERTIES`` from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        raw = env.get("IB_OVFTOOL_ARGS", "")
        try:
            args = tuple(shlex.split(raw))
        except ValueError as exc:
            raise InputError(f"IB_OVFTOOL_ARGS: cannot split {raw!r} like a shell would: "
                             f"{exc}") from None
        props = env.get("OVF_CUSTOM_PROPERTIES", "").strip()
        return cls(manifest_algorithm=manifest_algorithm,
                   use_ovftool=bool(env.get("IB_OVFTOOL")), ovftool_args=args,
                   custom_properties_file=Path(props) if props else None)


@dataclass(frozen=True)
class ArtifactNames:
    """``<build_name>-kube-<version>`` and the files named after it."""

    stem: str

    @property
    def ovf(self) -> str:
        """The descriptor's name."""
        return f"{self.stem}.ovf"

    @property
    def manifest(self) -> str:
        """The manifest's name."""
        return f"{self.stem}.mf"

    @property
    def ova(self) -> str:
        """The OVA's name."""
        return f"{self.stem}.ova"

    @property
    def checksum(self) -> str:
        """The name of the OVA's ``.sha256`` file."""
        return f"{self.stem}.ova.sha256"

    def disk(self, index: int) -> str:
        """The name of disk ``index`` (0 = the boot disk)."""
        return f"{self.stem}-disk-{index}.vmdk"


def artifact_names(build_name: str, kubernetes_semver: str) -> ArtifactNames:
    """The OVA's file names; unsafe characters (``+`` in a version) become ``-``
    exactly as in the VM and directory names (``naming.node_vm_name``)."""
    return ArtifactNames(naming.node_vm_name(build_name, kubernetes_semver))


@dataclass
class AssemblyPlan:
    """Everything ``assemble`` needs, checked."""

    settings: BuildSettings
    sources: list[VmdkInfo]
    output_dir: Path
    eula: str
    options: AssembleOptions = field(default_factory=AssembleOptions)
    extra_properties: list[tuple[str, str]] = field(default_factory=list)
    converter: Converter | None = None
    ovftool: str | None = None
    known_digests: dict[Path, KnownDigest] = field(default_factory=dict)
    """Disk path -> its digest on record (Packer's export manifest)."""

    def known_digest(self, source: VmdkInfo) -> KnownDigest | None:
        """The recorded digest of ``source`` when it is in the manifest's algorithm."""
        known = self.known_digests.get(source.path)
        if known is None or known.algorithm != self.options.manifest_algorithm:
            return None
        return known

    @property
    def names(self) -> ArtifactNames:
        """The file names of this OVA."""
        return artifact_names(self.settings.build_name, self.settings.kubernetes_semver)

    def image(self) -> NodeImage:
        """What the descriptor says about the image."""
        s = self.settings
        return NodeImage(name=s.artifact, os_display_name=s.os_display_name,
                         kubernetes_semver=s.kubernetes_semver, ovf_os_id=s.ovf_os_id,
                         os_type=s.guest_os_type, hardware=s.hardware,
                         properties=tuple(s.properties() + self.extra_properties),
                         eula=self.eula, os_version=s.distro_version)


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

    def summary(self) -> str:
        """One line: path, size, disks, conversions, time and digest."""
        size = self.ova.stat().st_size
        converted = f", converted {', '.join(self.converted)}" if self.converted else ""
        return (f"{self.ova} ({size / (1 << 20):.1f} MiB, {len(self.disks)} disk"
                f"{'s' if len(self.disks) != 1 else ''}{converted}) in {self.seconds:.1f}s; "
                f"sha256 {self.sha256}")


def _plan(settings: BuildSettings, sources: list[VmdkInfo], output_dir: Path,
          options: AssembleOptions, checkout: Checkout) -> AssemblyPlan:
    """Every check that does not need work done, as one InputError."""
    problems = hardware_problems(settings.hardware)
    if options.manifest_algorithm not in ALGORITHMS:
        problems.append(f"manifest digest {options.manifest_algorithm!r}: use one of "
                        + ", ".join(ALGORITHMS))
    names = artifact_names(settings.build_name, settings.kubernetes_semver)
    longest = max([names.ovf, names.manifest, names.disk(max(len(sources) - 1, 0))], key=len)
    if len(longest) > NAME_MAX:
        problems.append(f"{longest}: longer than the {NAME_MAX} characters a tar member name "
                        "holds; shorten build_name")
    if not sources:
        problems.append("no disk to put in the OVA")
    eula_path = checkout.packer_dir / EULA_FILE
    eula = ""
    try:
        eula = eula_path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{eula_path}: cannot read the EULA the descriptor carries "
                        f"({exc.strerror})")
    extra: list[tuple[str, str]] = []
    if options.custom_properties_file is not None:
        try:
            extra = custom_properties(options.custom_properties_file,
                                      {k for k, _ in settings.properties()})
        except InputError as exc:
            problems += exc.problems or [exc.message]
    converter = None
    to_convert = [s for s in sources if not s.stream_optimized]
    if to_convert:
        converter = find_converter()
        if converter is None:
            problems.append(f"{', '.join(str(s.path) for s in to_convert)}: not streamOptimized "
                            f"and {MISSING_CONVERTER}")
    ovftool = None
    if options.use_ovftool:
        ovftool = shutil.which("ovftool")
        if ovftool is None:
            problems.append("IB_OVFTOOL is set but ovftool is not on PATH; install VMware OVF "
                            "Tool, or unset IB_OVFTOOL to assemble the OVA without it")
    problems += _output_problems(output_dir, sources)
    if problems:
        raise InputError(f"cannot assemble {names.ova}; nothing was started", problems)
    return AssemblyPlan(settings, sources, Path(output_dir), eula, options, extra, converter,
                        ovftool)


def _output_problems(output_dir: Path, sources: list[VmdkInfo]) -> list[str]:
    """Can the files be written there? Free space is a first look: the OVA holds
    the disks, streamOptimized; a disk still to convert shrinks but needs room
    twice (converted copy, then the OVA), so its current size is the estimate."""
    probe = Path(output_dir)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        return [f"{output_dir}: cannot write there ({probe} is not a writable directory)"]
    needed = sum(s.size if s.stream_optimized else 2 * s.size for s in sources)
    free = shutil.disk_usage(probe).free
    if needed > free:
        return [f"{output_dir}: about {needed >> 20} MiB are needed and only {free >> 20} MiB "
                "are free"]
    return []


def plan_from_packer(build_dir: Path, options: AssembleOptions | None = None,
                     checkout: Checkout | None = None) -> AssemblyPlan | None:
    """Plan the OVA of the Packer build in ``build_dir`` (its output directory).

    Returns None when the build exported no disk (a simulator run, or a
    builder that leaves the VM on vSphere): there is nothing to assemble.
    """
    build_dir = Path(build_dir)
    checkout = checkout or find_checkout()
    build = read_packer_manifest(build_dir)
    sources = disks_of_build(build, build_dir)
    if not sources:
        return None
    data = build.custom_data
    min_vmx = catalog_minimum_vmx(checkout, data.get("build_name", ""))
    settings = settings_from_values(data, f"{build.manifest} custom_data", min_vmx)
    plan = _plan(settings, sources, build_dir, options or AssembleOptions(), checkout)
    plan.known_digests = export_digests(build, build_dir, sources)
    return plan


def plan_from_vmdks(vmdks: Sequence[Path], os_name: str, kubernetes_semver: str,
                    output_dir: Path | None = None, vmx_version: int | None = None,
                    firmware: str | None = None, options: AssembleOptions | None = None,
                    checkout: Checkout | None = None, now: float | None = None) -> AssemblyPlan:
    """Plan an OVA from VMDK files (first = boot disk) without a Packer build.

    Everything but the disks comes from the OS catalog and the common config;
    ``output_dir`` defaults to ``output/<build_name>-kube-<version>/``.
    """
    checkout = checkout or find_checkout()
    problems = []
    sources = []
    for path in vmdks:
        try:
            sources.append(read_vmdk(Path(path)))
        except InputError as exc:
            problems.append(exc.message)
    try:
        settings = settings_from_catalog(checkout, os_name, kubernetes_semver, vmx_version,
                                         firmware, now)
    except InputError as exc:
        problems += exc.problems or [exc.message]
        settings = None
    if problems or settings is None:
        raise InputError("cannot assemble the OVA; nothing was started", problems)
    output = Path(output_dir) if output_dir else naming.artifact_dir(
        checkout.output_dir, settings.build_name, kubernetes_semver)
    return _plan(settings, sources, output, options or AssembleOptions(), checkout)


def assemble(plan: AssemblyPlan, progress: ByteProgress | None = None,
             log: Log = _quiet) -> AssemblyResult:
    """Build, verify and move into place the OVA that ``plan`` describes."""
    started = time.monotonic()
    progress = progress or NoByteProgress()
    names = plan.names
    out = plan.output_dir
    out.mkdir(parents=True, exist_ok=True)
    final = {kind: out / getattr(names, kind) for kind in ("ova", "ovf", "manifest", "checksum")}
    with Staging() as staging:
        scratch = staging.directory(out, f"{names.stem}.work")
        disks: list[tuple[str, VmdkInfo, int]] = []
        files: list[DiskFile] = []
        converted = []
        for index, source in enumerate(plan.sources):
            info = source
            known = plan.known_digest(source)
            digest, known_from = (known.hexdigest, str(known.source)) if known else (None, "")
            if not source.stream_optimized:
                conversion = convert_to_stream_optimized(
                    source, scratch / names.disk(index), plan.converter, log,
                    plan.options.manifest_algorithm)
                info = conversion.info
                converted.append(source.path.name)
                digest, known_from = conversion.digest, f"the conversion of {source.path}"
            with open(info.path, "rb") as fh:
                populated = populated_size(fh, 0, info.size, info.header)
            disks.append((names.disk(index), info, populated))
            files.append(DiskFile(names.disk(index), info.path, digest,
                                  known_from if digest else ""))
        ovf = build_ovf(plan.image(), [OvfDisk(name, info.size, info.capacity, populated)
                                       for name, info, populated in disks])
        known_sums = None
        if plan.ovftool:
            ova_tmp = _run_ovftool(plan, ovf, disks, scratch, log)
            staging.adopt(ova_tmp, final["ova"])
        else:
            ova_tmp = staging.file_for(final["ova"])
            single = all(f.known for f in files)
            log(f"writing {names.ova}" + (" (disk digests from "
                + ", ".join(sorted({f.known_from for f in files})) + ": one read of each disk)"
                if single else ""))
            mtime = int(plan.settings.build_timestamp) if plan.settings.build_timestamp.isdigit() \
                else int(time.time())
            written = write_ova(ova_tmp, names.ovf, ovf, names.manifest, files,
                                plan.options.manifest_algorithm, mtime, progress, names.ova)
            if written.sha256 is not None:
                known_sums = (written.sha256, written.digests)
        verified = verify_ova(ova_tmp, progress, check_sidecar=False, shown=names.ova,
                              digests=known_sums)
        staging.write(final["ovf"], verified.ovf_bytes)
        staging.write(final["manifest"], verified.manifest_bytes)
        staging.write(final["checksum"], f"{verified.sha256}  {names.ova}\n".encode())
        staging.commit()
    return AssemblyResult(final["ova"], final["ovf"], final["manifest"], final["checksum"],
                          verified.sha256, [name for name, _, _ in disks], converted,
                          time.monotonic() - started, verified)


def _run_ovftool(plan: AssemblyPlan, ovf: bytes, disks: list[tuple[str, VmdkInfo, int]],
                 scratch: Path, log: Log) -> Path:
    """Run ovftool with IB_OVFTOOL_ARGS, our descriptor in, an OVA out (in ``scratch``)."""
    names = plan.names
    source = scratch / "ovftool-in"
    source.mkdir()
    (source / names.ovf).write_bytes(ovf)
    for name, info, _ in disks:
        (source / name).symlink_to(info.path.resolve())
    target_dir = scratch / "ovftool-out"
    target_dir.mkdir()
    target = target_dir / names.ova
    argv = [plan.ovftool, *plan.options.ovftool_args, str(source / names.ovf), str(target)]
    log("running " + shlex.join(argv))
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
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
                         progress: ByteProgress | None = None, log: Log = _quiet,
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
