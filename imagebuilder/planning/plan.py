"""Turning a target into a checked Packer invocation, before anything runs.

``plan_build`` reads every var file in the upstream order, checks them all
(schemas, undeclared variables, cross-field rules, required environment) and
reports every problem at once as one InputError (exit code 2). What it
returns holds the exact argv, the per-build generated values and the paths of
the build's own working directory; nothing has been written yet.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imagebuilder import __version__
from imagebuilder.config import naming
from imagebuilder.config.catalog import Target
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import FLATCAR_CHANNELS, FLATCAR_VERSION, Knobs
from imagebuilder.config.options import BuildOptions
from imagebuilder.config.template import NO_EFFECT_HERE, user_refs
from imagebuilder.config.upstream import (
    TEMPLATE_DEFAULTS,
    cd_content_sources,
    no_effect_warnings,
    set_pairs,
    stock_install_dirs,
    unwrap_quoted,
)
from imagebuilder.config.validation import (
    DEFAULT_MINIMUMS,
    MIN_CPU,
    OS_MINIMUMS,
    SECRET_VARIABLES,
    declared_variables,
    is_true,
    schema_errors,
    undeclared_problems,
)
from imagebuilder.config.varfiles import (
    FlagVar,
    MergedVars,
    VarLayer,
    merge,
    needs_normalising,
    packer_string,
    read_var_file,
    split_packer_flags,
)
from imagebuilder.errors import InputError
from imagebuilder.files import write_private_json
from imagebuilder.planning import downloads, goss, windows
from imagebuilder.planning.base_inputs import inputs_hash

#: vsphere.json fields every vsphere target needs (datacenter may be omitted
#: when the vCenter has exactly one; folder and resource_pool are optional).
VSPHERE_REQUIRED = ("vcenter_server", "username", "password", "datastore", "network")

#: The name Packer's vSphere builders give the snapshot of create_snapshot.
PACKER_SNAPSHOT = "Created by Packer"


SCHEMA_OF_ROLE = {"os": "os", "common": "var-file", "packer-common": "var-file",
                  "flags": "var-file", "user": "var-file"}
#: vSphere targets hold every var file the user adds to vsphere.json's rules,
#: wherever the vSphere settings come from.
VSPHERE_SCHEMA_ROLES = ("flags", "user")


@dataclass
class BuildPlan:
    """Everything a run of Packer for one target needs, checked and resolved."""

    checkout: Checkout
    target: Target
    action: str
    knobs: Knobs
    flags: list[str]
    layers: list[VarLayer]
    merged: MergedVars
    generated: dict[str, str]
    flag_secrets: dict[str, str]
    normalised: dict[Path, Path]
    work_dir: Path
    artifact_dir: Path
    log_path: Path
    file_data: dict[Path, dict] = field(default_factory=dict, repr=False)
    options: BuildOptions = field(default_factory=BuildOptions)
    goss_plugin: Path | None = None
    downloads: list[downloads.Download] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def generated_file(self) -> Path:
        return self.work_dir / "build-vars.json"

    @property
    def flag_secrets_file(self) -> Path:
        return self.work_dir / "flag-secrets.json"

    @property
    def http_dir(self) -> Path:
        return self.work_dir / "http"

    @property
    def cd_dir(self) -> Path:
        return self.work_dir / "cidata"

    @property
    def secret_values(self) -> list[str]:
        """Every secret value this build handles, for redacting output."""
        values = {v for k, v in self.generated.items() if k in SECRET_VARIABLES}
        values |= set(self.flag_secrets.values())
        for key in SECRET_VARIABLES:
            if self.merged.get(key):
                values.add(self.merged.get(key))
        values |= {v for v in (self.knobs.rhsm_pass, self.knobs.vsphere_password,
                               self.knobs.windows_admin_password) if v}
        return sorted((v for v in values if v), key=len, reverse=True)

    @property
    def exports(self) -> bool:
        """Whether Packer exports the VM (OVF + disks) for the OVA: every build
        but the base images, which stay a VM (local) or a template (vSphere)."""
        return not self.target.hypervisor.base

    @property
    def builder(self) -> str:
        """The template's builder for this plan (``-only``)."""
        return self.target.hypervisor.builder

    @property
    def template(self) -> Path:
        """The template Packer runs: the source one, or the build's own copy
        with the goss provisioner when the plugin is installed (see goss.py)."""
        if windows.is_windows(self.target):  # always the build's own copy (windows.py)
            return self.work_dir / windows.TEMPLATE
        return self.work_dir / "node.json" if self.goss_plugin else self.checkout.node_template

    def var_file_arg(self, layer: VarLayer) -> str:
        return f"-var-file={self.normalised.get(layer.path, layer.path)}"

    def argv(self, packer: str = "packer") -> list[str]:
        """The Packer command, in the upstream Makefile's order. Holds no secret."""
        argv = [packer, self.action]
        by_role = lambda *roles: [self.var_file_arg(l) for l in self.layers if l.role in roles]
        argv += by_role("common")
        argv += self.flags
        argv += by_role("packer-common", "os", "hypervisor", "generated")
        if not self.exports:
            argv.append("-except=ova")
        argv.append(f"-only={self.builder}")
        argv += by_role("user")
        if self.flag_secrets:
            argv.append(f"-var-file={self.flag_secrets_file}")
        argv.append(str(self.template))
        return argv

    def command_line(self, packer: str = "packer") -> str:
        """The argv as a shell would need it typed; safe to print."""
        return shlex.join(self.argv(packer))


