"""goss validation, when the goss provisioner plugin is installed.

Packer 1.6.6 refuses a template that names a provisioner type it lacks, so
``packer/node.json`` has no goss provisioner. Where the plugin is installed
a build runs a copy of the template with ``packer/goss/provisioner.json``
inserted after the ``node.yml`` provisioner, written into the build's own
work directory.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # plan.py imports this module
    from imagebuilder.planning.plan import BuildPlan

PLUGIN_NAMES = ("packer-provisioner-goss", "packer-plugin-goss")


def plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where Packer looks for plugins (1.6: ~/.packer.d/plugins; 1.7+: ~/.config/packer/plugins)."""
    dirs = [Path(p) for p in env.get("PACKER_PLUGIN_PATH", "").split(os.pathsep) if p]
    home = Path(env.get("HOME", str(Path.home())))
    dirs += [home / ".packer.d" / "plugins", home / ".config" / "packer" / "plugins"]
    return dirs


def find_plugin(env: Mapping[str, str] | None = None) -> Path | None:
    """The installed goss provisioner plugin, or None."""
    env = os.environ if env is None else env
    for name in PLUGIN_NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return Path(found)
    for directory in plugin_dirs(env):
        if directory.is_dir():
            for path in sorted(directory.rglob("packer-*goss*")):
                if path.is_file() and not path.name.endswith("_SHA256SUM"):
                    return path
    return None


def template_with_goss(template: Path, provisioner: Path) -> dict:
    """The node template with the goss provisioner after the node.yml one."""
    data = json.loads(template.read_text())
    goss = json.loads(provisioner.read_text())
    goss.pop("_comment", None)
    provisioners = data["provisioners"]
    after = next(i for i, p in enumerate(provisioners)
                 if str(p.get("playbook_file", "")).endswith("/node.yml"))
    provisioners.insert(after + 1, goss)
    return data


def skipped_reason(plan: BuildPlan) -> str | None:
    """Why goss will not check the image this build makes, or None when it will
    (or when there is no image to check: validate runs and base builds)."""
    if plan.action != "build" or plan.target.hypervisor.base:
        return None
    if plan.merged.get("communicator") == "none":
        return "Packer has no communicator (communicator none), so no provisioner reaches the VM"
    if plan.goss_plugin is None:
        return ("the goss provisioner plugin is not installed "
                "(`invoke deps-ova` installs it with packer init on Packer 1.7 and newer)")
    return None


def validation(plan: BuildPlan) -> str:
    """How the build's image is validated, for the summary: "goss", "skipped: <why>",
    or "" where there is no image to validate."""
    if plan.action != "build" or plan.target.hypervisor.base:
        return ""
    reason = skipped_reason(plan)
    return f"skipped: {reason}" if reason else "goss"
