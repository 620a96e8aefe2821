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


@lru_cache(maxsize=None)
def _registry() -> Registry:
    from referencing import Registry, Resource
    registry = Registry()
    for name in SCHEMA_FILES:
        text = resources.files("imagebuilder.schemas").joinpath(f"{name}.schema.json").read_text()
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


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return "is required; add it"
    if error.validator == "anyOf" and error.schema.get("description"):
        return f"{error.instance!r} is not {error.schema['description']}"
    return error.message


def schema_problems(kind: str, data: dict, where: str) -> list[str]:
    """Problems of one var file against the schema ``kind`` (os, vsphere, vmx, var-file)."""
    problems = []
    for error in sorted(_validator(kind).iter_errors(data), key=lambda e: list(e.path)):
        field = ".".join(str(p) for p in error.path)
        if error.validator == "required":
            field = error.message.split("'")[1]
        prefix = f"{where}: {field}: " if field else f"{where}: "
        problems.append(prefix + _describe(error))
    return problems


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
        close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.75)
        hint = f"did you mean {close[0]!r}?" if close else \
            "the Packer template does not declare it; remove it or check its spelling"
        problems.append(f"{where}: {name}: unknown variable; {hint}")
    return problems


def is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
