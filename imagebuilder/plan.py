"""Turning a target into a checked Packer invocation, before anything runs.

``plan_build`` reads every var file in the upstream order, checks them all
(schemas, undeclared variables, cross-field rules, required environment) and
reports every problem at once as one InputError (exit code 2). What it
returns holds the exact argv, the per-build generated values and the paths of
the build's own working directory; nothing has been written yet.
"""

from __future__ import annotations

import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, goss, naming
from .baseinputs import inputs_hash
from .catalog import Target
from .checkout import Checkout
from .errors import InputError
from .files import write_private_json
from .knobs import Knobs
from .layering import (
    FlagVar,
    MergedVars,
    VarLayer,
    merge,
    needs_normalising,
    packer_string,
    read_var_file,
    split_packer_flags,
)
from .validation import (
    declared_variables,
    is_true,
    schema_problems,
    undeclared_problems,
)

#: Variables whose values are secrets: never on argv, never in a log line.
SECRET_VARIABLES = frozenset({"password", "ssh_password", "rhsm_pass", "vsphere_password"})

#: vsphere.json fields every vsphere target needs (datacenter may be omitted
#: when the vCenter has exactly one; folder and resource_pool are optional).
VSPHERE_REQUIRED = ("vcenter_server", "username", "password", "datastore", "network")

#: The name Packer's vSphere builders give the snapshot of create_snapshot.
PACKER_SNAPSHOT = "Created by Packer"

#: Where a value comes from when no var file sets it.
TEMPLATE_DEFAULTS = "packer/node.json"

SCHEMA_OF_ROLE = {"os": "os", "common": "var-file", "packer-common": "var-file",
                  "flags": "var-file", "user": "var-file"}


#: The build options as flags, with the help both front ends show.
OPTION_HELP = {
    "force": "replace an existing VM or template that has the build's name",
    "prepare-template": "give a linked clone's source template the snapshot it needs",
    "keep-on-failure": "leave a failed build's VM in vCenter for inspection",
    "no-deps": "refuse, instead of building a missing or stale base image first",
}


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked of a build beyond its configuration (see OPTION_HELP)."""

    force: bool = False
    prepare_template: bool = False
    keep_on_failure: bool = False
    no_deps: bool = False


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
        values |= {v for v in (self.knobs.rhsm_pass, self.knobs.vsphere_password) if v}
        return sorted((v for v in values if v), key=len, reverse=True)

    @property
    def exports(self) -> bool:
        """Whether Packer exports the VM (OVF + disks) for the OVA; vSphere builds
        with ``export_ovf`` false leave only the VM or template in vCenter."""
        hv = self.target.hypervisor
        return not hv.base and not (hv.vsphere and not is_true(self.merged.get("export_ovf", "true")))

    @property
    def builder(self) -> str:
        """The template's builder for this plan (``-only``)."""
        hv = self.target.hypervisor
        return hv.builder if self.exports or not hv.vsphere or hv.base else f"{hv.builder}-noexport"

    @property
    def template(self) -> Path:
        """The template Packer runs: the source one, or the build's own copy
        with the goss provisioner when the plugin is installed (see goss.py)."""
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
    problems: list[str] = []
    hv = target.hypervisor
    flags, flag_files, flag_vars = split_packer_flags(knobs.derived_packer_flags(action == "build"))
    flag_vars, flag_secrets = _flag_vars_and_secrets(flag_vars)
    flags = _strip_secret_flags(flags)

    os_file = checkout.os_file(target.os_name)
    if not os_file.is_file():
        raise InputError(f"{_rel(checkout, os_file)}: no such OS file; known OSes: "
                         + ", ".join(checkout.os_names()))
    layers = [VarLayer(p, "common") for p in checkout.common_var_files()]
    layers += [VarLayer(p, "flags") for p in flag_files]
    layers += [VarLayer(checkout.packer_common, "packer-common"), VarLayer(os_file, "os")]
    if hv.extra_var_file:
        layers.append(VarLayer(checkout.ova_dir / hv.extra_var_file, "hypervisor"))
    user_layers = [VarLayer(p, "user") for p in knobs.packer_var_files]

    declared = declared_variables(checkout.node_template)
    file_data: dict[Path, dict] = {}
    for layer in layers + user_layers:
        where = _rel(checkout, layer.path)
        try:
            data = read_var_file(layer.path, where)
        except InputError as exc:
            hint = " (named in PACKER_VAR_FILES)" if layer.role == "user" else ""
            problems.append(exc.message + hint)
            continue
        file_data[layer.path] = data
        kind = SCHEMA_OF_ROLE.get(layer.role) or layer.path.stem
        problems += schema_problems(kind, data, where)
        problems += undeclared_problems(list(data), declared, where)
    problems += undeclared_problems([fv.name for fv in flag_vars] + list(flag_secrets),
                                    declared, "PACKER_FLAGS")

    ordered = [(TEMPLATE_DEFAULTS, declared)]
    ordered += [(_rel(checkout, l.path), file_data[l.path])
               for l in layers + user_layers if l.path in file_data]
    merged = merge(ordered, flag_vars)
    for key, value in flag_secrets.items():
        merged.values[key] = value
        merged.origin[key] = "PACKER_FLAGS -var"
    if knobs.vsphere_password and hv.vsphere:
        merged.values["password"] = knobs.vsphere_password
        merged.origin["password"] = "VSPHERE_PASSWORD"

    problems += _cross_checks(checkout, target, knobs, merged)
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
        "ssh_password": secrets.token_urlsafe(24),
    }
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
    # Generated values fill in; they never override what a var file or flag sets.
    generated = {k: v for k, v in generated.items()
                 if not merged.get(k) or (k == "password" and knobs.vsphere_password)}
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

    all_layers = layers + [VarLayer(work_dir / "build-vars.json", "generated")] + user_layers
    normalised = {l.path: work_dir / "var-files" / f"{i:02d}-{l.path.name}"
                  for i, l in enumerate(all_layers)
                  if l.path in file_data and needs_normalising(file_data[l.path])}
    return BuildPlan(
        checkout=checkout, target=target, action=action, knobs=knobs, flags=flags,
        layers=all_layers, merged=merged, generated=generated, flag_secrets=flag_secrets,
        normalised=normalised, work_dir=work_dir, artifact_dir=artifact,
        log_path=checkout.logs_dir / f"{target.task_name(action)}.log", file_data=file_data,
        options=options or BuildOptions(),
        # without a communicator no provisioner reaches the VM: goss would fail to upload
        goss_plugin=goss.find_plugin()
        if action == "build" and merged.get("communicator") != "none" else None,
    )


