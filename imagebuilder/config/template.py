"""The template's variables: which it declares, how values name them, where each one reaches.

A template names a variable with ``{{user `x`}}`` (``REFERENCE``). A variable reaches a
block (a builder, provisioner or post-processor) when the block's fields name it,
directly or through another variable's value (such as ``ansible_common_vars``, which
carries dozens of them to the playbooks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

#: How a template names a variable, ``{{user `x`}}`` (spaces inside the braces allowed, as
#: Packer allows them), and the environment, ``{{env `X`}}``: groups ``kind`` and ``name``.
#: Every reading of these references goes through this pattern and the helpers below.
REFERENCE = re.compile(r"\{\{\s*(?P<kind>user|env)\s+`(?P<name>[^`]+)`\s*\}\}")
#: A variable named inside any template expression, ``{{ split (user `x`) "," 0 }}`` too.
_USER_NAMED = re.compile(r"user\s+`(?P<name>[^`]+)`")
#: ``k={{user `x`}}`` and ``k="{{user `x`}}"``: a playbook variable a carrier value hands on.
_PAIR = re.compile(r'(?P<key>\w+)=(?P<quote>"?)' + REFERENCE.pattern + r"(?P=quote)")

#: Names upstream image-builder's shared config files carry that configure
#: other platforms only (or nothing at all): accepted, with a one-line warning
#: when a user's var file or flag sets them, never silently.
NO_EFFECT_HERE = {
    "amazon_ssm_agent_rpm": "AWS only (the SSM agent of Amazon Linux AMIs)",
    "boot_command": "upstream's Windows OVA boot keys; Linux OVA builds type "
                    "boot_command_prefix, boot_media_path and boot_command_suffix",
    "debug_tools": "upstream reads it only for Windows images and Azure's CLI "
                   "(providers role, Azure builds)",
    "kubernetes_apiserver_port": "upstream reads it only in Azure Linux's firewall task; "
                                 "the API server port is kubeadm's setting at cluster creation",
    "kubernetes_rpm_repo_arch": "declared in upstream's kubernetes.json but read by nothing "
                                "there either; kubernetes_rpm_repo names the repository",
}


def expand(text: str, values: Mapping[str, str], env: Mapping[str, str] | None = None) -> str:
    """``text`` with each ``{{user `x`}}`` replaced by ``values[x]`` (empty when unset) and,
    given ``env``, each ``{{env `X`}}`` by ``env[X]``; without ``env`` those stay as they are,
    as do Packer's own build-time variables (``{{ .HTTPIP }}``)."""
    def one(match: re.Match[str]) -> str:
        if match["kind"] == "user":
            return values.get(match["name"], "")
        return match[0] if env is None else env.get(match["name"], "")
    return REFERENCE.sub(one, text)


def packer_escape(value: str) -> str:
    """``value`` as a Packer JSON template must be given it to take it verbatim: Packer
    renders every variable's value as a Go template, so each ``{{`` is written as the
    action ``{{"{{"}}`` (which renders to ``{{``); the rest is plain text to it."""
    return value.replace("{{", '{{"{{"}}')


def playbook_pairs(carrier: str) -> list[tuple[str, str, bool]]:
    """The ``k={{user `x`}}`` pairs of a carrier value such as ``ansible_common_vars``, in
    order: (the pair as written, the variable ``x``, whether the reference is in quotes)."""
    return [(m[0], m["name"], bool(m["quote"])) for m in _PAIR.finditer(carrier)
            if m["kind"] == "user"]


def declared_variables(template: Path) -> dict[str, str]:
    """The user variables a Packer JSON template declares, with their defaults."""
    return dict(_declared(template, template.stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _declared(template: Path, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    # Planning a whole matrix reads the same template 78 times; read it once per change.
    return tuple(json.loads(template.read_text()).get("variables", {}).items())


def substitute(value: object, values: dict[str, str]) -> object:
    """``value`` with every ``{{user `x`}}`` replaced by ``values[x]``; Packer's own
    build-time variables (``{{ .HTTPIP }}``) are left as they are."""
    if isinstance(value, str):
        return expand(value, values)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


def for_builder(template: dict, builder: str, values: dict[str, str]) -> dict:
    """The blocks one build runs (its builder, the provisioners and post-processors that
    apply to it), with the variables filled in: each value where Packer puts it."""
    out: dict[str, list] = {"builders": [], "provisioners": [], "post-processors": []}
    for label, block in blocks(template):
        kind = label.split(":", 1)[0]
        if kind == "builder" and block.get("name") != builder:
            continue
        if kind != "builder" and not applies_to(block, builder):
            continue
        key = {"builder": "builders", "provisioner": "provisioners"}.get(kind, "post-processors")
        out[key].append(substitute(block, values))
    return out


def user_refs(value: object) -> set[str]:
    """Every ``{{user `x`}}`` name inside ``value`` (strings, lists and objects)."""
    return {m["name"] for m in _USER_NAMED.finditer(json.dumps(value))}


def blocks(template: dict) -> list[tuple[str, dict]]:
    """The template's blocks, each with a label: ``builder:<name>``, ``provisioner:<n>``..."""
    out = [(f"builder:{b.get('name', b['type'])}", b) for b in template.get("builders", [])]
    for i, p in enumerate(template.get("provisioners", [])):
        label = Path(p.get("playbook_file", "")).name or p.get("type")
        out.append((f"provisioner:{label or i}", p))
    if "error-cleanup-provisioner" in template:
        out.append(("provisioner:error-cleanup", template["error-cleanup-provisioner"]))
    for entry in template.get("post-processors", []):
        for pp in entry if isinstance(entry, list) else [entry]:
            out.append((f"post-processor:{pp.get('name', pp['type'])}", pp))
    return out


def applies_to(block: dict, builder: str) -> bool:
    """Whether a provisioner or post-processor runs for ``builder`` (only/except)."""
    if "only" in block and builder not in block["only"]:
        return False
    return builder not in block.get("except", [])


def reach(template: dict, values: dict[str, str], builder: str | None = None,
          skip: Iterable[str] = ()) -> dict[str, set[str]]:
    """Variable -> the labels of the blocks it reaches (for one ``builder``, or all).

    ``values`` are the variables' values (template defaults overlaid with the
    var files): a value naming ``{{user `y`}}`` makes ``y`` reach wherever the
    variable holding it does. Blocks labelled in ``skip`` (e.g. a post-processor
    the build excludes) are left out.
    """
    direct: dict[str, set[str]] = {}
    for label, block in blocks(template):
        if label in skip:
            continue
        if label.startswith("builder:"):
            if builder and block.get("name") != builder:
                continue
            block = {k: v for k, v in block.items() if k not in ("name", "type")}
        elif builder and not applies_to(block, builder):
            continue
        for name in user_refs(block):
            direct.setdefault(name, set()).add(label)
    result = {name: set(labels) for name, labels in direct.items()}
    changed = True
    while changed:  # a variable reaches whatever the variables quoting it reach
        changed = False
        for holder, value in values.items():
            targets = result.get(holder)
            if not targets:
                continue
            for name in user_refs(value):
                if not targets <= result.setdefault(name, set()):
                    result[name] |= targets
                    changed = True
    return result
