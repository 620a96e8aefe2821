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

import codecs
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from imagebuilder.errors import InputError

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


#: ``packer build``'s flags (Packer 1.6.6 and newer): name -> what its value must be.
#: "bool" flags take no separate value (``-force``, ``-force=true``); the others
#: take ``-name=value`` or ``-name value``, as Go's flag package parses them.
BUILD_FLAGS = {
    "color": "bool", "debug": "bool", "force": "bool", "machine-readable": "bool",
    "timestamp-ui": "bool", "warn-on-undeclared-var": "bool",
    "on-error": ("cleanup", "abort", "ask", "run-cleanup-provisioner"),
    "parallel-builds": "int", "var": "text", "var-file": "text", "config-type": ("json", "hcl2"),
    "only": "text", "except": "text",
}
#: ``packer validate``'s flags; build-only flags are left out of validate runs.
VALIDATE_FLAGS = {
    "syntax-only": "bool", "no-warn-undeclared-var": "bool", "evaluate-datasources": "bool",
    "var": "text", "var-file": "text", "config-type": ("json", "hcl2"),
    "only": "text", "except": "text",
}
#: The target chooses the builder: ``-only``/``-except`` of PACKER_FLAGS would
#: add to ours (Packer sums them) and run builders the target does not mean.
TARGET_FLAGS = ("only", "except")
#: What Go's strconv.ParseBool accepts.
GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")


@dataclass
class PackerFlags:
    """PACKER_FLAGS taken apart: one token per flag, the var files and
    variables they name, and one problem line per flag that cannot work."""

    flags: list[str]
    var_files: list[Path]
    variables: list[FlagVar]
    problems: list[str]


def _flag_problem(name: str, kind: object, value: str | None) -> str | None:
    if kind == "bool":
        if value is not None and value not in GO_BOOLS:
            return f"-{name}={value}: {name} is true or false"
    elif value is None:
        return f"-{name} needs a value (-{name}=...)"
    elif kind == "int":
        if not value.strip().isdigit():
            return f"-{name}={value}: {name} is a whole number (0: no limit)"
    elif isinstance(kind, tuple) and value not in kind:
        return f"-{name}={value}: {name} is one of {', '.join(kind)}"
    return None


def split_packer_flags(flags: Iterable[str], action: str = "build",
                       source: str = "PACKER_FLAGS") -> PackerFlags:
    """Take PACKER_FLAGS apart and check each flag against ``packer <action>``'s own.

    ``-var x`` / ``-var-file x`` (and any valued flag given as two tokens) are
    joined into one token. Flags ``packer build`` does not know, ``-only`` and
    ``-except`` (the target chooses the builder) and malformed values become
    problem lines naming ``source``. For ``validate`` the build-only flags are
    dropped, since ``packer validate`` refuses them, and its own (``-syntax-only``)
    are accepted too.
    """
    tokens = list(flags)
    out: list[str] = []
    var_files: list[Path] = []
    variables: list[FlagVar] = []
    problems: list[str] = []
    known = VALIDATE_FLAGS if action == "validate" else BUILD_FLAGS
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("-") or tok in ("-", "--"):
            # a stray word may be a value meant for a flag (a password, say): only
            # a file name is shown
            shown = repr(tok) if tok.endswith((".json", ".hcl")) else f"word {i}"
            problems.append(f"{source}: {shown} is not a flag; only flags of 'packer build' "
                            "go here (the target names the template)")
            continue
        name, eq, value = tok.lstrip("-").partition("=")
        kind = BUILD_FLAGS.get(name) or (VALIDATE_FLAGS.get(name) if action == "validate"
                                         else None)
        if kind is None:
            problems.append(f"{source}: -{name}: not a flag of 'packer {action}'; its flags: "
                            + " ".join(f"-{f}" for f in (VALIDATE_FLAGS if action == "validate"
                                                         else BUILD_FLAGS)
                                       if f not in TARGET_FLAGS))
            continue
        if name in TARGET_FLAGS:
            if not eq and i < len(tokens) and not tokens[i].startswith("-"):
                i += 1  # its value: one problem, not two
            problems.append(f"{source}: -{name}: the target chooses the builder (-only/-except "
                            "would add to ours and run other builders); remove it and name "
                            "the target instead")
            continue
        if not eq and kind != "bool":
            # Go's flag package takes the next token as the value, but never
            # one of our own flags: a bare "-var" must not swallow them.
            if i < len(tokens) and not tokens[i].startswith("-"):
                value, eq = tokens[i], "="
                i += 1
        problem = _flag_problem(name, kind, value if eq else None)
        if problem is None and name == "var":
            key, has_eq, val = value.partition("=")
            if not has_eq or not key.strip():
                problem = "-var needs name=value, e.g. -var headless=false"
            else:
                variables.append(FlagVar(key, val))
        if problem:
            problems.append(f"{source}: {problem}")
            continue
        if name == "var-file":
            var_files.append(Path(value).absolute())
        if name in known:
            out.append(f"-{name}={value}" if eq else f"-{name}")
    return PackerFlags(out, var_files, variables, problems)


#: Var files are small; anything bigger is a mistake (a disk image, a log).
MAX_VAR_FILE_BYTES = 16 * 1024 * 1024


def read_regular_file(path: Path, shown: str, what: str = "var file",
                      limit: int = MAX_VAR_FILE_BYTES) -> bytes:
    """The bytes of ``path``, which must be a regular file: a FIFO, device or
    directory is refused without being opened for reading (a FIFO would hang)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{shown}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read {what} ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise InputError(f"{shown}: is {kind}, not a file; name a JSON {what} "
                         "(it is never read from a pipe or device)")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{shown}: cannot read {what} ({exc.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{shown}: larger than {limit // (1024 * 1024)} MiB; "
                         f"this is not a {what}")
    return data


def _decode(data: bytes, shown: str) -> str:
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or \
            (len(data) > 1 and (data[0] == 0) != (data[1] == 0)):
        raise InputError(f"{shown}: is UTF-16 text; Packer reads UTF-8: save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{shown}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}; "
                         "Latin-1 or another encoding?); Packer reads UTF-8: save it "
                         "as UTF-8") from None


def read_var_file(path: Path, shown: str | None = None) -> dict:
    """Load a var file: a JSON object of scalars. Problems name the file as ``shown``."""
    shown = shown or str(path)
    text = _decode(read_regular_file(path, shown), shown)
    if text.startswith("\ufeff"):
        raise InputError(f"{shown}: starts with a byte order mark, which Packer refuses; "
                         "save it as UTF-8 without BOM")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{shown}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    except RecursionError:
        raise InputError(f"{shown}: nested too deeply to be a var file; a var file is one "
                         "JSON object of name: value pairs") from None
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
