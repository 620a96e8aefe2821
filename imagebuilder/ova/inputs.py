"""What an OVA is assembled from: the build's settings and its disk files.

Two sources: a Packer build directory (``packer-manifest.json``: its
``custom_data`` and file list, written by the template's manifest
post-processor), or VMDK paths plus the OS catalog and common config, for
re-packing a disk without a build.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from imagebuilder import __version__
from imagebuilder.config import naming
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.template import declared_variables
from imagebuilder.config.varfiles import merge, packer_string, read_var_file
from imagebuilder.errors import InputError
from imagebuilder.ova.limits import MAX_MANIFEST, read_limited
from imagebuilder.ova.manifest import parse_manifest
from imagebuilder.ova.ovf import VirtualHardware, xml_text_problem
from imagebuilder.ova.vmdk import VmdkInfo, is_disk_extent_only, read_vmdk

MANIFEST_NAME = "packer-manifest.json"
#: Packer adds an entry of a few kilobytes per run.
MAX_PACKER_MANIFEST = 16 << 20
#: OVF_CUSTOM_PROPERTIES: a handful of names and values.
MAX_CUSTOM_PROPERTIES = 1 << 20

#: custom_data key -> what it is, for messages.
REQUIRED_SETTINGS = (
    "build_name", "kubernetes_semver", "os_display_name", "distro_name", "distro_version",
    "distro_arch", "vsphere_guest_os_type", "ovf_os_id", "firmware", "vmx_version", "cpu",
    "memory", "disk_controller_type", "network_card", "kubernetes_source_type",
    "containerd_version", "kubernetes_cni_semver", "build_timestamp", "build_date",
)


@dataclass(frozen=True)
class BuildSettings:
    """The settings of one node image build that its OVA describes."""

    build_name: str
    kubernetes_semver: str
    os_display_name: str
    distro_name: str
    distro_version: str
    distro_arch: str
    guest_os_type: str
    ovf_os_id: int
    hardware: VirtualHardware
    kubernetes_source_type: str
    containerd_version: str
    cni_version: str
    build_timestamp: str
    build_date: str
    ib_version: str

    @property
    def artifact(self) -> str:
        """``<build_name>-kube-<version>``: VM name, descriptor Name, file stem."""
        return naming.node_vm_name(self.build_name, self.kubernetes_semver)

    def properties(self) -> list[tuple[str, str]]:
        """The ProductSection properties every node image carries, in order."""
        return [
            ("DISTRO_NAME", self.distro_name),
            ("DISTRO_VERSION", self.distro_version),
            ("DISTRO_ARCH", self.distro_arch),
            ("CNI_VERSION", self.cni_version),
            ("CONTAINERD_VERSION", self.containerd_version),
            ("KUBERNETES_SEMVER", self.kubernetes_semver),
            ("KUBERNETES_SOURCE_TYPE", self.kubernetes_source_type),
            ("BUILD_TIMESTAMP", self.build_timestamp),
            ("BUILD_DATE", self.build_date),
            ("IMAGE_BUILDER_VERSION", self.ib_version),
        ]


def _number(values: Mapping[str, str], key: str, shown: str, problems: list[str]) -> int:
    raw = str(values.get(key, "")).strip()
    if not raw.isdigit():
        problems.append(f"{shown}: {key}: {raw!r} is not a whole number")
        return 0
    return int(raw)


def settings_from_values(values: Mapping[str, str], shown: str,
                         min_vmx: tuple[int, str] | None = None) -> BuildSettings:
    """BuildSettings from resolved variables (``custom_data`` or merged var files).

    ``min_vmx`` is the OS's minimum hardware version and where it is set.
    Raises InputError listing every missing or malformed value.
    """
    problems = [f"{shown}: {key}: is missing or empty" for key in REQUIRED_SETTINGS
                if not str(values.get(key, "")).strip()]
    if problems:
        raise InputError(f"{shown}: cannot describe the image", problems)
    vmx = _number(values, "vmx_version", shown, problems)
    hardware = VirtualHardware(
        vmx_version=vmx,
        cpus=_number(values, "cpu", shown, problems),
        memory_mb=_number(values, "memory", shown, problems),
        disk_controller=values["disk_controller_type"],
        network_card=values["network_card"],
        firmware=values["firmware"],
    )
    os_id = _number(values, "ovf_os_id", shown, problems)
    if min_vmx and vmx and vmx < min_vmx[0]:
        problems.append(f"{shown}: vmx_version: {vmx} is below the minimum {min_vmx[0]} "
                        f"({min_vmx[1]}); use {min_vmx[0]} or more")
    if problems:
        raise InputError(f"{shown}: cannot describe the image", problems)
    return BuildSettings(
        build_name=values["build_name"], kubernetes_semver=values["kubernetes_semver"],
        os_display_name=values["os_display_name"], distro_name=values["distro_name"],
        distro_version=values["distro_version"], distro_arch=values["distro_arch"],
        guest_os_type=values["vsphere_guest_os_type"], ovf_os_id=os_id, hardware=hardware,
        kubernetes_source_type=values["kubernetes_source_type"],
        containerd_version=values["containerd_version"],
        cni_version=values["kubernetes_cni_semver"],
        build_timestamp=values["build_timestamp"], build_date=values["build_date"],
        ib_version=values.get("ib_version") or __version__,
    )


def catalog_minimum_vmx(checkout: Checkout, build_name: str) -> tuple[int, str] | None:
    """``min_vmx_version`` of ``ova/<build_name>.json``, if the catalog has it."""
    os_file = checkout.os_file(build_name)
    if not os_file.is_file():
        return None
    shown = f"ova/{os_file.name}"
    minimum = packer_string(read_var_file(os_file, shown).get("min_vmx_version", "")).strip()
    return (int(minimum), f"{shown} min_vmx_version") if minimum.isdigit() else None


@dataclass(frozen=True)
class PackerBuild:
    """The entry of a Packer run in ``packer-manifest.json`` that made the artifact."""

    manifest: Path
    builder: str
    custom_data: dict[str, str]
    files: list[Path]


def read_packer_manifest(build_dir: Path) -> PackerBuild:
    """The build entry of ``<build_dir>/packer-manifest.json`` of the last run.

    Packer appends an entry per run; the one of ``last_run_uuid`` (or else
    the last entry) is the build that left the files in ``build_dir``.
    """
    path = Path(build_dir) / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: not found; the Packer build writes it with its manifest "
                         "post-processor (is this the build's output directory?)")
    try:
        data = json.loads(read_limited(path, MAX_PACKER_MANIFEST, "a Packer manifest"))
    except ValueError as exc:
        raise InputError(f"{path}: cannot read it as JSON ({str(exc)[:200]})") from None
    builds = data.get("builds") if isinstance(data, dict) else None
    if not builds or not isinstance(builds, list):
        raise InputError(f"{path}: has no builds; run the Packer build first")
    run = data.get("last_run_uuid")
    matching = [b for b in builds if isinstance(b, dict) and b.get("packer_run_uuid") == run]
    build = matching[-1] if run and matching else builds[-1]
    if not isinstance(build, dict):
        raise InputError(f"{path}: the last build entry is not an object")
    custom = build.get("custom_data") or {}
    if not isinstance(custom, dict):
        raise InputError(f"{path}: custom_data is not an object")
    return PackerBuild(path, str(build.get("builder_type") or build.get("name") or ""),
                       {k: packer_string(v) for k, v in custom.items()},
                       _listed_files(path, build.get("files") or []))


def _listed_files(path: Path, entries: list) -> list[Path]:
    files = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not name:
            raise InputError(f"{path}: a files entry has no name: {entry!r}")
        files.append(Path(name))
    return files


def disks_of_build(build: PackerBuild, build_dir: Path) -> list[VmdkInfo]:
    """The VMDKs the build left, in the manifest's order: every ``.vmdk`` it lists
    that is a disk (has a descriptor), not an extent of one."""
    build_dir = Path(build_dir)
    candidates = []
    for name in build.files:
        if name.suffix.lower() != ".vmdk":
            continue
        path = name if name.is_absolute() else build_dir / name
        if not path.exists() and (build_dir / name.name).exists():
            path = build_dir / name.name
        if not path.is_file():
            raise InputError(f"{build.manifest}: lists {name}, but {path} does not exist; "
                             "was the build directory moved or cleaned?")
        candidates.append(path)
    disks = [read_vmdk(p) for p in candidates if not is_disk_extent_only(p)]
    named = {e.resolve() for d in disks for e in d.extent_paths()}
    strays = [p for p in candidates if is_disk_extent_only(p) and p.resolve() not in named]
    if strays:
        raise InputError(f"{build.manifest}: lists " + ", ".join(p.name for p in strays)
                         + ": not a VMDK with a descriptor, nor an extent a listed disk names "
                         "(damaged, or a raw file?)")
    return disks


@dataclass(frozen=True)
class KnownDigest:
    """A disk's digest on record before we read it, and where it is recorded."""

    algorithm: str
    hexdigest: str
    source: Path


