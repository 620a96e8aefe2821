"""Turning a target into a checked Packer invocation, before anything runs.

``plan_build`` reads every var file in the upstream order, checks them all
(schemas, undeclared variables, cross-field rules, required environment) and
reports every problem at once as one InputError (exit code 2). What it
returns holds the exact argv, the per-build generated values and the paths of
the build's own working directory; nothing has been written yet.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.config.catalog import Target
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.options import BuildOptions
from imagebuilder.config.template import declared_variables, packer_escape
from imagebuilder.config.upstream import (
    TEMPLATE_DEFAULTS,
    set_pairs,
    stock_install_dirs,
    unwrap_quoted,
)
from imagebuilder.config.varfiles import (
    MergedVars,
    VarLayer,
    needs_normalising,
    packer_string,
)
from imagebuilder.files import private_dir, write_private_json
from imagebuilder.planning import downloads, goss, packer_secrets, windows
from imagebuilder.planning.base_inputs import inputs_hash
from imagebuilder.planning.downloads import Download
from imagebuilder.planning.generated_names import (  # noqa: F401 (PACKER_SNAPSHOT)
    PACKER_SNAPSHOT,
    generated_values,
    output_names,
    overlay_generated,
    value_problems,
    vm_name_problems,
)
from imagebuilder.planning.inputs import (
    merge_inputs,
    packer_flags,
    read_var_files,
    shown,
    var_file_layers,
)
from imagebuilder.planning.rules import (
    cd_content_problems,
    cross_checks,
    environment_checks,
    knob_problems,
    kubernetes_package_problems,
    no_effect_warnings,
    output_dir_problems,
    problems_error,
    source_problems,
    undeclared_in_inputs,
    where_set,
)
from imagebuilder.redaction import SECRET_VARIABLES


@dataclass
class BuildPlan:
    """Everything a run of Packer for one target needs, checked and resolved."""

    checkout: Checkout
    target: Target
    #: "build" or "validate": the Packer command this plan runs.
    action: str
    knobs: Knobs
    #: PACKER_FLAGS and the knobs' flags, one token each, without secrets.
    flags: list[str]
    #: Every -var-file in the upstream order, the generated one included.
    layers: list[VarLayer]
    #: The variables Packer will see (generated ones included), and their origins.
    merged: MergedVars
    #: The values this build generates for itself (build-vars.json, written 0600).
    generated: dict[str, str]
    #: Secrets Packer reads from a 0600 var file after every other one (PACKER_FLAGS'
    #: ``-var`` secrets, the vCenter password, the Windows password), never from argv.
    flag_secrets: dict[str, str]
    #: Var file -> its string-only copy in the work directory (what Packer reads).
    normalised: dict[Path, Path]
    #: The build's own working directory (rendered files, secrets, copies).
    work_dir: Path
    #: Where the build's output (OVA, disks, manifest) goes.
    artifact_dir: Path
    log_path: Path
    #: The contents of every var file read, by path.
    file_data: dict[Path, dict[str, object]] = field(default_factory=dict, repr=False)
    options: BuildOptions = field(default_factory=BuildOptions)
    #: The goss provisioner plugin, when installed and the build can run it.
    goss_plugin: Path | None = None
    #: What the roles download, with where each checksum comes from.
    downloads: list[Download] = field(default_factory=list)
    #: Accepted settings that have no effect here: shown, never silent.
    warnings: list[str] = field(default_factory=list)
    #: Builder fields the build's template copy sets as literals (packer_secrets.py).
    template_secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def generated_file(self) -> Path:
        """The generated var file (mode 0600: it holds the build's SSH password)."""
        return self.work_dir / "build-vars.json"

    @property
    def flag_secrets_file(self) -> Path:
        """The var file (0600) carrying the ``-var`` secrets of PACKER_FLAGS."""
        return self.work_dir / "flag-secrets.json"

    @property
    def http_dir(self) -> Path:
        """What Packer's HTTP server serves the installer (kickstart, ignition...)."""
        return self.work_dir / "http"

    @property
    def cd_dir(self) -> Path:
        """What goes on the "cidata" CD (cloud-init's user-data, cd_content_location)."""
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
        values |= set(self.template_secrets.values())
        values |= {packer_escape(v) for v in values}  # as the files Packer reads hold them
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
        with the goss provisioner when the plugin is installed (see goss.py); a
        Windows build always runs its own copy of windows.json (see windows.py)."""
        if windows.is_windows(self.target):
            return self.work_dir / windows.TEMPLATE
        if self.goss_plugin or self.template_secrets:
            return self.work_dir / "node.json"
        return self.checkout.node_template

    def var_file_arg(self, layer: VarLayer) -> str:
        """The ``-var-file`` flag of ``layer``: its string-only copy where it has one."""
        return f"-var-file={self.normalised.get(layer.path, layer.path)}"

    def argv(self, packer: str = "packer") -> list[str]:
        """The Packer command, in the upstream Makefile's order. Holds no secret."""
        argv = [packer, self.action]

        def by_role(*roles: str) -> list[str]:
            return [self.var_file_arg(layer) for layer in self.layers if layer.role in roles]

        argv += by_role("common")
        argv += self.flags
        argv += by_role("packer-common", "os", "hypervisor", "generated")
        argv.append("-except=ova,custom-post-processor")  # our build steps (running/post_steps.py)
        argv.append(f"-only={self.builder}")
        argv += by_role("user")
        if self.flag_secrets:
            argv.append(f"-var-file={self.flag_secrets_file}")
        argv.append(str(self.template))
        return argv

    def command_line(self, packer: str = "packer") -> str:
        """The argv as a shell would need it typed; safe to print."""
        return shlex.join(self.argv(packer))


def plan_build(checkout: Checkout, target: Target, knobs: Knobs,
               action: str = "build", now: float | None = None,
               strict: bool = True, options: BuildOptions | None = None) -> BuildPlan:
    """Check every input of ``target`` and resolve its Packer invocation.

    The phases: read the var files in the upstream order, check them, merge them,
    generate the per-build values, name the outputs. Raises InputError listing every
    problem found (exit code 2). With ``strict=False`` problems are ignored: enough
    to know where a build's files go (for cleaning), not enough to run it.
    """
    flags = packer_flags(knobs, action)
    layers, user_layers = var_file_layers(checkout, target, knobs, flags.var_files)
    problems = flags.problems + knob_problems(knobs, action == "build")
    if strict:
        problems += output_dir_problems(checkout)
    read = read_var_files(checkout, target, knobs, layers + user_layers)
    declared = declared_variables(windows.template_path(checkout, target))
    problems += read.problems + undeclared_in_inputs(
        read.named, flags.public_variables(), list(flags.secret_variables()), declared,
        windows.other_family_names(checkout, target))
    rewritten = unwrap_quoted(read.data, declared)
    merged = merge_inputs(target, knobs, read, declared, flags)
    resolved = merged.resolved(knobs.packer_env())

    def origin(key: str) -> str:
        return merged.origin.get(key, TEMPLATE_DEFAULTS)

    resolve = windows.resolve_downloads if windows.is_windows(target) else downloads.resolve
    fetched = resolve(resolved, origin, lambda key: origin(key) != TEMPLATE_DEFAULTS)
    # A file that could not be read leaves the merged view incomplete: rules
    # over it would report fields "empty" that the file may well set.
    if not read.unreadable:
        problems += cross_checks(target, knobs, merged, read.bad_fields)
        problems += windows.problems(target, resolved, where_set(merged), action)
    problems += environment_checks(knobs, merged) + fetched.problems
    if not windows.is_windows(target):  # Windows installs binaries, no packages
        problems += kubernetes_package_problems(resolved, origin)
    problems += cd_content_problems(resolved, origin("cd_content_location"), checkout.root)
    problems += value_problems(checkout, target, merged, resolved, action)
    problems += packer_secrets.secret_problems(target, merged, knobs)
    if problems and strict:
        raise problems_error(target.task_name(action), problems)

    work_dir = checkout.work_root / target.name
    vm_name, artifact, vm_source = output_names(checkout, target, merged, resolved)
    generated = generated_values(checkout, target, knobs, merged, vm_name, artifact, work_dir,
                                 time.time() if now is None else now)
    generated.update(fetched.values)
    if windows.is_windows(target):
        generated.update(windows.generated(work_dir, resolved))
    generated["ib_ansible_vars"] = set_pairs(declared.get("ib_ansible_vars", ""),
                                             {**resolved, **fetched.values})
    if target.hypervisor.base:
        os_keys = list(read.data.get(checkout.os_file(target.os_name), {}))
        generated["base_inputs_hash"] = inputs_hash(checkout.root, merged.values, os_keys,
                                                    target.hypervisor.builder)
    generated = overlay_generated(checkout, knobs, merged, generated, user_layers)
    late = source_problems(target, merged) + vm_name_problems(merged, vm_source)
    if late and strict:
        raise problems_error(target.task_name(action), late)

    all_layers = layers + [VarLayer(work_dir / "build-vars.json", "generated")] + user_layers
    read_last, literal = packer_secrets.secrets_read_last(target, merged, {
        **flags.secret_variables(), **windows.env_secrets(knobs.windows_admin_password, target)})
    return BuildPlan(
        checkout=checkout, target=target, action=action, knobs=knobs,
        flags=flags.public_flags() + stock_install_dirs(resolved, merged, work_dir),
        layers=all_layers, merged=merged, generated=generated,
        flag_secrets=read_last, template_secrets=literal,
        normalised=_normalised(all_layers, read.data, rewritten, work_dir),
        work_dir=work_dir, artifact_dir=artifact,
        log_path=checkout.logs_dir / f"{target.task_name(action)}.log", file_data=read.data,
        options=options or BuildOptions(),
        # without a communicator no provisioner reaches the VM: goss would fail to upload
        goss_plugin=goss.find_plugin()
        if action == "build" and merged.get("communicator") != "none" else None,
        downloads=fetched.downloads,
        warnings=_warnings(checkout, target, merged, user_layers),
    )


def _warnings(checkout: Checkout, target: Target, merged: MergedVars,
              user_layers: list[VarLayer]) -> list[str]:
    """Accepted settings that have no effect on this target (Windows: the other family's).
    The var files imagebuilder writes itself (the simulator's, under the work root) are
    not the user's: what they set for every target warns about nothing."""
    work = checkout.work_root.resolve()
    user_files = [shown(checkout, layer.path) for layer in user_layers
                  if not layer.path.resolve().is_relative_to(work)]
    found = [] if windows.is_windows(target) else \
        no_effect_warnings(checkout, target, merged, user_files)
    return found + windows.family_warnings(checkout, target, merged.origin, merged.values,
                                           user_files)


def _normalised(layers: list[VarLayer], file_data: dict[Path, dict[str, object]],
                rewritten: set[Path], work_dir: Path) -> dict[Path, Path]:
    """Where the string-only copies of var files go: Packer 1.x refuses other values,
    and upstream's quoted lists reach it rewritten (see upstream.unwrap_quoted)."""
    return {layer.path: work_dir / "var-files" / f"{i:02d}-{layer.path.name}"
            for i, layer in enumerate(layers)
            if layer.path in file_data
            and (needs_normalising(file_data[layer.path]) or layer.path in rewritten)}


def write_build_files(plan: BuildPlan) -> None:
    """Write what the build generates into its work directory, mode 0600.

    The generated var file carries the build's SSH password (and the vCenter
    password when it came from VSPHERE_PASSWORD); normalised copies stand in
    for var files holding JSON booleans or numbers, which Packer 1.x refuses;
    with the goss plugin installed, the template copy that runs goss.
    """
    private_dir(plan.work_dir)
    write_private_json(plan.generated_file, plan.generated)
    if plan.flag_secrets:
        write_private_json(plan.flag_secrets_file, plan.flag_secrets)
    if windows.is_windows(plan.target):
        windows.write_files(plan.checkout, plan.work_dir, plan.template,
                            plan.merged.resolved(plan.knobs.packer_env()), plan.goss_plugin)
    elif plan.goss_plugin or plan.template_secrets:
        template = goss.template_with_goss(plan.checkout.node_template,
                                           plan.checkout.packer_dir / "goss" / "provisioner.json") \
            if plan.goss_plugin else json.loads(plan.checkout.node_template.read_text())
        write_private_json(plan.template, template)
    if plan.template_secrets:  # the copy holds them: 0600, gone once Packer has read it
        write_private_json(plan.template, packer_secrets.with_literals(
            json.loads(plan.template.read_text()), plan.template_secrets))
    for original, copy in plan.normalised.items():
        private_dir(copy.parent)
        data = plan.file_data[original]
        write_private_json(copy, {k: packer_string(v) for k, v in data.items()})
