"""Preflight: every object a vSphere build names, checked before Packer starts.

Read-only. Runs for every vsphere, vsphere-base and vsphere-clone plan before
any build of the run starts, and reports every problem at once (exit 2),
each naming the file and field and listing the candidates that do exist.
"""

from __future__ import annotations

from typing import Callable

from pyVmomi import vim

from imagebuilder.config.varfiles import is_true
from imagebuilder.errors import ImageBuilderError, InputError
from imagebuilder.planning.plan import TEMPLATE_DEFAULTS, BuildPlan
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.session import Session
from imagebuilder.vsphere.settings import VSphereSettings

#: The name a base build gives the snapshot clones link to.
BASE_SNAPSHOT = "imagebuilder-base"


def field_file(plan: BuildPlan, key: str) -> str:
    """The var file that set ``key`` (or where the user should set it)."""
    origin = plan.merged.origin.get(key, TEMPLATE_DEFAULTS)
    if origin == "PACKER_FLAGS -var":
        return "PACKER_FLAGS"
    return f"ova/{plan.target.hypervisor.extra_var_file}" \
        if origin in (TEMPLATE_DEFAULTS, "generated") else origin


def settings_of(plan: BuildPlan) -> VSphereSettings:
    """A vSphere build's settings, its messages naming the file that set vcenter_server."""
    return VSphereSettings.from_vars(plan.merged.values, where=field_file(plan, "vcenter_server"))


def templates_in(driver: Driver, dc: vim.Datacenter) -> list[str]:
    """The names of the templates in ``dc``, sorted (a clone source's candidates)."""
    found = driver.inventory(vim.VirtualMachine, ["name", "config.template"], dc.vmFolder)
    return sorted(str(p["name"]) for p in found.values() if p.get("config.template"))


def check_plan(driver: Driver, plan: BuildPlan) -> list[str]:
    """Problems of one vSphere plan, with the vCenter's own candidates."""
    settings = settings_of(plan)
    problems: list[str] = []

    def lookup(key: str, find: Callable[[], object]) -> object | None:
        try:
            return find()
        except ImageBuilderError as exc:
            problems.append(f"{field_file(plan, key)}: {key}: {exc.message}")
            return None

    dc = lookup("datacenter", lambda: driver.datacenter(settings.datacenter))
    if dc is None:
        return problems
    if settings.cluster:
        compute = lookup("cluster", lambda: driver.cluster(dc, settings.cluster))
    else:
        compute = lookup("host", lambda: driver.host(dc, settings.host))
    if compute is not None:
        lookup("resource_pool", lambda: driver.resource_pool(compute, settings.resource_pool))
    lookup("datastore", lambda: driver.datastore(dc, settings.datastore))
    lookup("network", lambda: driver.network(dc, settings.network))
    lookup("folder", lambda: driver.folder(dc, settings.folder))

    vm_name = plan.merged.get("vm_name")
    existing = driver.find_vm(dc, vm_name)
    hv = plan.target.hypervisor
    if existing is not None and not plan.options.force:
        kind = "template" if driver.is_template(existing) else "VM"
        problems.append(f"vm_name: a {kind} named {vm_name!r} already exists in datacenter "
                        f"{dc.name}; pass --force to replace it, or clean it up first")
    if hv.name == "vsphere-clone":
        problems += _check_clone_source(driver, plan, dc, settings.template, vm_name)
    from imagebuilder.vsphere.library_deploy import LIBRARY_VARIABLES, library_settings
    library, create = library_settings(plan)
    if library and plan.exports:
        from imagebuilder.vsphere.publish import library_problems
        key = next(v for v in LIBRARY_VARIABLES if plan.merged.get(v))
        problems += library_problems(settings, library, create, f"{field_file(plan, key)}: {key}")
    return problems


def _check_clone_source(driver: Driver, plan: BuildPlan, dc: vim.Datacenter,
                        template: str, vm_name: str) -> list[str]:
    where = field_file(plan, "template")
    if template == vm_name:
        return [f"{where}: template: the clone source {template!r} is also the build's "
                "vm_name; the build would replace its own source"]
    source = driver.find_vm(dc, template)
    if source is None:
        if plan.merged.origin.get("template") == "generated":
            return []  # the base template: a prerequisite build makes it (see prerequisites)
        return [f"{where}: template: {template!r} not found in datacenter {dc.name}; the "
                f"templates there: {', '.join(templates_in(driver, dc)) or 'none'}"]
    if is_true(plan.merged.get("linked_clone")) and not driver.snapshots(source) \
            and not plan.options.prepare_template:
        return [f"{where}: linked_clone: template {template!r} has no snapshot, which a linked "
                "clone needs; pass --prepare-template (it is turned into a VM, snapshotted and "
                "marked as a template again) or set linked_clone to false"]
    return []


def _check_vcenter(plans: list[BuildPlan]) -> list[str]:
    """The problems of builds that log in to one vCenter alike, over one session.
    A vCenter that cannot be reached is reported once, naming every build."""
    labels = [plan.target.task_name(plan.action) for plan in plans]
    first = plans[0]
    problems: list[str] = []
    try:
        with Session(settings_of(first), keepalive=0) as si:
            driver = Driver(si)
            for label, plan in zip(labels, plans):
                try:
                    found = check_plan(driver, plan)
                except ImageBuilderError as exc:
                    found = [exc.message]
                problems += [f"{label}: {p}" for p in found]
    except ImageBuilderError as exc:  # could not log in
        return [f"{labels[0]}: {exc.message}" if len(labels) == 1
                else f"{exc.message} [{', '.join(labels)}]"]
    return problems


def preflight(plans: list[BuildPlan]) -> None:
    """Check every vSphere plan against its vCenter, logging in once per vCenter
    (and user) for the whole run; raise all problems at once."""
    by_login: dict[tuple, list[BuildPlan]] = {}
    for plan in plans:
        if plan.target.hypervisor.vsphere:
            key = VSphereSettings.from_vars(plan.merged.values).login_key
            by_login.setdefault(key, []).append(plan)
    problems = [p for group in by_login.values() for p in _check_vcenter(group)]
    if problems:
        raise InputError(f"vSphere preflight: {len(problems)} problem"
                         f"{'s' if len(problems) > 1 else ''}; nothing was started", problems)
