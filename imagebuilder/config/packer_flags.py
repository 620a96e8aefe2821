"""PACKER_FLAGS taken apart and checked against the flags of ``packer build`` / ``validate``.

Go's flag package (which Packer uses) takes ``-name=value``, ``-name value`` and, for
boolean flags, ``-name`` alone; one or two leading dashes. Each flag becomes one token
``-name=value`` here, so that the argv holds no value a later flag could be mistaken for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

from imagebuilder.redaction import SECRET_VARIABLES

#: What a flag's value must be: "bool" (no separate value), "int", "text", or one of a tuple.
FlagKind = Union[str, tuple[str, ...]]

#: ``packer build``'s flags (Packer 1.6.6 and newer): name -> what its value must be.
#: "bool" flags take no separate value (``-force``, ``-force=true``); the others
#: take ``-name=value`` or ``-name value``, as Go's flag package parses them.
BUILD_FLAGS: dict[str, FlagKind] = {
    "color": "bool", "debug": "bool", "force": "bool", "machine-readable": "bool",
    "timestamp-ui": "bool", "warn-on-undeclared-var": "bool",
    "on-error": ("cleanup", "abort", "ask", "run-cleanup-provisioner"),
    "parallel-builds": "int", "var": "text", "var-file": "text", "config-type": ("json", "hcl2"),
    "only": "text", "except": "text",
}
#: ``packer validate``'s flags; build-only flags are left out of validate runs.
VALIDATE_FLAGS: dict[str, FlagKind] = {
    "syntax-only": "bool", "no-warn-undeclared-var": "bool", "evaluate-datasources": "bool",
    "var": "text", "var-file": "text", "config-type": ("json", "hcl2"),
    "only": "text", "except": "text",
}
#: The target chooses the builder: ``-only``/``-except`` of PACKER_FLAGS would
#: add to ours (Packer sums them) and run builders the target does not mean.
TARGET_FLAGS = ("only", "except")
#: What Go's strconv.ParseBool accepts.
GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class FlagVar:
    """A ``-var name=value`` given in PACKER_FLAGS (or appended by a knob)."""

    name: str
    value: str


@dataclass
class PackerFlags:
    """PACKER_FLAGS taken apart: one token per flag, the var files and
    variables they name, and one problem line per flag that cannot work."""

    #: The flags to hand Packer, one ``-name`` or ``-name=value`` token each.
    flags: list[str] = field(default_factory=list)
    #: The files of ``-var-file`` flags, made absolute.
    var_files: list[Path] = field(default_factory=list)
    #: The variables of ``-var`` flags, in order.
    variables: list[FlagVar] = field(default_factory=list)
    #: One line per flag that cannot work, naming where it came from.
    problems: list[str] = field(default_factory=list)

    def public_variables(self) -> list[FlagVar]:
        """The ``-var`` variables whose values may appear on argv (not secrets)."""
        return [fv for fv in self.variables if fv.name not in SECRET_VARIABLES]

    def secret_variables(self) -> dict[str, str]:
        """The ``-var`` variables that are secrets: they reach Packer through a 0600 file."""
        return {fv.name: fv.value for fv in self.variables if fv.name in SECRET_VARIABLES}

    def public_flags(self) -> list[str]:
        """The flags minus ``-var`` of secrets (those go through a 0600 file, never argv)."""
        kept = []
        for tok in self.flags:
            name, _, value = tok.lstrip("-").partition("=")
            if name == "var" and value.partition("=")[0] in SECRET_VARIABLES:
                continue
            kept.append(tok)
        return kept

    def __add__(self, other: PackerFlags) -> PackerFlags:
        return PackerFlags(self.flags + other.flags, self.var_files + other.var_files,
                           self.variables + other.variables, self.problems + other.problems)


def _flag_problem(name: str, kind: FlagKind, value: str | None) -> str | None:
    """What is wrong with ``-name=value`` for a flag of ``kind`` (None: no value given)."""
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


class _Splitter:
    """One pass over the tokens of PACKER_FLAGS, collecting a PackerFlags."""

    def __init__(self, tokens: list[str], action: str, source: str) -> None:
        self.tokens, self.action, self.source = tokens, action, source
        self.known = VALIDATE_FLAGS if action == "validate" else BUILD_FLAGS
        self.result = PackerFlags()
        self.i = 0

    def problem(self, text: str) -> None:
        self.result.problems.append(f"{self.source}: {text}")

    def next_is_value(self) -> bool:
        """Whether the next token can be the value of the current flag: Go's flag package
        takes it, but never one of our own flags (a bare ``-var`` must not swallow them)."""
        return self.i < len(self.tokens) and not self.tokens[self.i].startswith("-")

    def run(self) -> PackerFlags:
        while self.i < len(self.tokens):
            tok = self.tokens[self.i]
            self.i += 1
            if not tok.startswith("-") or tok in ("-", "--"):
                # a stray word may be a value meant for a flag (a password, say): only
                # a file name is shown
                shown = repr(tok) if tok.endswith((".json", ".hcl")) else f"word {self.i}"
                self.problem(f"{shown} is not a flag; only flags of 'packer build' go here "
                             "(the target names the template)")
                continue
            self.flag(*tok.lstrip("-").partition("="))
        return self.result

    def flag(self, name: str, eq: str, value: str) -> None:
        kind = self.known.get(name) or BUILD_FLAGS.get(name)
        if kind is None:
            self.problem(f"-{name}: not a flag of 'packer {self.action}'; its flags: "
                         + " ".join(f"-{f}" for f in self.known if f not in TARGET_FLAGS))
            return
        if name in TARGET_FLAGS:
            if not eq and self.next_is_value():
                self.i += 1  # its value: one problem, not two
            self.problem(f"-{name}: the target chooses the builder (-only/-except would add "
                         "to ours and run other builders); remove it and name the target "
                         "instead")
            return
        if not eq and kind != "bool" and self.next_is_value():
            value, eq = self.tokens[self.i], "="
            self.i += 1
        problem = _flag_problem(name, kind, value if eq else None)
        if problem is None and name == "var":
            problem = self.variable(value)
        if problem:
            self.problem(problem)
            return
        if name == "var-file":
            self.result.var_files.append(Path(value).absolute())
        if name in self.known:  # a build-only flag is left out of validate runs
            self.result.flags.append(f"-{name}={value}" if eq else f"-{name}")

    def variable(self, text: str) -> str | None:
        key, has_eq, value = text.partition("=")
        if not has_eq or not key.strip():
            return "-var needs name=value, e.g. -var headless=false"
        self.result.variables.append(FlagVar(key, value))
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
    return _Splitter(list(flags), action, source).run()
