"""No silent ignores: every variable the template declares has an effect somewhere.

A declared variable must reach a field of a builder, provisioner or
post-processor of ``packer/node.json`` (directly or through another
variable's value, as ``ansible_common_vars`` carries names to the
playbooks), and when it reaches only the playbooks, a task, template or
playbook of ``packer/ansible/`` must read the name it arrives under. The
only exceptions are imagebuilder's own inputs (naming, downloads, install
files) and the names it warns about as having no effect on OVA builds.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from helpers.common import REPO

from imagebuilder.config.checkout import COMMON_VAR_FILES, Checkout
from imagebuilder.config.template import NO_EFFECT_HERE, reach
from imagebuilder.config.upstream import PLANNER_INPUTS
from imagebuilder.planning import goss
from imagebuilder.planning.install_files import template_variables

ANSIBLE_CARRIERS = ("ib_ansible_vars", "ansible_common_vars", "ansible_extra_vars", "ansible_user_vars")


def template() -> dict:
    return goss.template_with_goss(REPO / "packer" / "node.json",
                                   REPO / "packer" / "goss" / "provisioner.json")


def values() -> dict[str, str]:
    """Every value each variable has in the template and the checkout's var files,
    joined: what one variable quotes anywhere (e.g. an OS file's boot command) counts."""
    files = [REPO / "packer" / "config" / name for name in COMMON_VAR_FILES]
    files += [REPO / "packer" / "packer-common.json", *sorted((REPO / "ova").glob("*.json"))]
    data = dict(json.loads((REPO / "packer" / "node.json").read_text())["variables"])
    for path in files:
        for key, value in json.loads(path.read_text()).items():
            data[key] = f"{data[key]} {value}" if key in data and key in _JOINED else value
    return data


#: Variables whose values differ per OS file: all of them count.
_JOINED = ("boot_command_prefix", "boot_command_suffix", "boot_media_path", "iso_url",
           "iso_checksum", "distro_version", "ansible_extra_vars", "build_name")


def ansible_names() -> dict[str, set[str]]:
    """packer variable -> the extra-vars names it reaches the playbooks under (directly,
    or inside another variable's value, as kubernetes_series inside kubernetes_deb_repo)."""
    out: dict[str, set[str]] = {}
    merged = values()
    for carrier in ANSIBLE_CARRIERS:
        text = re.sub(r"\{\{\s*user\s+`([^`]+)`\s*\}\}", r"@@\1@@", merged.get(carrier, ""))
        for token in shlex.split(text):
            key, _, value = token.partition("=")
            for name in re.findall(r"@@([^@]+)@@", value):
                out.setdefault(name, set()).add(key)
    changed = True
    while changed:  # a variable quoted in another's value arrives inside that one
        changed = False
        for holder, value in merged.items():
            for name in re.findall(r"user\s+`([^`]+)`", value):
                if name != holder and not out.get(holder, set()) <= out.setdefault(name, set()):
                    out[name] |= out[holder]
                    changed = True
    return out


def role_text() -> str:
    """What the playbooks read: tasks, templates, vars, playbooks (role defaults
    only declare a name, they do not use it)."""
    parts = []
    for path in sorted((REPO / "packer" / "ansible").rglob("*")):
        if path.is_file() and "defaults" not in path.parts and path.suffix in (".yml", ".yaml", ".j2"):
            parts.append(path.read_text())
    return "\n".join(parts)


def role_reads(name: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def unconsumed() -> dict[str, str]:
    """Declared variables with no consumer, and why."""
    declared = json.loads((REPO / "packer" / "node.json").read_text())["variables"]
    reached = reach(template(), values())
    via_ansible = ansible_names()
    install = template_variables(Checkout(REPO))
    text = role_text()
    missing = {}
    for name in declared:
        if name in PLANNER_INPUTS or name in install or name in NO_EFFECT_HERE:
            continue
        labels = reached.get(name, set())
        if not labels:
            missing[name] = "reaches no builder, provisioner or post-processor"
            continue
        if any(not label.startswith("provisioner:") or "goss" in label for label in labels):
            continue  # a builder, post-processor or the goss provisioner takes it
        if name in via_ansible and not any(role_reads(key, text) for key in via_ansible[name]):
            missing[name] = ("reaches the playbooks as " + ", ".join(sorted(via_ansible[name]))
                             + " but no role task, template or playbook reads it")
        # else it is a field of a provisioner itself (user, ansible_env_vars, ...)
    return missing


def test_every_declared_variable_has_an_effect():
    missing = unconsumed()
    assert not missing, "\n".join(f"{k}: {v}" for k, v in sorted(missing.items()))


@pytest.mark.parametrize("name", sorted(NO_EFFECT_HERE))
def test_no_effect_names_are_accepted_with_a_warning(checkout, tmp_path, name):
    from helpers.common import write_json
    from helpers.planning import plan_for

    extra = write_json(tmp_path / "shared.json", {name: "something"})
    plan = plan_for(checkout, "build-node-ova-local-ubuntu-2204", var_files=[extra])
    [line] = [w for w in plan.warnings if name in w]
    assert line.startswith(f"{extra}: {name}: has no effect on OVA builds")
    assert "\n" not in line