def _base_vmx(output_root: Path, build_name: str) -> Path:
    base = naming.base_vm_name(build_name)
    return naming.base_artifact_dir(output_root, build_name) / f"{base}.vmx"


def _cross_checks(checkout: Checkout, target: Target, knobs: Knobs,
                  merged: MergedVars) -> list[str]:
    """Rules that span files: required fields, either/or, versions, environment."""
    problems: list[str] = []
    hv = target.hypervisor

    def where(key: str, default_file: str) -> str:
        """The file that set ``key``, or the one where the user should set it."""
        origin = merged.origin.get(key, TEMPLATE_DEFAULTS)
        return default_file if origin == TEMPLATE_DEFAULTS else origin

    if hv.vsphere:
        vfile = f"ova/{hv.extra_var_file}"
        for key in VSPHERE_REQUIRED:
            if not merged.get(key).strip():
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
    if merged.get("distro_name") == "rhel":
        for var, value in (("RHSM_USER", knobs.rhsm_user), ("RHSM_PASS", knobs.rhsm_pass)):
            if not value:
                problems.append(f"environment: {var}: RHEL builds register with Red Hat "
                                f"Subscription Manager; export {var}")
    for var, path in (("SSH_PRIVATE_KEY_FILE", knobs.ssh_private_key_file),
                      ("SSH_PUBLIC_KEY_FILE", knobs.ssh_public_key_file)):
        if path and not Path(path).is_file():
            problems.append(f"environment: {var}: {path} does not exist")
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
    if plan.goss_plugin:
        template = goss.template_with_goss(plan.checkout.node_template,
                                           plan.checkout.packer_dir / "goss" / "provisioner.json")
        write_private_json(plan.template, template)
    for original, copy in plan.normalised.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        data = plan.file_data[original]
        write_private_json(copy, {k: packer_string(v) for k, v in data.items()})
