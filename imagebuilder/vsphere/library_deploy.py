"""Deploying from a Content Library, and publishing as the last step of a build.

``deploy_from_library`` is ``deploy-ova --from-library LIB/ITEM``: vCenter
deploys the OVF item (``vcenter/ovf/library-item ?~action=deploy``) where
vsphere.json places VMs, then the VM is optionally snapshotted and marked as
a template, as ``deploy-ova`` does with an OVA file. ``LibraryPublishStep``
publishes a build's OVA when ``content_library`` (or EKS Anywhere's
``vsphere_library_name``) is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pyVmomi import vim

from imagebuilder.errors import BuildError, ImageBuilderError, InputError
from imagebuilder.vsphere.driver import datacenter_session
from imagebuilder.vsphere.library import RestSession, find_item, find_library
from imagebuilder.vsphere.publish import PublishInterrupted, publish_ova
from imagebuilder.vsphere.session import VSphereSettings
from imagebuilder.vsphere.settings import vm_name_problem

#: The template's variables that ask for the last step (ours, and EKS Anywhere's name).
LIBRARY_VARIABLES = ("content_library", "vsphere_library_name")
NETWORK_NAME = "nic0"


def split_library_item(text: str) -> tuple[str, str]:
    """``LIB/ITEM`` -> (library, item); InputError when either part is empty."""
    library, sep, item = text.partition("/")
    if not sep or not library.strip() or not item.strip():
        raise InputError(f"--from-library {text!r}: give LIBRARY/ITEM, e.g. "
                         "node-images/ubuntu-2204-kube-v1.37.1")
    return library.strip(), item.strip()


def deploy_from_library(settings: VSphereSettings, library_name: str, item_name: str,
                        name: str, *, folder: str | None = None, datastore: str | None = None,
                        network: str | None = None, template: bool = False,
                        snapshot: str | None = None,
                        report: Callable[[str], None] = lambda _: None) -> str:
    """Deploy the library item as the VM ``name``; returns its managed object id.
    A name vCenter cannot take is InputError before any call to vCenter."""
    problem = vm_name_problem(name)
    if problem:
        raise InputError(f"--name: {problem}")
    with datacenter_session(settings) as (driver, dc):
        if driver.find_vm(dc, name) is not None:
            raise InputError(f"a VM or template named {name!r} already exists in datacenter "
                             f"{dc.name}; choose another --name or remove it first")
        compute = driver.cluster(dc, settings.cluster) if settings.cluster \
            else driver.host(dc, settings.host)
        pool = driver.resource_pool(compute, settings.resource_pool)
        target: dict[str, Any] = {"resource_pool_id": pool._moId,
                                  "folder_id": driver.folder(
                                      dc, settings.folder if folder is None else folder)._moId}
        if isinstance(compute, vim.HostSystem):
            target["host_id"] = compute._moId
        spec = {"name": name, "accept_all_EULA": True,
                "default_datastore_id": driver.datastore(
                    dc, datastore or settings.datastore)._moId,
                "network_mappings": [{"key": NETWORK_NAME, "value": driver.network(
                    dc, network or settings.network)._moId}]}
        with RestSession(settings) as rest:
            library = find_library(rest, library_name)
            item = find_item(rest, library, item_name) if library else None
            if item is None:
                raise InputError(f"--from-library {library_name}/{item_name}: "
                                 + ("no such library" if library is None else
                                    f"library {library_name!r} has no item {item_name!r}"))
            report(f"deploying {library_name}/{item_name} as {name}")
            result = rest.request("POST", f"/com/vmware/vcenter/ovf/library-item/id:{item.id}",
                                  {"deployment_spec": spec, "target": target},
                                  action="deploy") or {}
        if not result.get("succeeded"):
            raise BuildError(f"vCenter could not deploy {library_name}/{item_name}: "
                             f"{_deploy_error(result)}")
        vm = driver.find_vm(dc, name)
        if vm is None:
            raise BuildError(f"vCenter reported {name!r} deployed but it is not there")
        try:
            driver.finish_deployed(vm, snapshot, template, report)
        except BaseException:
            report(f"removing {name}: it was deployed by this call and is not finished")
            driver.destroy(vm)
            raise
        return vm._moId


def _deploy_error(result: dict) -> str:
    error = result.get("error") or {}
    texts = []
    for entry in error.get("errors") or []:
        for message in ((entry.get("error") or {}).get("messages") or []):
            texts.append(str(message.get("default_message", message)))
    return "; ".join(texts) or "no reason given"


def library_settings(plan: Any) -> tuple[str, bool]:
    """The library a build publishes to (``""``: none) and whether it may create it."""
    name = next((plan.merged.get(v).strip() for v in LIBRARY_VARIABLES
                 if (plan.merged.get(v) or "").strip()), "")
    return name, (plan.merged.get("content_library_create") or "").lower() == "true"


def vsphere_settings_of(plan: Any) -> VSphereSettings:
    """The vCenter of a vSphere build (its merged variables), else of ova/vsphere.json."""
    if plan.target.hypervisor.vsphere:
        from imagebuilder.vsphere.preflight import settings_of
        return settings_of(plan)
    return VSphereSettings.from_checkout(plan.checkout, plan.knobs)


class LibraryPublishStep:
    """The opt-in last step: publish the build's OVA to its Content Library."""

    name = "content-library"

    def run(self, state: Any) -> None:
        """Publish ``<artifact_dir>/*.ova``; ``--force`` replaces the item."""
        plan = state.plan
        library, create = library_settings(plan)
        ovas = sorted(Path(plan.artifact_dir).glob("*.ova"))
        if len(ovas) != 1:
            raise BuildError(f"{plan.artifact_dir}: {len(ovas)} OVAs; the build should have "
                             f"left exactly one to publish to library {library!r}")
        try:
            published = publish_ova(vsphere_settings_of(plan), ovas[0], library, create=create,
                                    force=plan.options.force, report=state.report,
                                    cancel=state.cancel)
        except PublishInterrupted:
            from imagebuilder.running.steps import Cancelled
            raise Cancelled("publishing to the content library was stopped") from None
        except ImageBuilderError as exc:
            raise BuildError(f"publishing {ovas[0].name} to library {library!r}: "
                             f"{exc.message}", exc.problems) from None
        state.data["library_item"] = published.item

    def cleanup(self, state: Any) -> None:
        """Nothing: a failed publish has failed its session and removed its item."""


