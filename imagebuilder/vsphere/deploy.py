"""``deploy-ova``: an OVA into vCenter, as users script it with ``govc import.ova``.

The OVA is checked as ``ova-verify`` checks it before anything is asked of
vCenter (its disks' digests as they upload). Ctrl-C, SIGTERM and SIGHUP
abort the upload lease and remove the half-imported VM, as any failure does;
a vCenter that went away meanwhile is reported in one line.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
from pathlib import Path
from typing import Callable

from pyVmomi import vim, vmodl

from imagebuilder.errors import BuildError, ImageBuilderError, InputError
from imagebuilder.ova.progress import ByteProgress
from imagebuilder.running.stopping import signal_of, stop_on_signals
from imagebuilder.vsphere.driver import Driver, datacenter_session
from imagebuilder.vsphere.ovf_import import OvaPackage, import_ova
from imagebuilder.vsphere.session import VSphereSettings

Report = Callable[[str], None]


def deploy_ova(settings: VSphereSettings, ova: Path, name: str, *, folder: str | None = None,
               datastore: str | None = None, network: str | None = None,
               template: bool = False, snapshot: str | None = None,
               progress: ByteProgress | None = None,
               report: Report = lambda text: None,
               on_task: Callable[[str, int], None] | None = None) -> None:
    """Import ``ova`` as ``name`` where ``settings`` (vsphere.json) place VMs; the
    folder, datastore and network may be overridden. Then optionally snapshot it
    and mark it as a template. InputError (nothing done) for a missing OVA or a
    name in use, BuildError for an OVA ``ova-verify`` would refuse or a failed
    import; a signal (SIGTERM, SIGHUP, Ctrl-C) raises KeyboardInterrupt once
    the import is undone."""
    with _stopping():
        package = OvaPackage.open(Path(ova))
        try:
            with datacenter_session(settings, on_task) as (driver, dc):
                if driver.find_vm(dc, name) is not None:
                    raise InputError(f"a VM or template named {name!r} already exists in "
                                     f"datacenter {dc.name}; choose another --name or remove "
                                     "it first")
                report(f"importing {ova} as {name}")
                try:
                    vm = import_ova(driver.si, package, name, datacenter=dc,
                                    cluster=settings.cluster, host=settings.host,
                                    resource_pool=settings.resource_pool,
                                    datastore=datastore or settings.datastore,
                                    folder=settings.folder if folder is None else folder,
                                    network=network or settings.network,
                                    verify_tls=not settings.insecure, progress=progress,
                                    log=report)
                except BaseException as exc:
                    _undo(driver, dc, name, exc, report)
                    raise
                driver.finish_deployed(vm, snapshot, template, report)
        except (OSError, http.client.HTTPException, vmodl.MethodFault) as exc:
            raise BuildError(f"deploy-ova {name}: vCenter {settings.server} failed or went "
                             f"away: {_reason(exc)}") from None


def _undo(driver: Driver, dc: vim.Datacenter, name: str, exc: BaseException,
          report: Report) -> None:
    """Make sure the VM of an aborted import is gone (vCenter discards it). When vCenter
    cannot be asked (it went away), say so in a line: the import's own error is
    what the caller reports."""
    if isinstance(exc, KeyboardInterrupt):
        report(f"stopped by {_signal_name(exc)}: undoing the import of {name}")
    try:
        left = driver.find_vm(dc, name)
        if left is not None:
            report(f"removing the half-imported {name}")
            driver.destroy(left)
    except Exception as cleanup:  # noqa: BLE001 - reported; the import's error is raised
        report(f"could not check for a half-imported {name} ({_reason(cleanup)}); if "
               "vCenter lists it, remove it there")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageBuilderError):
        return exc.message[:200]
    if isinstance(exc, vmodl.MethodFault):
        return (exc.msg or type(exc).__name__)[:200]
    return f"{type(exc).__name__}: {exc}"[:200]


def _stopping() -> contextlib.AbstractContextManager:
    """SIGTERM and SIGHUP stop the deploy, unless a caller (a build run) handles
    them already: its handler raises once for the whole run."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        return stop_on_signals()
    return contextlib.nullcontext()


def _signal_name(exc: BaseException) -> str:
    return signal.Signals(signal_of(exc)).name
