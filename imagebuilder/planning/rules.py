"""Every rule over a build's inputs, each returning problem lines, before anything runs.

A problem line reads ``<file>: <field>: <what is wrong and what to do>`` (or
``environment: <VARIABLE>: ...``), so that all problems of all targets can be
reported at once (one InputError, exit code 2). The schemas themselves are in
:mod:`imagebuilder.config.schema`; this module applies them and adds the rules that
span files, the values that pass a schema but cannot work, and what the
environment must provide.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from imagebuilder.config.catalog import Target
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import FLATCAR_CHANNELS, FLATCAR_VERSION, Knobs
from imagebuilder.config.packer_flags import GO_BOOLS, FlagVar
from imagebuilder.config.schema import schema_errors
from imagebuilder.config.template import NO_EFFECT_HERE, reach, user_refs
from imagebuilder.config.upstream import PLANNER_INPUTS, TEMPLATE_DEFAULTS, cd_content_sources
from imagebuilder.config.varfiles import MergedVars
from imagebuilder.errors import InputError
from imagebuilder.planning import goss
from imagebuilder.vsphere.settings import ONE_OF
from imagebuilder.vsphere.settings import REQUIRED as VSPHERE_REQUIRED

#: Floors below which a build cannot work (ours, from the installers'
#: documented minimums): memory and disk in MiB, as the template takes them.
MIN_CPU = 1
OS_MINIMUMS = {  # distro_name: (memory MiB, disk_size MiB)
    "ubuntu": (1024, 5120),
    "rhel": (1536, 10240),
    "rockylinux": (1536, 10240),
    "almalinux": (1536, 10240),
    "photon": (1024, 8192),
    "flatcar": (2048, 8192),
    "windows": (2048, 32768),  # Windows Server's documented minimum disk: 32 GB
}
DEFAULT_MINIMUMS = (1024, 5120)

_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.\d+")

#: Says which file set a variable, or the file where the user should set it.
Where = Callable[[str, str], str]


def file_schema_problems(kind: str, data: dict, where: str) -> tuple[list[str], set[str]]:
    """The problem lines of one var file against the schema ``kind``, and the fields
    they name (rules over those fields say nothing more about them)."""
    found = schema_errors(kind, data)
    lines = [f"{where}: {name}: {what}" if name else f"{where}: {what}" for name, what in found]
    return lines, {name for name, _ in found}


def undeclared_problems(names: list[str], declared: Iterable[str], where: str) -> list[str]:
    """A variable the template does not declare is a typo until proven otherwise.

    Packer 1.6 ignores such a variable silently, so ``vcenter_sever`` would
    build against an empty server name; we refuse it and suggest the name.
    """
    problems = []
    for name in names:
        if name in declared:
            continue
        if not name.strip():
            problems.append(f"{where}: a variable with an empty name {name!r}; remove it")
            continue
        close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]!r}?" if close else \
            "the Packer template does not declare it; remove it or check its spelling"
        problems.append(f"{where}: {name}: unknown variable; {hint}")
    return problems


def undeclared_in_inputs(files: list[tuple[str, dict[str, object]]], flags: list[FlagVar],
                         secret_flags: list[str], declared: Iterable[str],
                         also_known: Iterable[str] = ()) -> list[str]:
    """Names the template does not declare, in var files (``files``: each file's name
    and contents) and ``-var`` flags (``secret_flags``: the names of secret ones).
    ``also_known``: names accepted anyway (the other OS family's, warned about)."""
    # A name another value quotes ({{user `x`}}) is a helper, as upstream's docs
    # show for ansible_user_vars; any other unknown name is a typo until proven otherwise.
    known = set(declared) | set(NO_EFFECT_HERE) | set(also_known) | user_refs(
        [list(data.values()) for _, data in files] + [fv.value for fv in flags])
    problems = []
    for where, data in files:
        problems += undeclared_problems(list(data), known, where)
    return problems + undeclared_problems([fv.name for fv in flags] + secret_flags, known,
                                          "PACKER_FLAGS")


def output_dir_problems(checkout: Checkout) -> list[str]:
    """The output directory must be a directory we can write to (or be creatable)."""
    out = checkout.output_dir
    name = f"IB_OUTPUT_DIR={out}" if os.environ.get("IB_OUTPUT_DIR") else f"output directory {out}"
    existing = out
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            return [f"environment: {name}: {existing} is a dangling symbolic link; "
                    "fix or remove it"]
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == out else f" ({existing} is a file)"
        return [f"environment: {name}: not a directory{where}; point IB_OUTPUT_DIR at a "
                "directory (it is created when missing)"]
    try:  # the only reliable test, root included: write something and take it back
        fd, probe = tempfile.mkstemp(prefix=".ib-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return [f"environment: {name}: cannot write in {existing} ({exc.strerror}); point "
                "IB_OUTPUT_DIR at a writable directory"]
    return []


def where_set(merged: MergedVars) -> Where:
    """``where(key, default_file)``: the file that set ``key`` ("PACKER_FLAGS" for a
    ``-var``), or ``default_file`` when only the template's default holds it."""
    def where(key: str, default_file: str) -> str:
        origin = merged.origin.get(key, TEMPLATE_DEFAULTS)
        if origin == "PACKER_FLAGS -var":
            return "PACKER_FLAGS"
        return default_file if origin == TEMPLATE_DEFAULTS else origin
    return where


def cross_checks(target: Target, knobs: Knobs, merged: MergedVars,
                 bad_fields: set[str] = frozenset()) -> list[str]:
    """Rules that span files: required fields, either/or, versions, values.

    Fields in ``bad_fields`` already have a schema problem: no second line for them.
    """
    where = where_set(merged)
    problems = _vsphere_problems(target, merged, where, bad_fields)
    # An empty source_path means the local-base VM: a prerequisite (bases.py).
    if target.hypervisor.name == "local-vmx" and merged.get("source_path") \
            and not Path(merged.get("source_path")).is_file():
        problems.append(f"{where('source_path', 'ova/vmx.json')}: source_path: "
                        f"{merged.get('source_path')} does not exist")
    vmx, minimum = merged.get("vmx_version"), merged.get("min_vmx_version")
    if vmx.isdigit() and minimum.isdigit() and int(vmx) < int(minimum):
        problems.append(f"{where('vmx_version', 'packer/packer-common.json')}: vmx_version: "
                        f"{vmx} is below the minimum {minimum} that {target.os_name} needs; "
                        f"set vmx_version to {minimum} or more")
    if not merged.get("kubernetes_semver"):
        problems.append("packer/config/kubernetes.json: kubernetes_semver: is empty; set it")
    values = merged.resolved({"FLATCAR_CHANNEL": knobs.flatcar_channel,
                              "FLATCAR_VERSION": knobs.flatcar_version})
    problems += _size_problems(values, where, bad_fields)
    problems += _series_problems(values, where, bad_fields)
    problems += _flatcar_problems(values, merged, where)
    problems += _ceph_problems(values, where)
    return problems


def _vsphere_problems(target: Target, merged: MergedVars, where: Where,
                      bad_fields: set[str]) -> list[str]:
    """vsphere.json's required fields, and exactly one of cluster or host."""
    hv = target.hypervisor
    if not hv.vsphere:
        return []
    problems = []
    vfile = f"ova/{hv.extra_var_file}"
    for key in VSPHERE_REQUIRED:
        if key not in bad_fields and not merged.get(key).strip():
            hint = " (or set VSPHERE_PASSWORD)" if key == "password" else ""
            problems.append(f"{where(key, vfile)}: {key}: is empty; set it{hint}")
    first, second = ONE_OF
    one, other = merged.get(first).strip(), merged.get(second).strip()
    if bool(one) == bool(other):
        state = "both are set" if one else "neither is set"
        problems.append(f"{vfile}: {first}/{second}: set exactly one of {first} or {second} "
                        f"({state}: {first}={one!r}, {second}={other!r})")
    return problems


def _size_problems(values: dict[str, str], where: Where, bad_fields: set[str]) -> list[str]:
    """CPUs, memory and disk below what the OS's installer needs."""
    distro = values.get("distro_name", "")
    memory_min, disk_min = OS_MINIMUMS.get(distro, DEFAULT_MINIMUMS)
    what = f"{distro} installs" if distro in OS_MINIMUMS else "installs"
    floors = (("cpu", MIN_CPU, "CPU"), ("cpu_cores", 1, "core per socket"),
              ("memory", memory_min, f"MiB of memory for {what}"),
              ("disk_size", disk_min, f"MiB of disk for {what}"))
    problems = []
    for key, floor, unit in floors:
        value = values.get(key, "").strip()
        if key in bad_fields or not value.isdigit() or int(value) >= floor:
            continue
        problems.append(f"{where(key, 'packer/packer-common.json')}: {key}: {value} is below "
                        f"the minimum of {floor} {unit}; set {key} to {floor} or more")
    return problems


def _series_problems(values: dict[str, str], where: Where, bad_fields: set[str]) -> list[str]:
    """kubernetes_series must be the minor version of kubernetes_semver."""
    semver, series = values.get("kubernetes_semver", ""), values.get("kubernetes_series", "")
    match = _SEMVER.match(semver)
    if not match or not series or "kubernetes_series" in bad_fields \
            or series == f"v{match.group(1)}.{match.group(2)}":
        return []
    series_file = where("kubernetes_series", "packer/config/kubernetes.json")
    semver_file = where("kubernetes_semver", "packer/config/kubernetes.json")
    source = "" if semver_file == series_file else f" (set in {semver_file})"
    return [f"{series_file}: kubernetes_series: {series} does not match kubernetes_semver "
            f"{semver}{source}; set it to v{match.group(1)}.{match.group(2)}"]


def _flatcar_problems(values: dict[str, str], merged: MergedVars, where: Where) -> list[str]:
    """Flatcar's channel and release reach the ISO URL and the typed boot command."""
    if values.get("distro_name", "") != "flatcar":
        return []
    problems = []
    for key, env, ok, hint in (
            ("flatcar_channel", "FLATCAR_CHANNEL", lambda v: v in FLATCAR_CHANNELS,
             "one of " + ", ".join(FLATCAR_CHANNELS)),
            ("flatcar_version", "FLATCAR_VERSION", FLATCAR_VERSION.match,
             "'current' or a release such as 3975.2.0")):
        if not ok(values.get(key, "")):
            origin = merged.origin.get(key, TEMPLATE_DEFAULTS)
            field = f"environment: {env}" if origin == TEMPLATE_DEFAULTS \
                else f"{where(key, '')}: {key}"
            problems.append(f"{field}: {values.get(key, '')!r} is not a Flatcar release "
                            f"name; use {hint} (it becomes part of the ISO URL and the "
                            "typed boot command)")
    return problems


def _ceph_problems(values: dict[str, str], where: Where) -> list[str]:
    """Ceph RGW has no default endpoint: additional_s3_ceph needs additional_s3_endpoint."""
    if (all(values.get(k, "").strip().lower() == "true"
            for k in ("load_additional_components", "additional_s3", "additional_s3_ceph"))
            and not values.get("additional_s3_endpoint", "").strip()):
        return [f"{where('additional_s3_ceph', '')}: additional_s3_ceph: Ceph RGW has no "
                "default endpoint; set additional_s3_endpoint to its URL"]
    return []


def knob_problems(knobs: Knobs, building: bool) -> list[str]:
    """Problem lines of the environment knobs themselves, one per knob, every one at once."""
    problems = []
    if building and knobs.packer_color and knobs.packer_color not in GO_BOOLS:
        problems.append(f"environment: PACKER_COLOR: {knobs.packer_color!r} is not "
                        "true or false")
    for var, path in (("SSH_PRIVATE_KEY_FILE", knobs.ssh_private_key_file),
                      ("SSH_PUBLIC_KEY_FILE", knobs.ssh_public_key_file)):
        if path and not Path(path).is_file():
            problems.append(f"environment: {var}: {path} does not exist"
                            if not Path(path).exists() else
                            f"environment: {var}: {path} is not a regular file")
    if knobs.ssh_public_key_file and Path(knobs.ssh_public_key_file).is_file():
        try:
            knobs.public_key()
        except InputError as exc:
            problems.append(exc.message)
    return problems


def kubernetes_package_problems(values: dict[str, str],
                                origin: Callable[[str], str]) -> list[str]:
    """The package version must be one of kubernetes_semver (``origin``: the file that set a
    variable): a version changed alone would otherwise install another Kubernetes; its
    repository series is checked against kubernetes_semver by cross_checks."""
    semver = values.get("kubernetes_semver", "")
    match = _SEMVER.match(semver)
    if not match or values.get("kubernetes_source_type") != "pkg":
        return []
    bare = semver[1:]
    deb = values.get("distro_name") in ("ubuntu", "debian")
    var = "kubernetes_deb_version" if deb else "kubernetes_rpm_version"
    version = values.get(var, "")
    if version and not (version == bare or version.startswith(bare + "-")):
        return [f"{origin(var)}: {var}: {version} is not a package of kubernetes_semver "
                f"{semver}; set it to {bare}{'-1.1' if deb else ''} (or the package "
                "revision you want)"]
    return []


def environment_checks(knobs: Knobs, merged: MergedVars) -> list[str]:
    """What the environment must provide for this build."""
    problems = []
    if merged.get("distro_name") == "rhel":
        for var, value in (("RHSM_USER", knobs.rhsm_user), ("RHSM_PASS", knobs.rhsm_pass)):
            if not value:
                problems.append(f"environment: {var}: RHEL builds register with Red Hat "
                                f"Subscription Manager; export {var}")
    return problems


def cd_content_problems(resolved: dict[str, str], origin: str, root: Path) -> list[str]:
    """What ``cd_content_location`` names must exist (``origin``: the file that set it)."""
    _, problems = cd_content_sources(resolved.get("cd_content_location", ""), root)
    return [f"{origin}: {problem}" for problem in problems]


def source_problems(target: Target, merged: MergedVars) -> list[str]:
    """A clone's ``template`` or a vmx build's ``source_path`` set to "" by a later var
    file or flag: that hides the base of its OS, which the build would otherwise use."""
    for key, hypervisor in (("template", "vsphere-clone"), ("source_path", "local-vmx")):
        if target.hypervisor.name == hypervisor and not merged.get(key):
            return [f"{merged.origin.get(key)}: {key}: is empty here, which hides the default "
                    f"(the base of {target.os_name}); remove the field or name a source"]
    return []


def no_effect_warnings(checkout: Checkout, target: Target, merged: MergedVars,
                       user_files: list[str]) -> list[str]:
    """One line per kind of accepted-but-ineffective setting, never silence.

    Only what a user's var file (``user_files``: their names as origins) or ``-var``
    sets warns: the checkout's own config files carry upstream's values for every build."""
    by_user = {k: o for k, o in merged.origin.items()
               if o in user_files or o == "PACKER_FLAGS -var"}
    warnings = [f"{by_user[name]}: {name}: has no effect on OVA builds: {why}"
                for name, why in NO_EFFECT_HERE.items() if name in by_user and merged.get(name)]
    idle = _idle_builder_fields(checkout, target, merged, by_user)
    if idle:
        warnings.append(f"{target.task_name('build')}: {', '.join(idle)}: no effect on this "
                        f"target (its builder {target.hypervisor.builder} has no such field)")
    return warnings


def _idle_builder_fields(checkout: Checkout, target: Target, merged: MergedVars,
                         by_user: dict[str, str]) -> list[str]:
    """Builder settings of other builders (http_ip on vmware-iso, which Packer 1.6.6 lacks;
    remote_* on vSphere targets) that the user set. Site files (vsphere.json, vmx.json) are
    layered for every target by many users, and base builds skip the playbooks by design:
    their fields are not listed."""
    template = json.loads(checkout.node_template.read_text())
    provisioner = checkout.packer_dir / "goss" / "provisioner.json"
    if provisioner.is_file():
        template = goss.template_with_goss(checkout.node_template, provisioner)
    here = reach(template, merged.values, target.hypervisor.builder)
    anywhere = reach(template, merged.values)
    site: set[str] = set()
    for name in ("vsphere.json", "vmx.json"):
        site |= set(json.loads((checkout.ova_dir / name).read_text()))
    return [k for k in sorted(by_user) if k not in site and not here.get(k)
            and k not in PLANNER_INPUTS and anywhere.get(k)
            and all(label.startswith("builder:") for label in anywhere[k])]


def combine_target_problems(per_target: list[tuple[str, list[str]]],
                            checked: int | None = None) -> list[str]:
    """Each problem once, in the order first seen; when several targets were
    checked (``checked``, default: those in ``per_target``), each line ends
    with the targets it affects."""
    affected: dict[str, list[str]] = {}
    for target, problems in per_target:
        for problem in problems:
            names = affected.setdefault(problem, [])
            if target not in names:
                names.append(target)
    total = checked or len(per_target)
    if total <= 1:
        return list(affected)
    return [f"{problem} [{f'all {total} targets' if len(names) == total else ', '.join(names)}]"
            for problem, names in affected.items()]


def problems_error(who: str, problems: list[str]) -> InputError:
    """The one error for a configuration with ``problems``: nothing was started."""
    prefix = f"{who}: " if who else ""
    return InputError(f"{prefix}{len(problems)} problem{'s' if len(problems) > 1 else ''} in "
                      "the configuration; nothing was started", problems)


def raise_target_problems(found: list[tuple[str, list[str]]], checked: int) -> None:
    """Raise one InputError for the problems of every target (``found``: target name and
    its problem lines): each problem said once, with the targets it affects when more than
    one target was checked. Nothing when nothing was found."""
    if found:
        who = found[0][0] if checked == 1 else ""
        raise problems_error(who, combine_target_problems(found, checked))