def export_digests(build: PackerBuild, build_dir: Path,
                   disks: list[VmdkInfo]) -> dict[Path, KnownDigest]:
    """The digests a Packer vSphere export recorded for ``disks``.

    The export (``export.manifest``: sha1, sha256 or sha512) writes
    ``<name>.mf`` beside the disks with a ``SHA256(<disk>)= <hex>`` line per
    disk, hashed while it downloaded them. Only a manifest written after the
    disk counts: an older one (an earlier run's, or the ``.mf`` our own
    assembly leaves under the same name) describes an earlier disk. The newest
    manifest that lists a disk wins; unreadable lines are skipped.
    """
    build_dir = Path(build_dir)
    candidates = {(p if p.is_absolute() else build_dir / p) for p in build.files
                  if p.suffix.lower() == ".mf"}
    for disk in disks:
        candidates.update(disk.path.parent.glob("*.mf"))
    manifests = []
    for path in candidates:
        try:
            manifests.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    found: dict[Path, KnownDigest] = {}
    for mtime, path in sorted(manifests, reverse=True):
        try:
            text = read_limited(path, MAX_MANIFEST, "a manifest").decode("utf-8", "replace")
        except InputError:
            continue  # not a manifest this build wrote
        entries = parse_manifest(text, str(path)).entries
        for disk in disks:
            entry = entries.get(disk.path.name)
            if disk.path in found or entry is None:
                continue
            try:
                if disk.path.stat().st_mtime_ns > mtime:
                    continue
            except OSError:
                continue
            found[disk.path] = KnownDigest(entry[0], entry[1], path)
    return found


