"""How a build's secrets reach Packer: a 0600 var file read last, never argv, and
verbatim, whatever they hold.

Packer 1.x renders every variable's value as a Go template, twice (once when it reads
the var files, once more when each builder, provisioner and post-processor decodes
its settings), so a value holding ``{{`` is not what reaches a builder, or makes
Packer fail. Escaping survives the first rendering only. The vCenter password, which
preflight logs in with as it is, therefore reaches the vSphere builders as a literal
in the build's own copy of the template (rendered once; the copy is 0600 in the
private work directory, removed once Packer has read it), with the variable itself
left empty. Any other secret holding ``{{`` is refused before anything runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from imagebuilder.config.template import packer_escape
from imagebuilder.config.upstream import TEMPLATE_DEFAULTS
from imagebuilder.config.varfiles import MergedVars
from imagebuilder.planning import windows
from imagebuilder.redaction import SECRET_VARIABLES
from imagebuilder.vsphere.settings import VSphereSettings

if TYPE_CHECKING:
    from imagebuilder.config.catalog import Target
    from imagebuilder.config.knobs import Knobs

#: The secret a builder may take as a literal of the build's template copy.
LITERAL = "password"
#: How the template's builders name it.
REFERENCE = "{{user `password`}}"


def vcenter_password(target: Target, merged: MergedVars) -> str:
    """The vCenter password preflight logs in with (VSPHERE_PASSWORD over the files);
    "" for a build that does not log in to vCenter."""
    return VSphereSettings.from_vars(merged.values).password if target.hypervisor.vsphere \
        else ""


def secrets_read_last(target: Target, merged: MergedVars,
                      given: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The variables of the 0600 var file Packer reads after every other one, and the
    builder fields the build's template copy sets as literals.

    ``given``: PACKER_FLAGS' ``-var`` secrets and the Windows password. A vSphere
    build's vCenter password is in the file when the files alone would give Packer
    another one than preflight logged in with (VSPHERE_PASSWORD wins over every file);
    one holding ``{{`` goes into the template copy instead (see above).
    """
    read_last = dict(given)
    literal: dict[str, str] = {}
    password = vcenter_password(target, merged)
    if "{{" in password:
        read_last[LITERAL] = ""
        literal[LITERAL] = password
    elif password != read_last.get(LITERAL, merged.get(LITERAL)):
        read_last[LITERAL] = password  # VSPHERE_PASSWORD over a file's: preflight's choice
    return read_last, literal


def with_literals(template: dict, literal: Mapping[str, str]) -> dict:
    """``template`` with each builder field that names a literal secret set to its value,
    escaped for Packer's one rendering of builder settings."""
    for builder in template.get("builders", []):
        for field in literal:
            if builder.get(field) == REFERENCE.replace(LITERAL, field):
                builder[field] = packer_escape(literal[field])
    return template


def secret_problems(target: Target, merged: MergedVars, knobs: Knobs) -> list[str]:
    """Secrets holding ``{{`` that cannot reach Packer verbatim (all but the vCenter
    password, see above); their values are never shown."""
    problems = []
    literal_ok = {LITERAL} if target.hypervisor.vsphere else set()
    for key in sorted(SECRET_VARIABLES - literal_ok - {"vsphere_password"}):
        origin = merged.origin.get(key, TEMPLATE_DEFAULTS)
        if origin != TEMPLATE_DEFAULTS and "{{" in merged.get(key):
            where = "PACKER_FLAGS" if origin == "PACKER_FLAGS -var" else origin
            problems.append(f"{where}: {key}: holds '{{{{', which Packer reads as the start "
                            "of a template in every variable's value (its value is not "
                            "shown); choose one without it")
    envs = [("RHSM_PASS", knobs.rhsm_pass)]  # every build's rhsm_pass: {{env `RHSM_PASS`}}
    if windows.is_windows(target):
        envs.append(("WINDOWS_ADMIN_PASSWORD", knobs.windows_admin_password))
    for env, value in envs:
        if value and "{{" in value:
            problems.append(f"environment: {env}: holds '{{{{', which Packer reads as the "
                            "start of a template (its value is not shown); choose one "
                            "without it")
    return problems
