"""Checking var files before anything runs: schemas, declared variables, cross-field rules.

Every check returns problem lines of the form ``<file>: <field>: <what is wrong
and what to do>`` so that all problems can be reported at once.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import jsonschema
    from referencing import Registry

# jsonschema is imported where a schema is first checked: listing the tasks
# (invoke --list) reaches this module and must stay fast.

SCHEMA_FILES = ("defs", "var-file", "os", "vsphere", "vmx")

#: Variables whose values are secrets: never on argv, never in a log line or a message.
SECRET_VARIABLES = frozenset({"password", "ssh_password", "rhsm_pass", "vsphere_password",
                              "remote_password", "additional_s3_access",
                              "additional_s3_secret", "windows_admin_password"})
#: Names that look like they hold a secret (a misspelt password too): their
#: values are never shown in a message either.
_SECRET_WORDS = ("pass", "secret", "token")


def is_secret_name(name: str) -> bool:
    """Whether a variable's value must never appear in a message (a misspelt
    secret such as ``pasword`` included)."""
    lowered = name.lower()
    return name in SECRET_VARIABLES or any(w in lowered for w in _SECRET_WORDS) \
        or bool(difflib.get_close_matches(lowered, SECRET_VARIABLES, n=1, cutoff=0.75))


@lru_cache(maxsize=None)
def _registry() -> Registry:
    from referencing import Registry, Resource
    registry = Registry()
    for name in SCHEMA_FILES:
        text = resources.files("imagebuilder.config.schemas").joinpath(f"{name}.schema.json").read_text()
        schema = json.loads(text)
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


@lru_cache(maxsize=None)
def _validator(kind: str) -> jsonschema.protocols.Validator:
    import jsonschema
    schema = _registry().get_or_retrieve(
        f"https://imagebuilder.local/schemas/{kind}.schema.json").value.contents
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry())


def _types(error: jsonschema.ValidationError) -> str:
    kinds = error.validator_value if isinstance(error.validator_value, list) \
        else [error.validator_value]
    words = [{"null": "null", "integer": "whole number"}.get(k, k) for k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return "is required; add it"
    if error.validator == "type":
        return (f"{_short(json.dumps(error.instance))} is not a {_types(error)}; "
                f"a var file holds a {_types(error)} here")
    if error.validator == "anyOf" and error.schema.get("description"):
        return f"{_short(repr(error.instance))} is not {error.schema['description']}"
    if error.validator == "enum":
        return f"{_short(repr(error.instance))} is not one of {error.validator_value!r}"
    if error.validator == "pattern":
        return f"{_short(repr(error.instance))} does not match {error.validator_value!r}"
    return _short(error.message, 200)


def _describe_secret(error: jsonschema.ValidationError) -> str:
    """What is wrong with a secret field, without its value."""
    if error.validator == "type":
        return f"must be a {_types(error)} (its value is not shown: it is a secret)"
    if error.schema.get("description"):
        return f"must be {error.schema['description']} (its value is not shown: it is a secret)"
    return f"is not valid here ({error.validator}; its value is not shown: it is a secret)"


def schema_errors(kind: str, data: dict) -> list[tuple[str, str]]:
    """(field, what is wrong) for each schema error of one var file; secret values never shown."""
    by_field: dict[str, jsonschema.ValidationError] = {}
    # One line per field: the file's own rule wins over the generic one it
    # includes (vsphere.json's "a string" over any var file's "a scalar").
    errors = sorted(_validator(kind).iter_errors(data),
                    key=lambda e: (e.relative_schema_path[0] == "allOf", [str(p) for p in e.path]))
    for error in errors:
        field = ".".join(str(p) for p in error.path)
        if error.validator == "required":
            field = error.message.split("'")[1]
        by_field.setdefault(field, error)
    found = []
    for field in sorted(by_field):
        error = by_field[field]
        secret = error.validator != "required" and is_secret_name(field.split(".")[0])
        found.append((field, _describe_secret(error) if secret else _describe(error)))
    return found


def schema_problems(kind: str, data: dict, where: str) -> list[str]:
    """Problems of one var file against the schema ``kind`` (os, vsphere, vmx, var-file)."""
    return [f"{where}: {field}: {what}" if field else f"{where}: {what}"
            for field, what in schema_errors(kind, data)]


def declared_variables(template: Path) -> dict[str, str]:
    """The user variables a Packer JSON template declares, with their defaults."""
    return dict(_declared(template, template.stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _declared(template: Path, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    # Planning a whole matrix reads the same template 78 times; read it once per change.
    return tuple(json.loads(template.read_text()).get("variables", {}).items())


def undeclared_problems(names: list[str], declared: Iterable[str], where: str) -> list[str]:
    """A variable the template does not declare is a typo until proven otherwise.

    Packer 1.6 ignores such a variable silently, so ``vcenter_sever`` would
    build against an empty server name; we refuse it and suggest the name.
    """
    problems = []
    for name in names:
        if name in declared:
            continue
        if not name.strip():
            problems.append(f"{where}: a variable with an empty name {name!r}; remove it")
            continue
        close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]!r}?" if close else \
            "the Packer template does not declare it; remove it or check its spelling"
        problems.append(f"{where}: {name}: unknown variable; {hint}")
    return problems


def is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


#: Floors below which a build cannot work (ours, from the installers'
#: documented minimums): memory and disk in MiB, as the template takes them.
MIN_CPU = 1
OS_MINIMUMS = {  # distro_name: (memory MiB, disk_size MiB)
    "ubuntu": (1024, 5120),
    "rhel": (1536, 10240),
    "rockylinux": (1536, 10240),
    "almalinux": (1536, 10240),
    "photon": (1024, 8192),
    "flatcar": (2048, 8192),
    "windows": (2048, 32768),  # Windows Server's documented minimum disk: 32 GB
}
DEFAULT_MINIMUMS = (1024, 5120)


def combine_target_problems(per_target: list[tuple[str, list[str]]],
                            checked: int | None = None) -> list[str]:
    """Each problem once, in the order first seen; when several targets were
    checked (``checked``, default: those in ``per_target``), each line ends
    with the targets it affects."""
    affected: dict[str, list[str]] = {}
    for target, problems in per_target:
        for problem in problems:
            names = affected.setdefault(problem, [])
            if target not in names:
                names.append(target)
    total = checked or len(per_target)
    if total <= 1:
        return list(affected)
    return [f"{problem} [{f'all {total} targets' if len(names) == total else ', '.join(names)}]"
            for problem, names in affected.items()]