def settings_from_catalog(checkout: Checkout, os_name: str, kubernetes_semver: str,
                          vmx_version: int | None = None, firmware: str | None = None,
                          now: float | None = None) -> BuildSettings:
    """Settings for re-packing a disk of ``os_name`` without a build: the template's
    defaults, the common config, packer-common.json and the OS file, merged in
    the build's order, with the given Kubernetes version, hardware version and
    firmware on top."""
    os_file = checkout.os_file(os_name)
    if not os_file.is_file():
        raise InputError(f"--os {os_name}: no ova/{os_name}.json; known OSes: "
                         + ", ".join(checkout.os_names()))
    layers = [("packer/node.json", declared_variables(checkout.node_template))]
    for path in checkout.common_var_files() + [checkout.packer_common, os_file]:
        shown = str(path.relative_to(checkout.root))
        layers.append((shown, read_var_file(path, shown)))
    merged = merge(layers, [])
    merged.values["kubernetes_semver"] = kubernetes_semver
    if vmx_version is not None:
        merged.values["vmx_version"] = str(vmx_version)
    if firmware:
        merged.values["firmware"] = firmware
    values = merged.resolved(Knobs().packer_env())
    now = time.time() if now is None else now
    values["build_timestamp"] = str(int(now))
    values["build_date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    values["ib_version"] = __version__
    minimum = values.get("min_vmx_version", "").strip()
    where = "--vmx" if vmx_version is not None else merged.origin.get("vmx_version", "")
    min_vmx = (int(minimum), f"the minimum of ova/{os_name}.json") if minimum.isdigit() else None
    return settings_from_values(values, f"{os_name} ({where})" if where else os_name, min_vmx)


def custom_properties(path: Path, reserved: set[str]) -> list[tuple[str, str]]:
    """The extra ProductSection properties of the JSON file ``OVF_CUSTOM_PROPERTIES`` names.

    The file holds one object of non-empty string keys and scalar values
    (string, number, boolean); keys must not replace the build's own.
    """
    shown = f"OVF_CUSTOM_PROPERTIES={path}"
    try:
        raw = read_limited(Path(path), MAX_CUSTOM_PROPERTIES,
                           "a file (a JSON object of properties)")
    except InputError as exc:
        raise InputError(f"OVF_CUSTOM_PROPERTIES={exc.message}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{shown}: cannot read it as JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{shown}: must hold a JSON object of property names and values")
    problems = []
    out = []
    for key, value in data.items():
        if not key.strip():
            problems.append(f"{shown}: an empty property name")
            continue
        if key in reserved:
            problems.append(f"{shown}: {key}: the build sets this property; choose another name")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            text = value if isinstance(value, str) else json.dumps(value)
        else:
            kind = "null" if value is None else type(value).__name__
            problems.append(f"{shown}: {key}: {kind} is not a scalar; use a string, number "
                            "or boolean")
            continue
        for what, where in ((key, f"{shown}: property name {key!r}"), (text, f"{shown}: {key}")):
            problem = xml_text_problem(what, where)
            if problem:
                problems.append(problem)
        out.append((key, text))
    if problems:
        raise InputError(f"{shown}: bad custom properties", problems)
    return out
