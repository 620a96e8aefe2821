"""A small driver over pyvmomi, so that steps read as intent.

Lookups go through the property collector, which also works around the
simulator's defects (reading an unset property such as ``snapshot`` directly
drops the connection there; the collector just leaves it out). Faults become
ImageBuilderErrors naming the object, the fault and what to do.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from pyVmomi import vim, vmodl

from imagebuilder.errors import BuildError, InputError
from imagebuilder.vsphere.session import Session, VSphereSettings

KINDS = {
    "datacenter": vim.Datacenter, "cluster": vim.ClusterComputeResource,
    "host": vim.HostSystem, "datastore": vim.Datastore, "network": vim.Network,
    "folder": vim.Folder, "vm": vim.VirtualMachine, "resource pool": vim.ResourcePool,
}


def fault_message(fault: BaseException) -> str:
    """The readable part of a vSphere fault."""
    msg = getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None)
    return f"{type(fault).__name__.split('.')[-1]}: {msg}" if msg else str(fault)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a VM: its name, its managed object, its id."""

    name: str
    ref: vim.vm.Snapshot
    id: int


class Driver:
    """Inventory lookups and VM operations on one logged-in ServiceInstance."""

    def __init__(self, si: vim.ServiceInstance,
                 on_task: Callable[[str, int], None] | None = None) -> None:
        """``on_task(what, percent)`` hears the progress of every task waited for."""
        self.si = si
        self.content = si.RetrieveContent()
        self.on_task = on_task

    # -- reading -----------------------------------------------------------
    def _collect(self, spec: vmodl.query.PropertyCollector.FilterSpec,
                 ) -> dict[vmodl.ManagedObject, dict[str, object]]:
        """Run one property-collector query, every page of it; object -> {path: value}."""
        collector = self.content.propertyCollector
        out: dict[vmodl.ManagedObject, dict[str, object]] = {}
        options = vmodl.query.PropertyCollector.RetrieveOptions()
        result = collector.RetrievePropertiesEx([spec], options)
        while result:
            for obj in result.objects:
                out[obj.obj] = {p.name: p.val for p in obj.propSet or []}
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(result.token)
        return out

    def properties(self, objs: Iterable[vmodl.ManagedObject], kind: type,
                   paths: list[str]) -> dict[vmodl.ManagedObject, dict[str, object]]:
        """Read ``paths`` of ``objs`` in one round trip; unset properties are absent."""
        objs = list(objs)
        if not objs:
            return {}
        pc = vmodl.query.PropertyCollector
        return self._collect(pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=o) for o in objs],
                                           propSet=[pc.PropertySpec(type=kind, pathSet=paths)]))

    def inventory(self, kind: type, paths: list[str], root: vim.ManagedEntity | None = None,
                  ) -> dict[vmodl.ManagedObject, dict[str, object]]:
        """Every object of ``kind`` below ``root`` (default: the whole inventory) with
        ``paths`` read, in one container-view query. Objects the collector returns
        without ``paths[0]`` are left out (the simulator still lists some it deleted)."""
        view = self.content.viewManager.CreateContainerView(
            root or self.content.rootFolder, [kind], True)
        try:
            pc = vmodl.query.PropertyCollector
            found = self._collect(pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name="v", type=vim.view.ContainerView, path="view")])],
                propSet=[pc.PropertySpec(type=kind, pathSet=paths)]))
        finally:
            view.Destroy()
        return {obj: props for obj, props in found.items() if paths[0] in props}

    def named(self, kind: str, root: vim.ManagedEntity | None = None,
              ) -> dict[str, vmodl.ManagedObject]:
        """Name -> object for every ``kind`` (a KINDS key) below ``root`` (default:
        everything); of two objects with one name, the first found."""
        named: dict[str, vmodl.ManagedObject] = {}
        for obj, props in self.inventory(KINDS[kind], ["name"], root).items():
            named.setdefault(str(props["name"]), obj)
        return named

    def _find(self, kind: str, name: str, root: vim.ManagedEntity | None,
              where: str) -> vmodl.ManagedObject:
        found = self.named(kind, root)
        leaf = name.rstrip("/").split("/")[-1]
        if leaf in found:
            return found[leaf]
        candidates = ", ".join(sorted(found)) or "none"
        raise InputError(f"{kind} {name!r} not found{where}; the {kind}s there: {candidates}")

    def datacenter(self, name: str = "") -> vim.Datacenter:
        """By name, or the only one when ``name`` is empty."""
        found = self.named("datacenter")
        if name:
            return self._find("datacenter", name, None, " in this vCenter")
        if len(found) == 1:
            return next(iter(found.values()))
        raise InputError(f"is empty and this vCenter has {len(found)} datacenters "
                         f"({', '.join(sorted(found)) or 'none'}); set datacenter to one")

    def cluster(self, dc: vim.Datacenter, name: str) -> vim.ClusterComputeResource:
        """The cluster ``name`` in ``dc``; InputError listing the clusters there."""
        return self._find("cluster", name, dc.hostFolder, f" in datacenter {dc.name}")

    def host(self, dc: vim.Datacenter, name: str) -> vim.HostSystem:
        """The ESXi host ``name`` in ``dc``; InputError listing the hosts there."""
        return self._find("host", name, dc.hostFolder, f" in datacenter {dc.name}")

    def datastore(self, dc: vim.Datacenter, name: str) -> vim.Datastore:
        """The datastore ``name`` in ``dc``; InputError listing the datastores there."""
        return self._find("datastore", name, dc.datastoreFolder, f" in datacenter {dc.name}")

    def network(self, dc: vim.Datacenter, name: str) -> vim.Network:
        """The network ``name`` in ``dc``; InputError listing the networks there."""
        return self._find("network", name, dc.networkFolder, f" in datacenter {dc.name}")

    def resource_pool(self, compute: vim.ComputeResource | vim.HostSystem,
                      name: str = "") -> vim.ResourcePool:
        """The named pool under a cluster or host, or its root pool."""
        owner = compute.parent if isinstance(compute, vim.HostSystem) else compute
        root = owner.resourcePool
        if not name or name == "Resources":
            return root
        return self._find("resource pool", name, root, f" under {owner.name}")

    def folder(self, dc: vim.Datacenter, path: str = "") -> vim.Folder:
        """A VM folder by path relative to the datacenter's VM folder ("" is the root)."""
        folder = dc.vmFolder
        for part in [p for p in path.strip("/").split("/") if p]:
            children = {c.name: c for c in folder.childEntity if isinstance(c, vim.Folder)}
            if part not in children:
                raise InputError(f"folder {path!r} not found in datacenter {dc.name}; "
                                 f"the folders in {folder.name}: "
                                 f"{', '.join(sorted(children)) or 'none'}")
            folder = children[part]
        return folder

    def find_vm(self, dc: vim.Datacenter, name: str) -> vim.VirtualMachine | None:
        """The VM or template called ``name`` in ``dc`` (its last path part), or None."""
        return self.named("vm", dc.vmFolder).get(name.rstrip("/").split("/")[-1])

    def vm(self, dc: vim.Datacenter, name: str) -> vim.VirtualMachine:
        """The VM or template ``name`` in ``dc``; InputError listing the VMs there."""
        return self._find("vm", name, dc.vmFolder, f" in datacenter {dc.name}")

    def is_template(self, vm: vim.VirtualMachine) -> bool:
        """Whether ``vm`` is a template."""
        return bool(self.properties([vm], vim.VirtualMachine, ["config.template"])
                    .get(vm, {}).get("config.template"))

    def power_state(self, vm: vim.VirtualMachine) -> str:
        """``poweredOn``, ``poweredOff`` or ``suspended``."""
        return str(self.properties([vm], vim.VirtualMachine, ["runtime.powerState"])
                   .get(vm, {}).get("runtime.powerState", ""))

    # -- tasks -------------------------------------------------------------
    def wait(self, task: vim.Task, what: str,
             on_progress: Callable[[int], None] | None = None, timeout: float = 3600) -> object:
        """Wait for a task; a fault becomes a BuildError naming ``what`` failed and why."""
        deadline = time.monotonic() + timeout
        last = -1
        if on_progress is None and self.on_task is not None:
            on_progress = lambda percent: self.on_task(what, percent)  # noqa: E731
        while True:
            info = self.properties([task], vim.Task, ["info.state", "info.progress",
                                                      "info.error", "info.result"])[task]
            state = info.get("info.state")
            if state == vim.TaskInfo.State.success:
                if on_progress:
                    on_progress(100)
                return info.get("info.result")
            if state == vim.TaskInfo.State.error:
                error = info.get("info.error")
                raise BuildError(f"{what} failed: {fault_message(error)}")
            progress = info.get("info.progress") or 0
            if on_progress and progress != last:
                on_progress(progress)
                last = progress
            if time.monotonic() > deadline:
                raise BuildError(f"{what} did not finish within {timeout:.0f}s")
            time.sleep(0.2)

    def run(self, what: str, method: Callable[..., vim.Task], *args: object,
            **kwargs: object) -> object:
        """Start a task and wait for it; a fault raised by the call itself (the
        simulator raises some there, vCenter in the task) is reported alike."""
        try:
            task = method(*args, **kwargs)
        except vmodl.MethodFault as fault:
            raise BuildError(f"{what} failed: {fault_message(fault)}") from None
        return self.wait(task, what)

    # -- snapshots and templates ------------------------------------------
    def snapshots(self, vm: vim.VirtualMachine) -> list[Snapshot]:
        """Every snapshot of ``vm``, depth first. Reads ``snapshot`` through the
        property collector, which leaves it out when there is none."""
        info = self.properties([vm], vim.VirtualMachine, ["snapshot"]).get(vm, {}).get("snapshot")
        out: list[Snapshot] = []
        stack = list(reversed(info.rootSnapshotList)) if info else []
        while stack:
            tree = stack.pop()
            out.append(Snapshot(tree.name, tree.snapshot, tree.id))
            stack.extend(reversed(tree.childSnapshotList or []))
        return out

    def create_snapshot(self, vm: vim.VirtualMachine, name: str, description: str = "") -> None:
        """Snapshot ``vm`` (disks only, not quiesced) as ``name``."""
        self.run(f"snapshot {name!r} of {vm.name}", vm.CreateSnapshot_Task, name=name,
                 description=description, memory=False, quiesce=False)

    def revert(self, vm: vim.VirtualMachine, snapshot: Snapshot) -> None:
        """Bring ``vm`` back to ``snapshot``."""
        self.run(f"revert of {vm.name} to snapshot {snapshot.name!r}",
                 snapshot.ref.RevertToSnapshot_Task)

    def remove_snapshot(self, vm: vim.VirtualMachine, snapshot: Snapshot) -> None:
        """Remove ``snapshot`` (its children stay)."""
        self.run(f"removal of snapshot {snapshot.name!r} of {vm.name}",
                 snapshot.ref.RemoveSnapshot_Task, removeChildren=False)

    def power_off(self, vm: vim.VirtualMachine) -> None:
        """Power ``vm`` off if it is on."""
        if self.power_state(vm) == "poweredOn":
            self.run(f"power-off of {vm.name}", vm.PowerOffVM_Task)

    def mark_as_template(self, vm: vim.VirtualMachine) -> None:
        """Power ``vm`` off and turn it into a template."""
        self.power_off(vm)
        try:
            vm.MarkAsTemplate()
        except vmodl.MethodFault as fault:
            raise BuildError(f"marking {vm.name} as a template failed: "
                             f"{fault_message(fault)}") from None

    def finish_deployed(self, vm: vim.VirtualMachine, snapshot: str | None, template: bool,
                        report: Callable[[str], None]) -> None:
        """What deploy-ova asks of a VM it just made: a snapshot, then a template."""
        if snapshot:
            report(f"{vm.name}: snapshot {snapshot!r}")
            self.create_snapshot(vm, snapshot)
        if template:
            report(f"{vm.name}: marking as template")
            self.mark_as_template(vm)

    def mark_as_vm(self, vm: vim.VirtualMachine, pool: vim.ResourcePool,
                   host: vim.HostSystem | None = None) -> None:
        """Turn template ``vm`` into a VM that runs in ``pool`` (on ``host``)."""
        try:
            vm.MarkAsVirtualMachine(pool=pool, host=host)
        except vmodl.MethodFault as fault:
            raise BuildError(f"turning template {vm.name} into a VM failed: "
                             f"{fault_message(fault)}") from None

    def destroy(self, vm: vim.VirtualMachine) -> None:
        """Power off (if on) and delete a VM or template."""
        name = vm.name
        if not self.is_template(vm):
            self.power_off(vm)
        self.run(f"deletion of {name}", vm.Destroy_Task)

    def set_extra_config(self, vm: vim.VirtualMachine, values: dict[str, str]) -> None:
        """Set ``values`` in ``vm``'s extraConfig (guestinfo.* keys and the like)."""
        options = [vim.option.OptionValue(key=k, value=v) for k, v in values.items()]
        self.run(f"reconfiguration of {vm.name}", vm.ReconfigVM_Task,
                 vim.vm.ConfigSpec(extraConfig=options))

    def extra_config(self, vm: vim.VirtualMachine) -> dict[str, str]:
        """``vm``'s extraConfig as key -> value."""
        props = self.properties([vm], vim.VirtualMachine, ["config.extraConfig"]).get(vm, {})
        return {o.key: str(o.value) for o in props.get("config.extraConfig", [])}

    def guest_address(self, vm: vim.VirtualMachine) -> str:
        """The VM's IP address as VMware Tools reports it."""
        props = self.properties([vm], vim.VirtualMachine, ["guest.ipAddress"]).get(vm, {})
        address = props.get("guest.ipAddress")
        if not address:
            raise BuildError(f"{vm.name} reports no IP address; is it powered on, with "
                             "VMware Tools (open-vm-tools) running?")
        return str(address)


@contextmanager
def datacenter_session(settings: VSphereSettings,
                       on_task: Callable[[str, int], None] | None = None,
                       ) -> Iterator[tuple[Driver, vim.Datacenter]]:
    """Log in with ``settings`` and yield a driver and the configured datacenter;
    log out at the end. The shape of most vSphere work here."""
    with Session(settings) as si:
        driver = Driver(si, on_task)
        yield driver, driver.datacenter(settings.datacenter)
