"""Every flag a build command takes, in one table, and the build options they carry.

The invoke tasks (tasks.py), ``python -m imagebuilder`` (cli/main.py) and the ``help``
overview all generate their flags and help from ``OPTIONS``. The job count has one
parser (``parse_jobs``) for the task flag, invoke's core ``-j``, INVOKE_BUILD_JOBS and
the command line alike.

Kept apart from :mod:`imagebuilder.planning.plan` so that the front ends can declare
their flags without importing the planner (``invoke --list`` stays fast).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Mapping, Union

from imagebuilder.errors import InputError

#: The commands that build or validate targets.
BUILD, VALIDATE = "build", "validate"


@dataclass(frozen=True)
class Option:
    """One flag of the build commands."""

    #: The flag's name (``--dry-run``); its Python name has underscores (``dry_run``).
    name: str
    #: What the flag does, as every front end's help says it.
    help: str
    #: The commands that take it: "build", "validate" or both.
    commands: tuple[str, ...]
    #: Only where one command runs several targets (invoke's ``-all`` tasks and
    #: ``build-all``; ``python -m imagebuilder``): a single target has nothing to share.
    several_only: bool = False
    #: Its one-letter flags (each letter one), the same on every invoke task and
    #: ``python -m imagebuilder`` command that takes the flag; "": the long flag only.
    short: str = ""
    #: Its value when not given: False for a switch; None (a count) for ``jobs``.
    default: Union[bool, None] = False
    #: Whether it is one of the BuildOptions the build itself reads (otherwise it says
    #: how to run: print only, how many at once, stop early, echo output).
    build_option: bool = False

    @property
    def attr(self) -> str:
        """The Python name: a keyword argument of the task, an argparse destination."""
        return self.name.replace("-", "_")

    @property
    def is_switch(self) -> bool:
        """Whether the flag takes no value (``--force``), unlike ``--jobs N``."""
        return self.default is False


OPTIONS: tuple[Option, ...] = (
    Option("dry-run", "print the packer command(s), secrets redacted; run nothing",
           (BUILD, VALIDATE), short="nd"),
    Option("jobs", "run up to N builds at once (0: no limit); default 1, or invoke's -j N / "
           "INVOKE_BUILD_JOBS", (BUILD, VALIDATE), several_only=True, short="j", default=None),
    Option("fail-fast", "stop the other builds as soon as one fails", (BUILD, VALIDATE),
           several_only=True),
    Option("stream", "echo Packer's output, each line prefixed with its target",
           (BUILD, VALIDATE), short="s"),
    Option("force", "replace an existing VM or template that has the build's name", (BUILD,),
           build_option=True, short="f"),
    Option("prepare-template", "give a linked clone's source template the snapshot it needs",
           (BUILD,), build_option=True, short="p"),
    Option("keep-on-failure", "leave a failed build's VM in vCenter for inspection", (BUILD,),
           build_option=True),
    Option("no-deps", "refuse, instead of building a missing or stale base image first",
           (BUILD,), build_option=True),
)
BY_NAME = {option.name: option for option in OPTIONS}
BY_ATTR = {option.attr: option for option in OPTIONS}

#: Every one-letter flag of every command, by long name: a letter means one thing on
#: every task. ``-n`` is --dry-run, as make's -n (``-d`` too); ``-f`` is --force
#: wherever it exists; ``-k`` stays free for make's --keep-going. Flags not named
#: here (and every flag of the helper commands) have no short form.
SHORT_FLAGS: dict[str, str] = {o.name: o.short for o in OPTIONS if o.short}


def short_flags(name: str) -> list[str]:
    """The one-letter forms of the flag ``--name`` (dashes or underscores): ``["n", "d"]``."""
    return list(SHORT_FLAGS.get(name.replace("_", "-"), ""))


def options_for(command: str, several: bool) -> tuple[Option, ...]:
    """The flags of ``command`` ("build" or "validate") in table order; ``several``: for
    a command that runs several targets at once."""
    return tuple(o for o in OPTIONS if command in o.commands and (several or not o.several_only))


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked of a build beyond its configuration (the build options of
    OPTIONS, which holds their help)."""

    force: bool = False
    prepare_template: bool = False
    keep_on_failure: bool = False
    no_deps: bool = False

    @classmethod
    def from_flags(cls, flags: Mapping[str, object]) -> BuildOptions:
        """The build options among ``flags`` (Python names -> values); others are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: bool(v) for k, v in flags.items() if k in names})


_WHOLE_NUMBER = re.compile(r"[0-9]+")


def parse_jobs(value: Union[str, int], source: str, hint: str = "") -> int:
    """A job count (0: no limit) from ``value``, as given to ``source`` (the flag or
    variable, for the message); raises InputError (exit 2), its message ending in ``hint``.
    """
    text = str(value).strip()
    if isinstance(value, bool) or not _WHOLE_NUMBER.fullmatch(text):
        raise InputError(f"{source}: {value!r} is not a number of builds; give a whole number "
                         f"of 0 (no limit) or more{hint}")
    return int(text)
