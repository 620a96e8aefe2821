"""A target's inputs as Packer will see them: PACKER_FLAGS, the var files in the upstream
order, their contents (each checked against its schema as it is read), merged.

The first phases of :func:`imagebuilder.planning.plan.plan_build`; every problem found
is collected, never raised one at a time, so that all can be reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder.config.catalog import Target
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.packer_flags import PackerFlags, split_packer_flags
from imagebuilder.config.schema import schema_for
from imagebuilder.config.upstream import TEMPLATE_DEFAULTS
from imagebuilder.config.varfiles import MergedVars, VarLayer, merge, read_var_file
from imagebuilder.errors import InputError
from imagebuilder.planning import windows
from imagebuilder.planning.rules import file_schema_problems


def shown(checkout: Checkout, path: Path) -> str:
    """``path`` as problem lines name it: relative to the checkout when inside it."""
    try:
        return str(path.relative_to(checkout.root))
    except ValueError:
        return str(path)


def packer_flags(knobs: Knobs, action: str) -> PackerFlags:
    """PACKER_FLAGS, then what the Makefile appends from the knobs (-color, FOREGROUND...)."""
    user = split_packer_flags(knobs.packer_flags, action)
    color_given = any(f == "-color" or f.startswith("-color=") for f in user.flags)
    ours = split_packer_flags(knobs.derived_packer_flags(action == "build", color_given),
                              action, "environment")
    ours.problems = []  # Knobs.problems names the knob at fault instead
    return user + ours


def var_file_layers(checkout: Checkout, target: Target, knobs: Knobs,
                    flag_files: list[Path]) -> tuple[list[VarLayer], list[VarLayer]]:
    """The var files before the generated one, in the upstream order, and PACKER_VAR_FILES
    (after it). An OS without its file is an error of its own: nothing else can be read."""
    os_file = checkout.os_file(target.os_name)
    if not os_file.is_file():
        raise InputError(f"{shown(checkout, os_file)}: no such OS file; known OSes: "
                         + ", ".join(checkout.os_names()))
    layers = [VarLayer(p, "common") for p in windows.common_var_files(checkout, target)]
    layers += [VarLayer(p, "flags") for p in flag_files]
    layers += [VarLayer(checkout.packer_common, "packer-common"), VarLayer(os_file, "os")]
    if target.hypervisor.extra_var_file:
        layers.append(VarLayer(checkout.ova_dir / target.hypervisor.extra_var_file,
                               "hypervisor"))
    return layers, [VarLayer(p, "user") for p in knobs.packer_var_files]


@dataclass
class ReadFiles:
    """The var files as read: their contents, and what was wrong with them."""

    data: dict[Path, dict[str, object]] = field(default_factory=dict)
    #: The same contents in the order read, each with the file's name in messages.
    named: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Fields with a schema problem: the rules over merged values skip them.
    bad_fields: set[str] = field(default_factory=set)
    #: Whether a file could not be read (the merged view is then incomplete).
    unreadable: bool = False


def read_var_files(checkout: Checkout, target: Target, knobs: Knobs,
                   layers: list[VarLayer]) -> ReadFiles:
    """Read every var file and check it against its schema, collecting the problems."""
    read = ReadFiles()
    for layer in layers:
        where = shown(checkout, layer.path)
        try:
            data = read_var_file(layer.path, where)
        except InputError as exc:
            read.unreadable = True
            hint = _var_files_hint(knobs, layer.path) if layer.role == "user" else ""
            if not (hint and any(p.endswith(hint) for p in read.problems)):  # one path cut in two
                read.problems.append(exc.message + hint)
            continue
        read.data[layer.path] = data
        read.named.append((where, data))
        kind = schema_for(layer.role, layer.path, target.hypervisor.vsphere)
        lines, fields = file_schema_problems(kind, data, where)
        read.problems += lines
        read.bad_fields |= fields
    return read


def merge_inputs(target: Target, knobs: Knobs, read: ReadFiles, declared: dict[str, str],
                 flags: PackerFlags) -> MergedVars:
    """The template's defaults, the var files in order, ``-var`` flags, VSPHERE_PASSWORD,
    WINDOWS_ADMIN_PASSWORD (which wins over var files, as upstream's Makefile makes it)."""
    merged = merge([(TEMPLATE_DEFAULTS, dict(declared)), *read.named], flags.public_variables())
    for key, value in flags.secret_variables().items():
        merged.set(key, value, "PACKER_FLAGS -var")
    if knobs.vsphere_password and target.hypervisor.vsphere:
        merged.set("password", knobs.vsphere_password, "VSPHERE_PASSWORD")
    for key, value in windows.env_secrets(knobs.windows_admin_password, target).items():
        merged.set(key, value, "environment: WINDOWS_ADMIN_PASSWORD")
    return merged


def _var_files_hint(knobs: Knobs, path: Path) -> str:
    """Where a PACKER_VAR_FILES entry that could not be read came from; when
    it is part of a path with spaces that the split cut apart, say so."""
    words = knobs.packer_var_files_text.split()
    for i in range(len(words)):
        for j in range(i + 2, len(words) + 1):
            joined = Path(" ".join(words[i:j])).absolute()
            if joined.is_file() and path.name in " ".join(words[i:j]):
                return (f" (named in PACKER_VAR_FILES, which is split at spaces: {str(joined)!r} "
                        "exists; quote it: PACKER_VAR_FILES='\"my vars.json\" other.json')")
    return " (named in PACKER_VAR_FILES)"
