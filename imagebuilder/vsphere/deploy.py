"""``deploy-ova``: an OVA into vCenter, as users script it with ``govc import.ova``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from imagebuilder.errors import InputError
from imagebuilder.ova.progress import ByteProgress
from imagebuilder.vsphere.driver import datacenter_session
from imagebuilder.vsphere.ovf_import import import_ova
from imagebuilder.vsphere.session import VSphereSettings


def deploy_ova(settings: VSphereSettings, ova: Path, name: str, *, folder: str | None = None,
               datastore: str | None = None, network: str | None = None,
               template: bool = False, snapshot: str | None = None,
               progress: ByteProgress | None = None,
               report: Callable[[str], None] = lambda text: None,
               on_task: Callable[[str, int], None] | None = None) -> None:
    """Import ``ova`` as ``name`` where ``settings`` (vsphere.json) place VMs; the
    folder, datastore and network may be overridden. Then optionally snapshot it
    and mark it as a template."""
    if not Path(ova).is_file():
        raise InputError(f"{ova}: no such OVA")
    with datacenter_session(settings, on_task) as (driver, dc):
        if driver.find_vm(dc, name) is not None:
            raise InputError(f"a VM or template named {name!r} already exists in datacenter "
                             f"{dc.name}; choose another --name or remove it first")
        report(f"importing {ova} as {name}")
        try:
            vm = import_ova(driver.si, Path(ova), name, datacenter=dc, cluster=settings.cluster,
                            host=settings.host, resource_pool=settings.resource_pool,
                            datastore=datastore or settings.datastore,
                            folder=settings.folder if folder is None else folder,
                            network=network or settings.network,
                            verify_tls=not settings.insecure, progress=progress, log=report)
        except BaseException:
            # vCenter discards the VM of an aborted import; make sure of it.
            left = driver.find_vm(dc, name)
            if left is not None:
                report(f"removing the half-imported {name}")
                driver.destroy(left)
            raise
        if snapshot:
            report(f"{name}: snapshot {snapshot!r}")
            driver.create_snapshot(vm, snapshot)
        if template:
            report(f"{name}: marking as template")
            driver.mark_as_template(vm)
