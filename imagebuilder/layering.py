"""Var-file layering exactly as the upstream Makefile does it, and the merged view.

Order on the Packer command line (later wins for -var-file; any -var wins
over every -var-file, which is Packer's rule, not ours):

1. ``packer/config/*.json`` common files, in upstream's order
2. ``PACKER_FLAGS`` (plus what the Makefile appends: -color, FOREGROUND, ...)
3. ``packer/packer-common.json``
4. ``ova/<os>.json``
5. ``ova/vsphere.json`` (vsphere targets) or ``ova/vmx.json`` (local-vmx)
6. the build's generated var file (per-build values; never overrides 1-5)
7. ``-except``/``-only``: the builder of the hypervisor
8. every file of ``PACKER_VAR_FILES``, in order
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import InputError

_REF = re.compile(r"\{\{\s*(user|env)\s+`([^`]+)`\s*\}\}")


@dataclass(frozen=True)
class VarLayer:
    """One -var-file on the Packer command line, and why it is there."""

    path: Path
    role: str

    def display(self, root: Path) -> str:
        try:
            return str(self.path.relative_to(root))
        except ValueError:
            return str(self.path)


@dataclass(frozen=True)
class FlagVar:
    """A ``-var name=value`` given in PACKER_FLAGS (or appended by a knob)."""

    name: str
    value: str


def split_packer_flags(flags: Iterable[str]) -> tuple[list[str], list[Path], list[FlagVar]]:
    """Normalise PACKER_FLAGS into single tokens and pull out what they set.

    Returns the flags with ``-var x`` / ``-var-file x`` joined into one token
    each, the var files they name and the variables they set.
    """
    tokens = list(flags)
    out: list[str] = []
    var_files: list[Path] = []
    variables: list[FlagVar] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name, eq, value = tok.lstrip("-").partition("=")
        if tok.startswith("-") and name in ("var", "var-file"):
            if not eq:
                if i + 1 >= len(tokens):
                    raise InputError(f"PACKER_FLAGS: {tok} needs a value")
                i += 1
                value = tokens[i]
            if name == "var":
                key, has_eq, val = value.partition("=")
                if not has_eq:
                    raise InputError(f"PACKER_FLAGS: -var {value!r} is not name=value")
                variables.append(FlagVar(key, val))
            else:
                var_files.append(Path(value).absolute())
            out.append(f"-{name}={value}")
        else:
            out.append(tok)
        i += 1
    return out, var_files, variables


def read_var_file(path: Path, shown: str | None = None) -> dict:
    """Load a var file: a JSON object of scalars. Problems name the file as ``shown``."""
    shown = shown or str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{shown}: var file not found") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read var file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{shown}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError(f"{shown}: a var file must hold a JSON object of name: value pairs")
    return data


def packer_string(value: object) -> str:
    """How Packer's JSON var files need a value: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def needs_normalising(data: dict) -> bool:
    """Packer 1.x refuses non-string values in var files ("cannot unmarshal bool")."""
    return any(not isinstance(v, str) for v in data.values())


@dataclass
class MergedVars:
    """The variables a Packer run would see, and where each one came from."""

    values: dict[str, str]
    origin: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def resolved(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The values with ``{{user `x`}}`` and ``{{env `X`}}`` expanded as Packer would.

        Packer's own ``{{ .HTTPIP }}``-style build variables are left alone.
        """
        env = dict(os.environ) if env is None else env
        out = dict(self.values)
        for _ in range(10):  # references nest a few levels at most
            changed = False
            for key, value in out.items():
                new = _REF.sub(lambda m: out.get(m.group(2), "") if m.group(1) == "user"
                               else env.get(m.group(2), ""), value)
                if new != value:
                    out[key], changed = new, True
            if not changed:
                break
        return out

    def flag(self, name: str) -> bool:
        return self.values.get(name, "").strip().lower() == "true"


def merge(layers: list[tuple[str, dict]], flag_vars: list[FlagVar]) -> MergedVars:
    """Merge var-file contents in order (later wins), then -var flags on top."""
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    for where, data in layers:
        for key, value in data.items():
            values[key] = packer_string(value)
            origin[key] = where
    for fv in flag_vars:
        values[fv.name] = fv.value
        origin[fv.name] = "PACKER_FLAGS -var"
    return MergedVars(values, origin)
