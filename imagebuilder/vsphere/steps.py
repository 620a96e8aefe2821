"""Build steps that act on vCenter, over the build's one session (ConnectStep).

As Packer's vSphere builder connects once and keeps one driver in its state,
ConnectStep logs in once per build and every later vSphere step, cleanups
included, uses its driver; the cleanup of ConnectStep logs out last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyVmomi import vim

from imagebuilder.config.varfiles import is_true
from imagebuilder.errors import BuildError
from imagebuilder.planning.plan import BuildPlan
from imagebuilder.running.steps import BuildState
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.preflight import BASE_SNAPSHOT, settings_of
from imagebuilder.vsphere.session import Session
from imagebuilder.vsphere.settings import VSphereSettings

BASE_HASH_KEY = "guestinfo.imagebuilder.inputs_hash"
#: Set by Packer from the plan's ib_build_id (node.json's configuration_parameters).
BUILD_ID_KEY = "guestinfo.imagebuilder.build_id"
#: Where ConnectStep leaves the Connection in the build state.
CONNECTION = "vsphere"
_SESSION = "vsphere_session"


@dataclass(frozen=True)
class Connection:
    """The build's logged-in vCenter: its settings, the driver and the datacenter."""

    settings: VSphereSettings
    driver: Driver
    datacenter: vim.Datacenter


def connection(state: BuildState) -> Connection:
    """The Connection ConnectStep left in ``state``."""
    found = state.data.get(CONNECTION)
    if found is None:
        raise BuildError("no vCenter session in this build: ConnectStep must run before "
                         "the other vSphere steps")
    return found


def _placement(driver: Driver, settings: VSphereSettings,
               dc: vim.Datacenter) -> tuple[vim.ResourcePool, vim.HostSystem | None]:
    compute = driver.cluster(dc, settings.cluster) if settings.cluster \
        else driver.host(dc, settings.host)
    host = compute if isinstance(compute, vim.HostSystem) else None
    return driver.resource_pool(compute, settings.resource_pool), host


def prepare_template(driver: Driver, settings: VSphereSettings, dc: vim.Datacenter,
                     template: vim.VirtualMachine,
                     report: Callable[[str], None] = lambda text: None) -> None:
    """Give a template the snapshot linked clones need: VM, snapshot, template again."""
    pool, host = _placement(driver, settings, dc)
    name = template.name
    report(f"vsphere: preparing template {name} for linked clones")
    driver.mark_as_vm(template, pool, host)
    try:
        driver.create_snapshot(template, BASE_SNAPSHOT, "made by imagebuilder for linked clones")
    finally:
        driver.mark_as_template(template)


class ConnectStep:
    """Logs in to the build's vCenter once and keeps the session (with its
    keep-alive) for every later vSphere step; its cleanup logs out."""

    name = "vsphere-connect"

    def run(self, state: BuildState) -> None:
        """Log in and find the datacenter; leave the Connection in the state."""
        plan = state.plan
        settings = settings_of(plan)
        session = Session(settings)
        state.data[_SESSION] = session
        driver = Driver(session.open(),
                        lambda what, percent: state.report(f"vsphere: {what} {percent}%"))
        state.data[CONNECTION] = Connection(settings, driver,
                                            driver.datacenter(settings.datacenter))

    def cleanup(self, state: BuildState) -> None:
        """Log out (after every later step's cleanup has used the session)."""
        state.data.pop(CONNECTION, None)
        session: Session | None = state.data.pop(_SESSION, None)
        if session is not None:
            session.close()


