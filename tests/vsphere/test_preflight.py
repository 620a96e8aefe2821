"""Preflight against the simulator: each wrong name gets its own message with candidates."""

from __future__ import annotations

import fnmatch

import pytest
from helpers.planning import plan_for
from helpers.simulator import own_simulator

from imagebuilder.config.options import BuildOptions
from imagebuilder.errors import InputError
from imagebuilder.vcsim import write_vsphere_json
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.preflight import preflight
from imagebuilder.vsphere.session import Session, VSphereSettings
from imagebuilder.vsphere.steps import prepare_template

pytestmark = [pytest.mark.vcsim, own_simulator("module", password="module-Secret-1")]


def sim_plan(checkout, vcsim, tmp_path, target="node-ova-vsphere-clone-ubuntu-2204",
             options=None, **vsphere):
    vsphere.setdefault("template", "DC0_C0_RP0_VM0")
    files = write_vsphere_json(vcsim, tmp_path / "v.json", **vsphere)
    return plan_for(checkout, target, var_files=[files], options=options)


def problems(checkout, vcsim, tmp_path, **kw):
    with pytest.raises(InputError) as info:
        preflight([sim_plan(checkout, vcsim, tmp_path, **kw)])
    assert info.value.exit_code == 2
    prefix = "build-node-ova-vsphere-clone-ubuntu-2204: "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p[len(prefix):] for p in info.value.problems]


def test_a_good_configuration_passes(checkout, vcsim, tmp_path):
    preflight([sim_plan(checkout, vcsim, tmp_path)])


@pytest.mark.parametrize("field,value,message", [
    ("datacenter", "DC9", "datacenter 'DC9' not found in this vCenter; the datacenters "
                          "there: DC0"),
    ("cluster", "C9", "cluster 'C9' not found in datacenter DC0; the clusters there: DC0_C0"),
    ("datastore", "nfs", "datastore 'nfs' not found in datacenter DC0; the datastores "
                         "there: LocalDS_0"),
    ("network", "prod", "network 'prod' not found in datacenter DC0; the networks there: "
                        "DC0_DVPG0, DVS0-DVUplinks-*, VM Network"),
    ("folder", "k8s/templates", "folder 'k8s/templates' not found in datacenter DC0; the "
                                "folders in vm: none"),
    ("template", "ubuntu-base", "'ubuntu-base' not found in datacenter DC0; the templates "
                                "there: none"),
])
def test_each_wrong_name(checkout, vcsim, tmp_path, field, value, message):
    [found] = problems(checkout, vcsim, tmp_path, **{field: value})
    assert fnmatch.fnmatchcase(found, f"{tmp_path}/v.json: {field}: {message}"), found


def test_wrong_host_lists_the_hosts(checkout, vcsim, tmp_path):
    found = problems(checkout, vcsim, tmp_path, cluster="", host="esx-9")
    assert found == [f"{tmp_path}/v.json: host: host 'esx-9' not found in datacenter DC0; "
                     "the hosts there: DC0_C0_H0, DC0_C0_H1, DC0_C0_H2, DC0_H0"]


def test_several_problems_at_once(checkout, vcsim, tmp_path):
    found = problems(checkout, vcsim, tmp_path, datastore="nfs", network="prod", folder="x")
    assert [p.split(": ")[1] for p in found] == ["datastore", "network", "folder"]


def test_bad_credentials(checkout, vcsim, tmp_path):
    found = problems(checkout, vcsim, tmp_path, password="wrong-password")
    assert found == [f"login failed for user {vcsim.username} at host {vcsim.host}: check "
                     "username and password (or VSPHERE_PASSWORD)"]


def test_existing_vm_name_needs_force(checkout, vcsim, tmp_path):
    plan = sim_plan(checkout, vcsim, tmp_path)
    vm_name = plan.merged.get("vm_name")
    settings = VSphereSettings.from_vars(plan.merged.values)
    with Session(settings) as si:
        driver = Driver(si)
        dc = driver.datacenter("DC0")
        source = driver.vm(dc, "DC0_H0_VM1")
        pool = driver.resource_pool(driver.host(dc, "DC0_H0"))
        driver.run("clone", source.CloneVM_Task, folder=dc.vmFolder, name=vm_name,
                   spec=__import__("pyVmomi").vim.vm.CloneSpec(
                       location=__import__("pyVmomi").vim.vm.RelocateSpec(pool=pool)))
    try:
        found = problems(checkout, vcsim, tmp_path)
        assert found == [f"vm_name: a VM named {vm_name!r} already exists in datacenter DC0; "
                         "pass --force to replace it, or clean it up first"]
        preflight([sim_plan(checkout, vcsim, tmp_path, options=BuildOptions(force=True))])
    finally:
        with Session(settings) as si:
            driver = Driver(si)
            vm = driver.find_vm(driver.datacenter("DC0"), vm_name)
            if vm is not None:
                driver.destroy(vm)


def test_linked_clone_needs_a_snapshot_or_prepare_template(checkout, vcsim, tmp_path):
    plan = sim_plan(checkout, vcsim, tmp_path, template="DC0_C0_RP0_VM1", linked_clone="true")
    settings = VSphereSettings.from_vars(plan.merged.values)
    with Session(settings) as si:
        driver = Driver(si)
        driver.mark_as_template(driver.vm(driver.datacenter("DC0"), "DC0_C0_RP0_VM1"))
    found = problems(checkout, vcsim, tmp_path, template="DC0_C0_RP0_VM1", linked_clone="true")
    assert found == [f"{tmp_path}/v.json: linked_clone: template 'DC0_C0_RP0_VM1' has no "
                     "snapshot, which a linked clone needs; pass --prepare-template (it is "
                     "turned into a VM, snapshotted and marked as a template again) or set "
                     "linked_clone to false"]
    preflight([sim_plan(checkout, vcsim, tmp_path, template="DC0_C0_RP0_VM1", linked_clone="true",
                        options=BuildOptions(prepare_template=True))])
    with Session(settings) as si:
        driver = Driver(si)
        dc = driver.datacenter("DC0")
        template = driver.vm(dc, "DC0_C0_RP0_VM1")
        prepare_template(driver, settings, dc, template)
        assert driver.is_template(template)
        assert [s.name for s in driver.snapshots(template)] == ["imagebuilder-base"]
    preflight([sim_plan(checkout, vcsim, tmp_path, template="DC0_C0_RP0_VM1", linked_clone="true")])
