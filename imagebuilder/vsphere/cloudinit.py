"""Cloud-init data for testing a built image, through the VMware guestinfo datasource.

Replaces upstream's ``hack/image-govc-cloudinit.sh``: the VM goes back to
its pristine snapshot ``new`` (made on first use), gets the user-data and
meta-data as base64 guestinfo keys, and a snapshot ``cloudinit`` of that
state, so that every test boot starts from the same place. Snapshots of other
names are kept (upstream removes every snapshot but ``new``).
"""

from __future__ import annotations

import base64
from typing import Callable

from pyVmomi import vim

from imagebuilder.errors import InputError
from imagebuilder.vsphere.driver import Driver

PRISTINE = "new"
CONFIGURED = "cloudinit"


def guestinfo(user_data: bytes, meta_data: bytes) -> dict[str, str]:
    """The four guestinfo keys cloud-init's VMware datasource reads."""
    return {
        "guestinfo.userdata": base64.b64encode(user_data).decode(),
        "guestinfo.userdata.encoding": "base64",
        "guestinfo.metadata": base64.b64encode(meta_data).decode(),
        "guestinfo.metadata.encoding": "base64",
    }


def inject(driver: Driver, vm: vim.VirtualMachine, user_data: bytes, meta_data: bytes,
           report: Callable[[str], None] = lambda text: None) -> None:
    """Reset ``vm`` to snapshot ``new`` (or make it), set the cloud-init
    guestinfo keys, and snapshot the result as ``cloudinit``."""
    name = vm.name
    if driver.is_template(vm):
        raise InputError(f"{name} is a template: cloud-init data goes into a VM; clone or "
                         "deploy the template first and name that VM")
    if driver.power_state(vm) == "poweredOn":
        raise InputError(f"{name} is powered on: power it off first, so that it boots with "
                         "the new cloud-init data from a clean snapshot")
    snapshots = driver.snapshots(vm)
    pristine = next((s for s in snapshots if s.name == PRISTINE), None)
    if pristine is None:
        report(f"{name}: snapshot {PRISTINE!r} of the pristine image")
        driver.create_snapshot(vm, PRISTINE, "the image as built, before cloud-init data")
    else:
        report(f"{name}: back to snapshot {PRISTINE!r}")
        driver.revert(vm, pristine)
        # Only our own earlier CONFIGURED snapshot goes; a snapshot someone else took
        # (upstream's script removes every one but 'new') is kept.
        for snapshot in driver.snapshots(vm):
            if snapshot.name == CONFIGURED:
                report(f"{name}: removing the earlier snapshot {snapshot.name!r}")
                driver.remove_snapshot(vm, snapshot)
    report(f"{name}: setting guestinfo user-data and meta-data")
    driver.set_extra_config(vm, guestinfo(user_data, meta_data))
    driver.create_snapshot(vm, CONFIGURED, "cloud-init data in guestinfo")
