"""The JSON schemas of var files (``schemas/``), and what a var file's errors against them say.

The schemas say what shape each kind of var file has (an OS file, vsphere.json,
vmx.json, any var file); the rules that span files are in :mod:`imagebuilder.planning.rules`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from imagebuilder.redaction import is_secret_name

if TYPE_CHECKING:
    import jsonschema
    from referencing import Registry

# jsonschema is imported where a schema is first checked: listing the tasks
# (invoke --list) reaches this module and must stay fast.

SCHEMA_FILES = ("defs", "var-file", "os", "vsphere", "vmx")

#: The schema of each role of var file on the command line (see varfiles.VarLayer); a
#: hypervisor's own file (vsphere.json, vmx.json) has the schema named after it.
SCHEMA_OF_ROLE = {"os": "os", "common": "var-file", "packer-common": "var-file",
                  "flags": "var-file", "user": "var-file"}
#: vSphere targets hold every var file the user adds to vsphere.json's rules,
#: wherever the vSphere settings come from.
VSPHERE_SCHEMA_ROLES = ("flags", "user")


def schema_for(role: str, path: Path, vsphere: bool) -> str:
    """The schema a var file of ``role`` at ``path`` is checked against (for a vSphere
    target when ``vsphere``): one of SCHEMA_FILES but "defs"."""
    if vsphere and role in VSPHERE_SCHEMA_ROLES:
        return "vsphere"
    return SCHEMA_OF_ROLE.get(role) or path.stem


@lru_cache(maxsize=None)
def _registry() -> Registry:
    from referencing import Registry, Resource
    registry = Registry()
    for name in SCHEMA_FILES:
        text = resources.files("imagebuilder.config.schemas") \
            .joinpath(f"{name}.schema.json").read_text()
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


def _value(value: object) -> str:
    """A var file's value as its file spells it: JSON (null, true, 5), a string quoted."""
    return repr(value) if isinstance(value, str) else json.dumps(value)


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return "is required; add it"
    if error.validator == "type":
        return (f"{_short(json.dumps(error.instance))} is not a {_types(error)}; "
                f"a var file holds a {_types(error)} here")
    if error.validator == "anyOf" and error.schema.get("description"):
        return f"{_short(_value(error.instance))} is not {error.schema['description']}"
    if error.validator == "enum":
        return f"{_short(_value(error.instance))} is not one of {error.validator_value!r}"
    if error.validator == "pattern":
        return f"{_short(_value(error.instance))} does not match {error.validator_value!r}"
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
