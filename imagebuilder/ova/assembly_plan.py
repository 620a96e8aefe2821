"""Planning an OVA: every check that needs no work done, as one InputError.

``plan_from_packer`` reads a Packer build directory (its manifest's
``custom_data`` and disks, the package inventory the build left, the build's
record in its work directory); ``plan_from_vmdks`` takes disk files and the
OS catalog. Both end in ``_checked_plan``, which reports every problem at once
before anything is written.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from imagebuilder.config import naming
from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.errors import InputError
from imagebuilder.ova.build_record import (
    INVENTORY_NAME,
    RECORD_NAME,
    BuildRecord,
    read_record,
)
from imagebuilder.ova.convert import MISSING_CONVERTER, Converter, find_converter
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
from imagebuilder.ova.limits import size_text
from imagebuilder.ova.ovf import NodeImage, hardware_problems
from imagebuilder.ova.sbom import Inventory, read_inventory
from imagebuilder.ova.signing import Signer, load_signer
from imagebuilder.ova.tar import NAME_MAX
from imagebuilder.ova.vmdk import VmdkInfo, read_vmdk

EULA_FILE = "EULA.txt"
Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A log that drops every line."""


def source_date_epoch(env: Mapping[str, str]) -> int | None:
    """``SOURCE_DATE_EPOCH`` (the reproducible-builds convention), or None when unset."""
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > 253402300799:
        raise InputError(f"SOURCE_DATE_EPOCH={raw!r}: not a number of seconds since 1970 "
                         "(e.g. 1700000000, or $(git log -1 --format=%ct))")
    return int(raw)


@dataclass(frozen=True)
class AssembleOptions:
    """How to assemble, apart from what: manifest digest, ovftool, extra properties,
    reproducible times, signing."""

    manifest_algorithm: str = "sha256"
    use_ovftool: bool = False
    ovftool_args: tuple[str, ...] = ()
    custom_properties_file: Path | None = None
    source_date_epoch: int | None = None
    signer: Signer | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 manifest_algorithm: str = "sha256") -> AssembleOptions:
        """Read ``IB_OVFTOOL``, ``IB_OVFTOOL_ARGS`` (split like a shell does),
        ``OVF_CUSTOM_PROPERTIES``, ``SOURCE_DATE_EPOCH`` and the signing key
        (``IB_SIGNING_KEY``, ``IB_SIGNING_CERT``, ``IB_SIGNING_KEY_PASSPHRASE``)
        from ``env`` (default: the process environment); every problem at once."""
        env = os.environ if env is None else env
        problems: list[str] = []
        raw = env.get("IB_OVFTOOL_ARGS", "")
        args: tuple[str, ...] = ()
        try:
            args = tuple(shlex.split(raw))
        except ValueError as exc:
            problems.append(f"IB_OVFTOOL_ARGS: cannot split {raw!r} like a shell would: {exc}")
        epoch = signer = None
        for read in (lambda: source_date_epoch(env), lambda: load_signer(env)):
            try:
                value = read()
            except InputError as exc:
                problems.append(exc.message)
                continue
            if isinstance(value, Signer):
                signer = value
            elif value is not None:
                epoch = value
        if problems:
            raise InputError(problems[0] if len(problems) == 1 else
                             "the environment asks for an OVA this tool cannot make",
                             problems if len(problems) > 1 else None)
        props = env.get("OVF_CUSTOM_PROPERTIES", "").strip()
        return cls(manifest_algorithm=manifest_algorithm,
                   use_ovftool=bool(env.get("IB_OVFTOOL")), ovftool_args=args,
                   custom_properties_file=Path(props) if props else None,
                   source_date_epoch=epoch, signer=signer)


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
    def certificate(self) -> str:
        """The signature and certificate chain's name."""
        return f"{self.stem}.cert"

    @property
    def sbom(self) -> str:
        """The CycloneDX SBOM's name."""
        return f"{self.stem}.cdx.json"

    @property
    def provenance(self) -> str:
        """The provenance statement's name."""
        return f"{self.stem}.provenance.json"

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
    inventory: Inventory | None = None
    record: BuildRecord | None = None
    #: Why there is no SBOM (empty when there is one).
    sbom_note: str = ""

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

    @property
    def mtime(self) -> int:
        """The time of every member: SOURCE_DATE_EPOCH, else the build's timestamp."""
        stamp = self.settings.build_timestamp
        return int(stamp) if stamp.isdigit() else int(dt.datetime.now().timestamp())

    def image(self) -> NodeImage:
        """What the descriptor says about the image."""
        s = self.settings
        return NodeImage(name=s.artifact, os_display_name=s.os_display_name,
                         kubernetes_semver=s.kubernetes_semver, ovf_os_id=s.ovf_os_id,
                         os_type=s.guest_os_type, hardware=s.hardware,
                         properties=tuple(s.properties() + self.extra_properties),
                         eula=self.eula, os_version=s.distro_version)


