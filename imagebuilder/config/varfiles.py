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
import stat
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.config.packer_flags import FlagVar
from imagebuilder.config.template import expand
from imagebuilder.errors import InputError


@dataclass(frozen=True)
class VarLayer:
    """One -var-file on the Packer command line, and why it is there."""

    path: Path
    role: str


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


def is_true(value: object) -> bool:
    """Whether a var file's value means true: JSON true or the string "true" (any case)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def needs_normalising(data: dict) -> bool:
    """Packer 1.x refuses non-string values in var files ("cannot unmarshal bool")."""
    return any(not isinstance(v, str) for v in data.values())


@dataclass
class MergedVars:
    """The variables a Packer run would see, and where each one came from."""

    values: dict[str, str]
    origin: dict[str, str]

    def get(self, name: str, default: str = "") -> str:
        """The value of variable ``name`` (``default`` when no layer sets it)."""
        return self.values.get(name, default)

    def set(self, name: str, value: str, origin: str) -> None:
        """Set ``name`` on top of every layer, naming where the value came from."""
        self.values[name] = value
        self.origin[name] = origin

    def resolved(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The values with ``{{user `x`}}`` and ``{{env `X`}}`` expanded as Packer would.

        Packer's own ``{{ .HTTPIP }}``-style build variables are left alone.
        """
        env = dict(os.environ) if env is None else env
        out = dict(self.values)
        for _ in range(10):  # references nest a few levels at most
            changed = False
            for key, value in out.items():
                new = expand(value, out, env)
                if new != value:
                    out[key], changed = new, True
            if not changed:
                break
        return out


def merge(layers: list[tuple[str, dict[str, object]]], flag_vars: list[FlagVar]) -> MergedVars:
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
