"""Base images as make-style prerequisites of clone and vmx builds.

A ``vsphere-clone`` build with an empty ``template`` clones the base template
of its OS; a ``local-vmx`` build with an empty ``source_path`` starts from the
VM ``local-base`` left. When that base is missing, or was built from other
inputs than today's (its recorded input hash differs), the base is built
first, unless ``--no-deps``. A base whose hash matches is up to date.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

from imagebuilder.config.catalog import HYPERVISORS, Target
from imagebuilder.errors import ImageBuilderError, InputError
from imagebuilder.planning.plan import BuildPlan, plan_build

BASE_OF = {"vsphere-clone": "vsphere-base", "local-vmx": "local-base"}
SOURCE_FIELD = {"vsphere-clone": "template", "local-vmx": "source_path"}
BUILD_INFO = "build-info.json"


def needs_base(plan: BuildPlan) -> bool:
    """Whether the build starts from the base of its OS (its source was left empty)."""
    field = SOURCE_FIELD.get(plan.target.hypervisor.name)
    return bool(field) and plan.merged.origin.get(field) == "generated"


def base_target(target: Target) -> Target:
    """The base build a clone or vmx target starts from (same OS)."""
    return Target(HYPERVISORS[BASE_OF[target.hypervisor.name]], target.os_name)


def base_plan(plan: BuildPlan, force: bool = False) -> BuildPlan:
    """The plan of the base build that ``plan`` starts from."""
    target = base_target(plan.target)
    options = dataclasses.replace(plan.options, force=force or plan.options.force)
    return plan_build(plan.checkout, target, plan.knobs, "build", options=options)


def local_base_state(base: BuildPlan) -> str:
    """``missing``, ``stale`` or ``up to date`` for a local base VM."""
    info = base.artifact_dir / BUILD_INFO
    vmx = base.artifact_dir / f"{base.merged.get('vm_name')}.vmx"
    if not vmx.is_file() or not info.is_file():
        return "missing"
    recorded = json.loads(info.read_text()).get("base_inputs_hash")
    return "up to date" if recorded == base.merged.get("base_inputs_hash") else "stale"


def vsphere_base_state(base: BuildPlan) -> str:
    """``missing``, ``stale`` or ``up to date`` for a base template in vCenter."""
    from imagebuilder.vsphere.driver import datacenter_session
    from imagebuilder.vsphere.session import VSphereSettings
    from imagebuilder.vsphere.steps import BASE_HASH_KEY

    settings = VSphereSettings.from_vars(base.merged.values)
    with datacenter_session(settings) as (driver, dc):
        vm = driver.find_vm(dc, base.merged.get("vm_name"))
        if vm is None:
            return "missing"
        recorded = driver.extra_config(vm).get(BASE_HASH_KEY)
    return "up to date" if recorded == base.merged.get("base_inputs_hash") else "stale"


def required_bases(plans: list[BuildPlan],
                   report: Callable[[str], object] = print) -> list[BuildPlan]:
    """The base builds that must run before ``plans``, each once; raises with
    --no-deps when one is missing or stale."""
    bases: dict[str, BuildPlan] = {}
    problems = []
    for plan in plans:
        if plan.action != "build" or not needs_base(plan):
            continue
        base = base_plan(plan)
        if base.target.name in bases or base.target.name in {p.target.name for p in plans}:
            continue
        try:
            state = vsphere_base_state(base) if base.target.hypervisor.vsphere \
                else local_base_state(base)
        except ImageBuilderError as exc:
            problems.append(f"{plan.target.name}: {exc.message}")
            continue
        if state == "up to date":
            report(f"{base.target.name}: base is up to date")
            continue
        if plan.options.no_deps:
            problems.append(f"{plan.target.task_name('build')}: the base "
                            f"{base.merged.get('vm_name')!r} is {state} and --no-deps forbids "
                            f"building it; run {base.target.task_name('build')} first")
            continue
        report(f"{base.target.name}: base is {state}; building it first")
        bases[base.target.name] = base_plan(plan, force=state == "stale")
    if problems:
        raise InputError("prerequisites: nothing was started", problems)
    return list(bases.values())
