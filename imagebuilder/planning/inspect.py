"""What a build would do, shown without running it: the dry run and the render output.

A dry run (``--dry-run``) prints each target's exact Packer command with the files
and values around it (``describe_plan``, ``dry_run_plans``).

``render`` (``python -m imagebuilder render``, ``invoke render``) plans the target
without building (problems such as missing vCenter settings are tolerated), renders
its install files and writes the resolved variables, secrets redacted:

    DIR/http/...                  what Packer's HTTP server would serve (ks.cfg, ...)
    DIR/cidata/...                what the "cidata" CD would hold (user-data, ...)
    DIR/packer-variables.json     every Packer variable, resolved
    DIR/ansible-vars.json         the variables the playbooks receive, parsed
    DIR/packer-blocks.json        the build's builder, provisioners and post-processors
                                  with every variable filled in (each value where it goes)
    DIR/downloads.json            what the roles download: URL, version, checksum
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import IO

from imagebuilder.config.catalog import Target, parse_target
from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.template import for_builder
from imagebuilder.errors import InputError
from imagebuilder.files import write_file
from imagebuilder.planning import goss, windows
from imagebuilder.planning.install_files import install_values, render_into
from imagebuilder.planning.plan import BuildPlan, plan_build
from imagebuilder.planning.rules import raise_target_problems
from imagebuilder.redaction import REDACTED, SECRET_VARIABLES, Redactor

#: The ``--extra-vars`` arguments of node.json's ansible provisioners, in order.
ANSIBLE_EXTRA_VARS = ("ib_ansible_vars", "ansible_common_vars", "ib_communicator={{communicator}}",
                      "ansible_extra_vars", "ansible_user_vars")


def parse_extra_vars(text: str) -> dict[str, str]:
    """``k=v k2="v 2"`` as ansible-playbook reads one ``--extra-vars`` argument."""
    try:
        from ansible.parsing.splitter import parse_kv
    except ImportError:  # ansible is not installed here: the same rules, near enough
        pairs = (tok.partition("=") for tok in shlex.split(text))
        return {k: v for k, sep, v in pairs if sep}
    return {k: str(v) for k, v in parse_kv(text).items() if k != "_raw_params"}


def ansible_vars(values: dict[str, str]) -> dict[str, str]:
    """The variables the playbooks get from Packer, later arguments winning."""
    out: dict[str, str] = {}
    for source in ANSIBLE_EXTRA_VARS:
        if source.startswith("ib_communicator="):
            out["ib_communicator"] = values.get("communicator", "")
        else:
            out.update(parse_extra_vars(values.get(source, "")))
    return out


def describe_plan(plan: BuildPlan) -> str:
    """What a dry run prints for one plan: the exact command, with nothing secret in it."""
    redact = Redactor(plan.secret_values)
    lines = [f"# {plan.target.task_name(plan.action)}",
             f"# working directory: {plan.checkout.root}",
             f"# output: {plan.artifact_dir}",
             f"# log: {plan.log_path}"]
    shown = redact.variables(plan.generated)
    if "ib_ansible_vars" in shown:
        shown["ib_ansible_vars"] = \
            f"<{len(plan.generated['ib_ansible_vars'].split())} playbook variables>"
    generated = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    lines.append(f"# generated var file {plan.generated_file} (0600): {generated}")
    for original, copy in plan.normalised.items():
        lines.append(f"# {copy} = {original} with its values as strings (Packer needs strings)")
    for download in plan.downloads:
        lines.append(f"# download: {download.line()}")
    for warning in plan.warnings:
        lines.append(f"# warning: {warning}")
    if plan.knobs.ansible_scp_extra_args:
        lines.append(f"ANSIBLE_SCP_EXTRA_ARGS={plan.knobs.ansible_scp_extra_args} \\")
    lines.append(plan.command_line())
    return redact.text("\n".join(lines))


def dry_run_plans(targets: list[Target], action: str, out: IO[str],
                  checkout: Checkout, knobs: Knobs | None = None) -> None:
    """Print each target's command; then raise the problems of all of them, if any.

    The command is printed even for a target whose configuration has
    problems, so that the layering can be seen on a fresh checkout.
    """
    knobs = knobs or Knobs.from_env()
    found = []
    for target in targets:
        try:
            plan = plan_build(checkout, target, knobs, action)
        except InputError as exc:
            found.append((target.task_name(action), exc.problems or [exc.message]))
            print(f"# NOT RUNNABLE: {len(found[-1][1])} problem(s), listed at the end", file=out)
            try:
                plan = plan_build(checkout, target, knobs, action, strict=False)
            except InputError:
                continue  # not even its files can be named (no such OS file)
        print(describe_plan(plan), file=out)
    raise_target_problems(found, len(targets))


def render_target(target_name: str, output_dir: Path,
                  checkout: Checkout | None = None, knobs: Knobs | None = None) -> list[Path]:
    """Write ``target_name``'s install files and resolved variables into ``output_dir``.

    Nothing is built and the build's own work directory is not touched.
    Returns the files written.
    """
    checkout = checkout or find_checkout()
    knobs = knobs or Knobs.from_env()
    target = parse_target(target_name, checkout.os_names())
    plan = plan_build(checkout, target, knobs, "build", strict=False)
    output_dir = Path(output_dir)
    values = install_values(plan)
    written = render_into(plan, values, output_dir / "http", output_dir / "cidata")
    redact = Redactor(plan.secret_values)
    del values["ssh_password_hash"]
    for name, data in (("packer-variables.json", values),
                       ("ansible-vars.json", ansible_vars(values)),
                       ("packer-blocks.json", _blocks(plan, values)),
                       ("downloads.json", [{"name": d.name, "version": d.version, "url": d.url,
                                            "checksum": d.checksum, "checksum_source": d.source}
                                           for d in plan.downloads])):
        path = write_file(output_dir / name,
                          json.dumps(redact.data(data), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def _blocks(plan: BuildPlan, values: dict[str, str]) -> dict[str, list]:
    """The blocks the build runs with every variable filled in; secret variables are
    filled in as ``<sensitive>`` (a secret may sit inside a longer field)."""
    template = json.loads(plan.checkout.node_template.read_text())
    if windows.is_windows(plan.target):
        template = windows.build_template(plan.checkout, values, plan.goss_plugin)
    elif plan.goss_plugin:
        template = goss.template_with_goss(plan.checkout.node_template,
                                           plan.checkout.packer_dir / "goss" / "provisioner.json")
    hidden = {k: (REDACTED if v else "") if k in SECRET_VARIABLES else v for k, v in values.items()}
    return for_builder(template, plan.builder, hidden)
