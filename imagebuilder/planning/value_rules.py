"""Rules over values that reach a shell, a path, a name in vCenter or the OVA.

Each rule returns problem lines (``<file>: <field>: ...``), checked with the rest of
a build's inputs before anything runs (exit 2). Values reach the templates and
scripts as data wherever they can (environment, files, argv); these rules cover what
still lands in text another program parses: user names in the installers' shell
snippets and sudoers files, host names, path components, vCenter's object names,
the OVA's own inputs (``OVF_CUSTOM_PROPERTIES`` and the assembly's knobs, which
would otherwise only be read once the VM is built).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Callable, Mapping

from imagebuilder.config.knobs import PUBLIC_KEY
from imagebuilder.config.varfiles import read_regular_file
from imagebuilder.errors import InputError
from imagebuilder.vsphere.settings import vm_name_problem

#: ``where(key)``: the file (or "PACKER_FLAGS") that set ``key``.
Where = Callable[[str], str]

#: A Linux user name (useradd's portable form): it reaches the installers' shell
#: snippets, sudoers file names and the shutdown command.
SSH_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: A host name label, also a file name and part of the VM's name.
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: A path component of the install files' directories (``/9/ks.cfg``).
PATH_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: OVF_CUSTOM_PROPERTIES names a small file: a few properties, not a disk image.
MAX_CUSTOM_PROPERTIES_BYTES = 1024 * 1024


#: (variable, its pattern, what it must be): values that reach the installers' shell
#: snippets, sudoers file names, host names and the install files' directories.
_NAME_RULES = (
    ("ssh_username", SSH_USERNAME, "is not a Linux user name; use lower-case letters, digits, "
     "'_' and '-' (up to 32, not starting with a digit or '-')"),
    ("build_name", HOST_NAME, "is not a host name; use letters, digits, '.', '_' and '-' (up to "
     "63, starting with a letter or digit): it names the VM, its host and its files"),
    ("distro_version", PATH_PART, "cannot be a directory name; use letters, digits, '.', '_' "
     "and '-'"),
)


def name_problems(values: Mapping[str, str], where: Where, windows: bool,
                  raw: Mapping[str, str] | None = None) -> list[str]:
    """The values that reach shell text, host names and paths in the install files
    (``values`` resolved; ``raw`` as the files wrote them: a value made from another
    variable, as Flatcar's distro_version from its release, is that variable's to check).
    Windows builds have no Linux user (their answer file has its own rules)."""
    problems = []
    for key, pattern, what in _NAME_RULES:
        value = values.get(key, "")
        if not _unchecked(key, value, windows, raw or {}) and not pattern.match(value):
            problems.append(f"{where(key)}: {key}: {value!r} {what}")
    key = values.get("ssh_public_key", "")
    if key and not PUBLIC_KEY.match(key):
        problems.append(f"{where('ssh_public_key')}: ssh_public_key: not one OpenSSH public "
                        "key line such as 'ssh-ed25519 AAAA... me@host' (without quotes, "
                        "backslashes or line breaks); its value is not shown")
    return problems


def _unchecked(key: str, value: str, windows: bool, raw: Mapping[str, str]) -> bool:
    """Whether a name rule leaves ``key`` alone: Windows' user, an empty optional value,
    a value made from another variable."""
    if key == "ssh_username":
        return windows
    return not value or "{{" in raw.get(key, "")


def vm_name_problems(vm_name: str, source: str, where: Where) -> list[str]:
    """The VM's name (``source``: the variable it came from) must be one vCenter, and a
    local build's output directory, can take."""
    problem = vm_name_problem(vm_name)
    if problem is None:
        return []
    via = "" if source == "vm_name" else f" (it makes the VM's name {vm_name!r})"
    return [f"{where(source)}: {source}: {problem}{via}"]


def ova_input_problems(env: Mapping[str, str]) -> list[str]:
    """The OVA step's own inputs, read now rather than once the VM is built:
    ``OVF_CUSTOM_PROPERTIES`` and the assembly's knobs (ovftool, signing, dates)."""
    from imagebuilder.ova import AssembleOptions

    problems = custom_properties_problems(env.get("OVF_CUSTOM_PROPERTIES", "").strip())
    try:
        AssembleOptions.from_env(dict(env, OVF_CUSTOM_PROPERTIES=""))
    except InputError as exc:
        problems += [f"environment: {p}" for p in exc.problems or [exc.message]]
    return problems


def custom_properties_problems(path: str) -> list[str]:
    """``OVF_CUSTOM_PROPERTIES`` must name a small regular file holding a JSON object of
    property names and string (or number, boolean) values the build does not set itself."""
    if not path:
        return []
    shown = f"environment: OVF_CUSTOM_PROPERTIES={path}"
    try:
        data = read_regular_file(Path(path), shown, "custom properties file",
                                 limit=MAX_CUSTOM_PROPERTIES_BYTES)
        parsed = json.loads(data.decode("utf-8"))
    except InputError as exc:
        return [exc.message]
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [f"{shown}: not UTF-8 JSON ({str(exc)[:120]}); it must hold one JSON object "
                "of property names and values"]
    if not isinstance(parsed, dict):
        return [f"{shown}: must hold one JSON object of property names and values"]
    from imagebuilder.ova.inputs import custom_properties

    try:  # the assembly's own rules: names it sets itself, text XML cannot hold
        custom_properties(Path(path), _reserved_properties())
    except InputError as exc:
        return [f"environment: {p}" for p in exc.problems or [exc.message]]
    return []


def _reserved_properties() -> set[str]:
    """The ProductSection properties every node image carries (the assembly sets them)."""
    from imagebuilder.ova.inputs import BuildSettings

    blank = BuildSettings(**{f.name: "" for f in dataclasses.fields(BuildSettings)})
    return {name for name, _ in blank.properties()}