def _rel(checkout: Checkout, path: Path) -> str:
    try:
        return str(path.relative_to(checkout.root))
    except ValueError:
        return str(path)


def _flag_vars_and_secrets(flag_vars: list[FlagVar]) -> tuple[list[FlagVar], dict[str, str]]:
    public = [fv for fv in flag_vars if fv.name not in SECRET_VARIABLES]
    hidden = {fv.name: fv.value for fv in flag_vars if fv.name in SECRET_VARIABLES}
    return public, hidden


def _strip_secret_flags(flags: list[str]) -> list[str]:
    """PACKER_FLAGS minus ``-var`` of secrets: those go through a 0600 file."""
    kept = []
    for tok in flags:
        name, _, value = tok.lstrip("-").partition("=")
        if name == "var" and value.partition("=")[0] in SECRET_VARIABLES:
            continue
        kept.append(tok)
    return kept


def plan_build(checkout: Checkout, target: Target, knobs: Knobs,
               action: str = "build", now: float | None = None,
               strict: bool = True, options: BuildOptions | None = None) -> BuildPlan:
    """Check every input of ``target`` and resolve its Packer invocation.

    Raises InputError listing every problem found (exit code 2). With
    ``strict=False`` problems are ignored: enough to know where a build's
    files go (for cleaning), not enough to run it.
    """
    hv = target.hypervisor
    building = action == "build"
    user_flags = split_packer_flags(knobs.packer_flags, action)
    color_given = any(f == "-color" or f.startswith("-color=") for f in user_flags.flags)
    ours = split_packer_flags(knobs.derived_packer_flags(building, color_given), action,
                              "environment")
    problems: list[str] = user_flags.problems + knobs.problems(building)
    if strict:
        problems += output_dir_problems(checkout)
    flags = user_flags.flags + ours.flags
    flag_files = user_flags.var_files
    flag_vars, flag_secrets = _flag_vars_and_secrets(user_flags.variables + ours.variables)
    flag_secrets.update(windows.env_secrets(knobs.windows_admin_password, target))
    flags = _strip_secret_flags(flags)

    os_file = checkout.os_file(target.os_name)
    if not os_file.is_file():
        raise InputError(f"{_rel(checkout, os_file)}: no such OS file; known OSes: "
                         + ", ".join(checkout.os_names()))
    layers = [VarLayer(p, "common") for p in windows.common_var_files(checkout, target)]
    layers += [VarLayer(p, "flags") for p in flag_files]
    layers += [VarLayer(checkout.packer_common, "packer-common"), VarLayer(os_file, "os")]
    if hv.extra_var_file:
        layers.append(VarLayer(checkout.ova_dir / hv.extra_var_file, "hypervisor"))
    user_layers = [VarLayer(p, "user") for p in knobs.packer_var_files]

    declared = declared_variables(windows.template_path(checkout, target))
    file_data: dict[Path, dict] = {}
    unreadable = False
    bad_fields: set[str] = set()
    for layer in layers + user_layers:
        where = _rel(checkout, layer.path)
        try:
            data = read_var_file(layer.path, where)
        except InputError as exc:
            unreadable = True
            hint = _var_files_hint(knobs, layer.path) if layer.role == "user" else ""
            if not (hint and any(p.endswith(hint) for p in problems)):  # one path cut in two
                problems.append(exc.message + hint)
            continue
        file_data[layer.path] = data
        kind = SCHEMA_OF_ROLE.get(layer.role) or layer.path.stem
        if hv.vsphere and layer.role in VSPHERE_SCHEMA_ROLES:
            kind = "vsphere"
        for name, what in schema_errors(kind, data):
            bad_fields.add(name)
            problems.append(f"{where}: {name}: {what}" if name else f"{where}: {what}")
    # A name another value quotes ({{user `x`}}) is a helper, as upstream's docs
    # show for ansible_user_vars; any other unknown name is a typo until proven otherwise.
    known = set(declared) | set(NO_EFFECT_HERE) | windows.other_family_names(checkout, target) \
        | user_refs(
        [list(d.values()) for d in file_data.values()] + [fv.value for fv in flag_vars])
    for layer in layers + user_layers:
        if layer.path in file_data:
            problems += undeclared_problems(list(file_data[layer.path]), known,
                                            _rel(checkout, layer.path))
    problems += undeclared_problems([fv.name for fv in flag_vars] + list(flag_secrets),
                                    known, "PACKER_FLAGS")

    rewritten = unwrap_quoted(file_data, declared)
    ordered = [(TEMPLATE_DEFAULTS, declared)]
    ordered += [(_rel(checkout, l.path), file_data[l.path])
               for l in layers + user_layers if l.path in file_data]
    merged = merge(ordered, flag_vars)
    for key, value in flag_secrets.items():
        merged.values[key] = value
        merged.origin[key] = "PACKER_FLAGS -var"
    if windows.env_secrets(knobs.windows_admin_password, target):
        merged.origin["windows_admin_password"] = "environment: WINDOWS_ADMIN_PASSWORD"
    if knobs.vsphere_password and hv.vsphere:
        merged.values["password"] = knobs.vsphere_password
        merged.origin["password"] = "VSPHERE_PASSWORD"

    # A file that could not be read leaves the merged view incomplete: rules
    # over it would report fields "empty" that the file may well set.
    if not unreadable:
        problems += _cross_checks(checkout, target, knobs, merged, bad_fields, action)
    problems += _environment_checks(knobs, merged)
    resolved = merged.resolved(knobs.packer_env())
    origin = lambda key: merged.origin.get(key, TEMPLATE_DEFAULTS)
    fetched = (windows.resolve_downloads if windows.is_windows(target) else downloads.resolve)(
        resolved, origin, lambda key: origin(key) != TEMPLATE_DEFAULTS)
    problems += fetched.problems
    problems += [f"{origin('cd_content_location')}: {p}" for p in
                 cd_content_sources(resolved.get("cd_content_location", ""), checkout.root)[1]]
    if problems and strict:
        raise InputError(f"{target.task_name(action)}: {len(problems)} problem"
                         f"{'s' if len(problems) > 1 else ''} in the configuration; "
                         "nothing was started", problems)

    output_root = checkout.output_dir
    build_name = merged.get("build_name")
    if hv.base:
        artifact = naming.base_artifact_dir(output_root, build_name)
        vm_name = naming.base_vm_name(build_name)
    else:
        artifact = naming.artifact_dir(output_root, build_name, merged.get("kubernetes_semver"))
        vm_name = naming.node_vm_name(build_name, merged.get("kubernetes_semver"))
    # Upstream's names for the VM and its output directory, when a var file sets them.
    name_var, dir_var = ("base_build_version", "base_output_dir") if hv.base else \
        ("build_version", "output_dir")
    if hv.name == "local-vmx" and resolved.get("image_name"):
        name_var = "image_name"
    vm_name = resolved.get(name_var) or vm_name
    if resolved.get(dir_var):
        artifact = checkout.root / resolved.get(dir_var)
    if merged.get("output_directory"):
        artifact = Path(merged.get("output_directory"))
    work_dir = checkout.work_root / target.name
    now = time.time() if now is None else now
    generated = {
        "vm_name": vm_name,
        "output_directory": str(artifact),
        "manifest_output": str(artifact / "packer-manifest.json"),
        "http_directory": str(work_dir / "http"),
        "cd_directory": str(work_dir / "cidata"),
        "build_timestamp": str(int(now)),
        "build_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "ib_version": __version__,
        "ib_python": sys.executable,
        "ib_target": target.name,
        # In the VM's extraConfig (guestinfo.imagebuilder.build_id): a cleanup
        # destroys only the VM that carries its own build's id.
        "ib_build_id": secrets.token_hex(12),
        "ssh_password": secrets.token_urlsafe(24),
        **fetched.values,
        "ib_ansible_vars": set_pairs(declared.get("ib_ansible_vars", ""),
                                     {**resolved, **fetched.values}),
    }
    if windows.is_windows(target):
        generated.update(windows.generated(work_dir, resolved))
    if hv.base:
        os_keys = list(file_data.get(os_file, {}))
        generated["base_inputs_hash"] = inputs_hash(checkout.root, merged.values, os_keys,
                                                    hv.builder)
        generated["base_snapshot_name"] = \
            PACKER_SNAPSHOT if is_true(merged.get("create_snapshot")) else ""
    if hv.name == "vsphere-clone":
        generated["template"] = naming.base_vm_name(build_name)
    if hv.name == "local-vmx":
        generated["source_path"] = str(_base_vmx(output_root, build_name))
    if knobs.vsphere_password and hv.vsphere:
        generated["password"] = knobs.vsphere_password
    # Generated values fill in; they never override what a var file or flag sets
    # (a template default such as ib_python's "python3" is not set by anyone).
    generated = {k: v for k, v in generated.items()
                 if not merged.get(k) or merged.origin.get(k) == TEMPLATE_DEFAULTS
                 or (k == "password" and knobs.vsphere_password)}
    # Packer reads the generated file before PACKER_VAR_FILES and -var flags:
    # where one of those sets a key, even to "", that value is what Packer uses.
    later = {_rel(checkout, l.path) for l in user_layers} | {"PACKER_FLAGS -var"}
    for key, value in generated.items():
        if merged.origin.get(key) not in later:
            merged.values[key] = value
            merged.origin[key] = "generated"
    for key, hvs in (("template", ("vsphere-clone",)), ("source_path", ("local-vmx",))):
        if hv.name in hvs and not merged.get(key) and strict:
            raise InputError(f"{target.task_name(action)}: 1 problem in the configuration; "
                             "nothing was started", [
                                 f"{merged.origin.get(key)}: {key}: is empty here, which hides "
                                 f"the default (the base of {target.os_name}); remove the field "
                                 "or name a source"])

    flags += stock_install_dirs(resolved, merged, work_dir)
    user_files = [_rel(checkout, l.path) for l in user_layers]
    all_layers = layers + [VarLayer(work_dir / "build-vars.json", "generated")] + user_layers
    normalised = {l.path: work_dir / "var-files" / f"{i:02d}-{l.path.name}"
                  for i, l in enumerate(all_layers)
                  if l.path in file_data
                  and (needs_normalising(file_data[l.path]) or l.path in rewritten)}
    return BuildPlan(
        checkout=checkout, target=target, action=action, knobs=knobs, flags=flags,
        layers=all_layers, merged=merged, generated=generated, flag_secrets=flag_secrets,
        normalised=normalised, work_dir=work_dir, artifact_dir=artifact,
        log_path=checkout.logs_dir / f"{target.task_name(action)}.log", file_data=file_data,
        options=options or BuildOptions(),
        # without a communicator no provisioner reaches the VM: goss would fail to upload
        goss_plugin=goss.find_plugin()
        if action == "build" and merged.get("communicator") != "none" else None,
        downloads=fetched.downloads,
        warnings=(no_effect_warnings(checkout, target, merged, user_files)
                  if not windows.is_windows(target) else [])
        + windows.family_warnings(checkout, target, merged.origin, merged.values, user_files),
    )


