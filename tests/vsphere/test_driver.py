"""The pyvmomi driver against the vCenter simulator: login, lookups, tasks, snapshots."""

from __future__ import annotations

import pytest
from helpers.simulator import own_simulator

from imagebuilder.errors import BuildError, InputError
from imagebuilder.vcsim import vsphere_config
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.session import Session, VSphereSettings

pytestmark = [pytest.mark.vcsim, own_simulator("module", password="module-Secret-1")]


@pytest.fixture
def settings(vcsim) -> VSphereSettings:
    return VSphereSettings.from_vars(vsphere_config(vcsim), env={})


@pytest.fixture
def driver(settings):
    with Session(settings) as si:
        yield Driver(si)


def test_bad_credentials(vcsim, settings):
    wrong = VSphereSettings.from_vars(vsphere_config(vcsim, password="nope"), env={})
    with pytest.raises(InputError) as info:
        Session(wrong).__enter__()
    assert str(info.value).startswith(f"login failed for user user at host {vcsim.host}")
    assert info.value.exit_code == 2


def test_password_from_environment_and_tls_verification(vcsim):
    values = vsphere_config(vcsim, password="wrong")
    assert VSphereSettings.from_vars(values, env={"VSPHERE_PASSWORD": "pass"}).password == "pass"
    strict = VSphereSettings.from_vars(vsphere_config(vcsim, insecure_connection="false"), env={})
    with pytest.raises(InputError, match="cannot verify the certificate of 127.0.0.1"):
        Session(strict).__enter__()


def test_lookups_and_candidates(driver):
    dc = driver.datacenter("")  # the only one
    assert dc.name == "DC0"
    assert driver.cluster(dc, "DC0_C0").name == "DC0_C0"
    assert driver.datastore(dc, "LocalDS_0").name == "LocalDS_0"
    assert driver.network(dc, "VM Network").name == "VM Network"
    assert driver.folder(dc, "") == dc.vmFolder
    with pytest.raises(InputError) as info:
        driver.datastore(dc, "nfs-01")
    assert str(info.value) == ("datastore 'nfs-01' not found in datacenter DC0; "
                               "the datastores there: LocalDS_0")
    with pytest.raises(InputError, match="the hosts there: DC0_C0_H0, DC0_C0_H1, DC0_C0_H2, DC0_H0"):
        driver.host(dc, "esx-9")
    with pytest.raises(InputError, match="folder 'templates' not found in datacenter DC0"):
        driver.folder(dc, "templates")
    assert driver.find_vm(dc, "no-such-vm") is None


def test_snapshots_and_templates(driver):
    dc = driver.datacenter("DC0")
    vm = driver.vm(dc, "DC0_H0_VM0")
    assert driver.snapshots(vm) == []  # no snapshot: must not crash the simulator
    driver.create_snapshot(vm, "base")
    driver.create_snapshot(vm, "child")
    assert [s.name for s in driver.snapshots(vm)] == ["base", "child"]
    driver.revert(vm, driver.snapshots(vm)[0])
    driver.remove_snapshot(vm, driver.snapshots(vm)[1])
    assert [s.name for s in driver.snapshots(vm)] == ["base"]
    driver.mark_as_template(vm)
    assert driver.is_template(vm)
    pool = driver.resource_pool(driver.host(dc, "DC0_H0"))
    driver.mark_as_vm(vm, pool, driver.host(dc, "DC0_H0"))
    assert not driver.is_template(vm)
    driver.remove_snapshot(vm, driver.snapshots(vm)[0])


def test_task_fault_becomes_a_build_error(driver):
    dc = driver.datacenter("DC0")
    vm = driver.vm(dc, "DC0_H0_VM1")
    with pytest.raises(BuildError, match="snapshot 'x' of DC0_H0_VM1 failed: NotFound: snapshot not found"):
        driver.run("snapshot 'x' of DC0_H0_VM1", vm.RevertToCurrentSnapshot_Task)


def test_extra_config_and_destroy(driver):
    dc = driver.datacenter("DC0")
    vm = driver.vm(dc, "DC0_C0_RP0_VM1")
    driver.set_extra_config(vm, {"guestinfo.test": "1"})
    assert driver.extra_config(vm)["guestinfo.test"] == "1"
    driver.destroy(vm)
    assert driver.find_vm(dc, "DC0_C0_RP0_VM1") is None