class VSphereStep:
    """Before Packer: replace an existing VM (--force), prepare the clone source
    (--prepare-template). Cleanup: a failed or interrupted build leaves no VM,
    and destroys only the VM it made itself: one of the same name made by
    anything else (another build, a person) does not carry this build's id."""

    name = "vsphere"

    def run(self, state: BuildState) -> None:
        """Replace the VM of the build's name (--force); prepare the clone source."""
        plan = state.plan
        vc = connection(state)
        driver, dc = vc.driver, vc.datacenter
        vm_name = plan.merged.get("vm_name")
        existing = driver.find_vm(dc, vm_name)
        if existing is not None and plan.options.force:
            state.report(f"vsphere: replacing the existing {vm_name}")
            driver.destroy(existing)
        if plan.target.hypervisor.name == "vsphere-clone" and \
                is_true(plan.merged.get("linked_clone")) and plan.options.prepare_template:
            source = driver.vm(dc, vc.settings.template)
            if not driver.snapshots(source):
                prepare_template(driver, vc.settings, dc, source, state.report)
        state.data["vsphere_vm"] = vm_name

    def cleanup(self, state: BuildState) -> None:
        """After a failure: remove the build's own VM, unless asked to keep it."""
        plan = state.plan
        vm_name = state.data.get("vsphere_vm")
        if not (state.failed and vm_name):
            return
        if plan.options.keep_on_failure or plan.knobs.on_error_ask:
            state.report(f"vsphere: keeping {vm_name} for inspection")
            return
        destroy_own_vm(connection(state), plan, vm_name, lambda: state.report(
            f"vsphere: removing {vm_name} left by the failed build"))


def destroy_own_vm(vc: Connection, plan: BuildPlan, vm_name: str,
                   announce: Callable[[], None]) -> None:
    """Destroy ``vm_name`` if it exists and carries this build's id in its
    extraConfig; a VM of that name made by anything else (another build, a
    person) is left alone with a BuildError saying so."""
    build_id = plan.merged.get("ib_build_id")
    server = vc.settings.server
    try:
        vm = vc.driver.find_vm(vc.datacenter, vm_name)
        if vm is None:
            return
        found = vc.driver.extra_config(vm).get(BUILD_ID_KEY)
        if not build_id or found != build_id:
            theirs = f"is {found!r}" if found else "is not set"
            raise BuildError(
                f"left VM {vm_name} on {server} alone: this build did not "
                f"make it ({BUILD_ID_KEY} {theirs}, this build's is "
                f"{build_id!r}); another build or a person did")
        announce()
        vc.driver.destroy(vm)
    except BuildError:
        raise
    except Exception as exc:
        raise BuildError(f"could not remove VM {vm_name} from {server}: {exc}; "
                         "delete it by hand") from None


class VerifyBaseStep:
    """After a vSphere base build: the template exists, carries its input hash,
    and has a snapshot when create_snapshot asked for one."""

    name = "verify-base"

    def run(self, state: BuildState) -> None:
        """Check the template Packer left; BuildError naming what is wrong."""
        plan = state.plan
        vc = connection(state)
        driver = vc.driver
        vm_name = plan.merged.get("vm_name")
        vm = driver.find_vm(vc.datacenter, vm_name)
        if vm is None or not driver.is_template(vm):
            raise BuildError(f"the base build finished but left no template {vm_name!r}")
        if is_true(plan.merged.get("create_snapshot")) and not driver.snapshots(vm):
            raise BuildError(f"base template {vm_name!r} has no snapshot although "
                             "create_snapshot is true; linked clones need one")
        recorded = driver.extra_config(vm).get(BASE_HASH_KEY)
        if recorded != plan.merged.get("base_inputs_hash"):
            raise BuildError(f"base template {vm_name!r} does not carry its input hash "
                             f"({BASE_HASH_KEY} is {repr(recorded) if recorded else 'not set'})")

    def cleanup(self, state: BuildState) -> None:
        """Nothing to undo: the step only reads."""


class DestroyStep:
    """``destroy``: once the image is exported, remove the build's VM from vCenter.

    Upstream passes ``destroy`` to the vSphere builders of newer Packer
    plugins; Packer 1.6.6's builders have no such field, so the build does it.
    """

    name = "destroy"

    def run(self, state: BuildState) -> None:
        """Remove the build's VM (only if it carries this build's id)."""
        vm_name = state.plan.merged.get("vm_name")
        destroy_own_vm(connection(state), state.plan, vm_name, lambda: state.report(
            f"vsphere: destroy is true; removing {vm_name}"))

    def cleanup(self, state: BuildState) -> None:
        """Nothing to undo: a removed VM stays removed."""