def publish_target(target: Any, library: str = "", item: str = "", *, create: bool = False,
                   force: bool = False, progress: Any = None,
                   report: Callable[[str], None] = lambda _: None) -> Any:
    """``publish-node-ova-<hypervisor>-<os>``: publish the OVA the target's last build
    left, to ``library`` (default: its ``content_library``/``vsphere_library_name``)."""
    from imagebuilder.config.checkout import find_checkout
    from imagebuilder.config.knobs import Knobs
    from imagebuilder.planning.plan import plan_build

    plan = plan_build(find_checkout(), target, Knobs.from_env(), "build", strict=False)
    configured, may_create = library_settings(plan)
    library = library or configured
    if not library:
        raise InputError(f"{target.name}: no library to publish to; pass --library NAME or set "
                         "content_library (or vsphere_library_name) in a var file")
    ovas = sorted(Path(plan.artifact_dir).glob("*.ova"))
    if len(ovas) != 1:
        raise InputError(f"{plan.artifact_dir}: {len(ovas) or 'no'} OVA"
                         f"{'s' if len(ovas) != 1 else ''}; build {target.name} first")
    return publish_ova(vsphere_settings_of(plan), ovas[0], library, item or None,
                       create=create or may_create, force=force, progress=progress,
                       report=report)


def library_round_trip(settings: VSphereSettings, ova: Path, library: str,
                       report: Callable[[str], None] = lambda _: None) -> str:
    """What ``vcsim-build`` does with each OVA: publish it to ``library`` (made when
    missing; the item replaced) and deploy it back from there as a template named
    ``<name>-from-library``; returns that name."""
    published = publish_ova(settings, ova, library, create=True, force=True, report=report)
    name = f"{published.item.name}-from-library"
    deploy_from_library(settings, library, published.item.name, name, template=True,
                        report=report)
    return name
