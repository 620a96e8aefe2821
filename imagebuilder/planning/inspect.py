"""``python -m imagebuilder render``: what a build would use, written out for inspection.

Plans the target without building (problems such as missing vCenter settings
are tolerated), renders its install files and writes the resolved variables,
secrets redacted:

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

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.template import for_builder
from imagebuilder.planning import goss, windows
from imagebuilder.planning.install_files import install_values, render_into
from imagebuilder.planning.plan import SECRET_VARIABLES, BuildPlan, plan_build
from imagebuilder.running.packer import REDACTED

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


def redact(values: dict[str, str], plan: BuildPlan) -> dict[str, str]:
    """``values`` without secrets: secret variables and any secret inside a value."""
    secrets = plan.secret_values
    out = {}
    for key, value in values.items():
        if key in SECRET_VARIABLES:
            out[key] = REDACTED if value else ""
            continue
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        out[key] = value
    return out


def _redact_text(text: str, plan: BuildPlan) -> str:
    for secret in plan.secret_values:
        text = text.replace(json.dumps(secret)[1:-1], REDACTED)
    return text


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
    public = redact({k: v for k, v in values.items() if k != "ssh_password_hash"}, plan)
    template = json.loads(plan.checkout.node_template.read_text())
    if windows.is_windows(plan.target):
        template = windows.build_template(plan.checkout, values, plan.goss_plugin)
    elif plan.goss_plugin:
        template = goss.template_with_goss(plan.checkout.node_template,
                                           plan.checkout.packer_dir / "goss" / "provisioner.json")
    hidden = {k: (REDACTED if v else "") if k in SECRET_VARIABLES else v for k, v in values.items()}
    blocks = json.loads(json.dumps(for_builder(template, plan.builder, hidden)))
    blocks = json.loads(_redact_text(json.dumps(blocks), plan))
    fetched = [{"name": d.name, "version": d.version, "url": d.url, "checksum": d.checksum,
                "checksum_source": d.source} for d in plan.downloads]
    for name, data in (("packer-variables.json", public),
                       ("ansible-vars.json", redact(ansible_vars(values), plan)),
                       ("packer-blocks.json", blocks), ("downloads.json", fetched)):
        path = output_dir / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