def at_epoch(settings: BuildSettings, epoch: int | None) -> BuildSettings:
    """The settings with their build time fixed to ``epoch`` (unchanged when None)."""
    if epoch is None:
        return settings
    when = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return replace(settings, build_timestamp=str(epoch),
                   build_date=when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _checked_plan(settings: BuildSettings, sources: list[VmdkInfo], output_dir: Path,
                  options: AssembleOptions, checkout: Checkout) -> AssemblyPlan:
    """Every check that does not need work done, as one InputError."""
    settings = at_epoch(settings, options.source_date_epoch)
    problems = hardware_problems(settings.hardware)
    if options.manifest_algorithm not in ALGORITHMS:
        problems.append(f"manifest digest {options.manifest_algorithm!r}: use one of "
                        + ", ".join(ALGORITHMS))
    names = artifact_names(settings.build_name, settings.kubernetes_semver)
    longest = max([names.ovf, names.sbom, names.disk(max(len(sources) - 1, 0))], key=len)
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
    converter, ovftool, more = _tool_problems(sources, options)
    problems += more + _output_problems(output_dir, sources)
    if problems:
        raise InputError(f"cannot assemble {names.ova}; nothing was started", problems)
    return AssemblyPlan(settings, sources, Path(output_dir), eula, options, extra, converter,
                        ovftool)


def _tool_problems(sources: list[VmdkInfo], options: AssembleOptions
                   ) -> tuple[Converter | None, str | None, list[str]]:
    problems = []
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
        if options.signer is not None:
            problems.append("IB_SIGNING_KEY with IB_OVFTOOL: ovftool writes the OVA, so sign "
                            "with its --privateKey in IB_OVFTOOL_ARGS, or unset IB_OVFTOOL")
    return converter, ovftool, problems


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
        return [f"{output_dir}: about {size_text(needed)} are needed and only {size_text(free)} "
                "are free"]
    return []


def _attestation_inputs(plan: AssemblyPlan, build_dir: Path, target: str,
                        checkout: Checkout) -> None:
    """The build's record and package inventory, when this build left them."""
    record_path = checkout.work_root / target / RECORD_NAME if target else None
    plan.record = read_record(record_path) if record_path else None
    inventory = build_dir / INVENTORY_NAME
    if not inventory.is_file():
        plan.sbom_note = (f"no SBOM: the build left no package inventory ({INVENTORY_NAME}); "
                          "without a communicator (communicator none, the simulator) no "
                          "provisioner reaches the VM to collect it")
        return
    if record_path and record_path.is_file() and \
            inventory.stat().st_mtime < record_path.stat().st_mtime:
        plan.sbom_note = (f"no SBOM: {inventory} is older than this build's record "
                          f"({record_path}), so it lists an earlier build's packages")
        return
    plan.inventory = read_inventory(inventory)


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
    plan = _checked_plan(settings, sources, build_dir, options or AssembleOptions(), checkout)
    plan.known_digests = export_digests(build, build_dir, sources)
    _attestation_inputs(plan, build_dir, data.get("ib_target", ""), checkout)
    return plan


def plan_from_vmdks(vmdks: Sequence[Path], os_name: str, kubernetes_semver: str,
                    output_dir: Path | None = None, vmx_version: int | None = None,
                    firmware: str | None = None, options: AssembleOptions | None = None,
                    checkout: Checkout | None = None, now: float | None = None,
                    inventory: Path | None = None) -> AssemblyPlan:
    """Plan an OVA from VMDK files (first = boot disk) without a Packer build.

    Everything but the disks comes from the OS catalog and the common config;
    ``output_dir`` defaults to ``output/<build_name>-kube-<version>/``; with
    ``inventory`` (a ``package-inventory.json``) the OVA gets an SBOM.
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
    plan = _checked_plan(settings, sources, output, options or AssembleOptions(), checkout)
    if inventory is not None:
        plan.inventory = read_inventory(inventory)
    else:
        plan.sbom_note = "no SBOM: no package inventory was given (--package-inventory)"
    return plan
