"""Planning a target the way the front ends do, for tests: one helper for every test module."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.options import BuildOptions
from imagebuilder.planning.plan import BuildPlan, plan_build


def plan_for(checkout: Checkout, name: str, env: Mapping[str, str] | None = None,
             action: str = "build", *, var_files: Iterable[Path] = (),
             options: BuildOptions | None = None, strict: bool = True) -> BuildPlan:
    """The plan of target ``name`` (``node-ova-...``, with or without its action) in
    ``checkout``, its knobs read from ``env`` alone (never the test's own environment),
    with ``var_files`` as PACKER_VAR_FILES."""
    env = dict(env or {})
    if var_files:
        env["PACKER_VAR_FILES"] = " ".join(str(path) for path in var_files)
    target = parse_target(name, checkout.os_names())
    return plan_build(checkout, target, Knobs.from_env(env), action, strict=strict,
                      options=options)
