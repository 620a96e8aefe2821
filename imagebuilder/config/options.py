"""The build options a user gives beyond the configuration, and their help text.

Kept apart from :mod:`imagebuilder.planning.plan` so that the front ends can declare
their flags without importing the planner (``invoke --list`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass

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