def _base_vmx(output_root: Path, build_name: str) -> Path:
    base = naming.base_vm_name(build_name)
    return naming.base_artifact_dir(output_root, build_name) / f"{base}.vmx"


def _var_files_hint(knobs: Knobs, path: Path) -> str:
    """Where a PACKER_VAR_FILES entry that could not be read came from; when
    it is part of a path with spaces that the split cut apart, say so."""
    words = knobs.packer_var_files_text.split()
    for i in range(len(words)):
        for j in range(i + 2, len(words) + 1):
            joined = Path(" ".join(words[i:j])).absolute()
            if joined.is_file() and path.name in " ".join(words[i:j]):
                return (f" (named in PACKER_VAR_FILES, which is split at spaces: {str(joined)!r} "
                        "exists; quote it: PACKER_VAR_FILES='\"my vars.json\" other.json')")
    return " (named in PACKER_VAR_FILES)"


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


_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.\d+")


def _value_checks(knobs: Knobs, merged: MergedVars, where: Callable[[str, str], str],
                  bad_fields: set[str]) -> list[str]:
    """Values that pass the schema but cannot work: sizes, versions, Flatcar's release."""
    problems: list[str] = []
    values = merged.resolved({"FLATCAR_CHANNEL": knobs.flatcar_channel,
                              "FLATCAR_VERSION": knobs.flatcar_version})
    distro = values.get("distro_name", "")
    memory_min, disk_min = OS_MINIMUMS.get(distro, DEFAULT_MINIMUMS)
    what = f"{distro} installs" if distro in OS_MINIMUMS else "installs"
    floors = (("cpu", MIN_CPU, "CPU"), ("cpu_cores", 1, "core per socket"),
              ("memory", memory_min, f"MiB of memory for {what}"),
              ("disk_size", disk_min, f"MiB of disk for {what}"))
    for key, floor, unit in floors:
        value = values.get(key, "").strip()
        if key in bad_fields or not value.isdigit() or int(value) >= floor:
            continue
        problems.append(f"{where(key, 'packer/packer-common.json')}: {key}: {value} is below "
                        f"the minimum of {floor} {unit}; set {key} to {floor} or more")
    semver, series = values.get("kubernetes_semver", ""), values.get("kubernetes_series", "")
    match = _SEMVER.match(semver)
    if match and series and "kubernetes_series" not in bad_fields \
            and series != f"v{match.group(1)}.{match.group(2)}":
        series_file = where("kubernetes_series", "packer/config/kubernetes.json")
        semver_file = where("kubernetes_semver", "packer/config/kubernetes.json")
        source = "" if semver_file == series_file else f" (set in {semver_file})"
        problems.append(f"{series_file}: kubernetes_series: {series} does not match "
                        f"kubernetes_semver {semver}{source}; set it to "
                        f"v{match.group(1)}.{match.group(2)}")
    if distro == "flatcar":
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
    if (all(values.get(k, "").strip().lower() == "true"
            for k in ("load_additional_components", "additional_s3", "additional_s3_ceph"))
            and not values.get("additional_s3_endpoint", "").strip()):
        problems.append(f"{where('additional_s3_ceph', '')}: additional_s3_ceph: Ceph RGW has no "
                        "default endpoint; set additional_s3_endpoint to its URL")
    return problems


def _environment_checks(knobs: Knobs, merged: MergedVars) -> list[str]:
    """What the environment must provide for this build."""
    problems = []
    if merged.get("distro_name") == "rhel":
        for var, value in (("RHSM_USER", knobs.rhsm_user), ("RHSM_PASS", knobs.rhsm_pass)):
            if not value:
                problems.append(f"environment: {var}: RHEL builds register with Red Hat "
                                f"Subscription Manager; export {var}")
    return problems


def _cross_checks(checkout: Checkout, target: Target, knobs: Knobs,
                  merged: MergedVars, bad_fields: set[str] = frozenset(),
                  action: str = "build") -> list[str]:
    """Rules that span files: required fields, either/or, versions, values, environment.

    Fields in ``bad_fields`` already have a schema problem: no second line for them.
    """
    problems: list[str] = []
    hv = target.hypervisor

    def where(key: str, default_file: str) -> str:
        """The file that set ``key``, or the one where the user should set it."""
        origin = merged.origin.get(key, TEMPLATE_DEFAULTS)
        if origin == "PACKER_FLAGS -var":
            return "PACKER_FLAGS"
        return default_file if origin == TEMPLATE_DEFAULTS else origin

    if hv.vsphere:
        vfile = f"ova/{hv.extra_var_file}"
        for key in VSPHERE_REQUIRED:
            if key not in bad_fields and not merged.get(key).strip():
                hint = " (or set VSPHERE_PASSWORD)" if key == "password" else ""
                problems.append(f"{where(key, vfile)}: {key}: is empty; set it{hint}")
        cluster, host = merged.get("cluster").strip(), merged.get("host").strip()
        if bool(cluster) == bool(host):
            state = "both are set" if cluster else "neither is set"
            problems.append(f"{vfile}: cluster/host: set exactly one of cluster or host "
                            f"({state}: cluster={cluster!r}, host={host!r})")
    # An empty source_path means the local-base VM: a prerequisite (prerequisites.py).
    if hv.name == "local-vmx" and merged.get("source_path") \
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
    problems += _value_checks(knobs, merged, where, bad_fields)
    problems += windows.problems(target, merged.resolved(knobs.packer_env()), where, action)
    return problems


def write_build_files(plan: BuildPlan) -> None:
    """Write what the build generates into its work directory, mode 0600.

    The generated var file carries the build's SSH password (and the vCenter
    password when it came from VSPHERE_PASSWORD); normalised copies stand in
    for var files holding JSON booleans or numbers, which Packer 1.x refuses;
    with the goss plugin installed, the template copy that runs goss.
    """
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    write_private_json(plan.generated_file, plan.generated)
    if plan.flag_secrets:
        write_private_json(plan.flag_secrets_file, plan.flag_secrets)
    if windows.is_windows(plan.target):
        windows.write_files(plan.checkout, plan.work_dir, plan.template,
                            plan.merged.resolved(plan.knobs.packer_env()), plan.goss_plugin)
    elif plan.goss_plugin:
        template = goss.template_with_goss(plan.checkout.node_template,
                                           plan.checkout.packer_dir / "goss" / "provisioner.json")
        write_private_json(plan.template, template)
    for original, copy in plan.normalised.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        data = plan.file_data[original]
        write_private_json(copy, {k: packer_string(v) for k, v in data.items()})
