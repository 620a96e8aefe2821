"""Testing built images: cloud-init injection against the simulator, keys, ssh commands."""

from __future__ import annotations

import base64
import os
import stat
import subprocess

import pytest
from helpers.common import REPO, write_json
from helpers.simulator import own_simulator

from imagebuilder.config.knobs import Knobs
from imagebuilder.errors import InputError
from imagebuilder.imagetest import access as imagetest
from imagebuilder.vcsim import vsphere_config
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.session import Session, VSphereSettings

#: The tests that change the simulator's VMs share one of their own.
OWN = own_simulator("module", password="module-Secret-1")


@pytest.fixture
def knobs(vcsim, tmp_path):
    return Knobs.from_env({"PACKER_VAR_FILES": str(write_json(tmp_path / "v.json",
                                                               vsphere_config(vcsim)))})


def snapshot_names(vcsim, vm_name):
    with Session(VSphereSettings.from_vars(vsphere_config(vcsim), env={})) as si:
        driver = Driver(si)
        vm = driver.vm(driver.datacenter("DC0"), vm_name)
        return [s.name for s in driver.snapshots(vm)], driver.extra_config(vm)


def power_off(vcsim, vm_name):
    with Session(VSphereSettings.from_vars(vsphere_config(vcsim), env={})) as si:
        driver = Driver(si)
        driver.power_off(driver.vm(driver.datacenter("DC0"), vm_name))


def test_keys_are_generated_once_private_and_ignored(checkout):
    key = imagetest.ensure_keys(checkout)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.with_suffix(".capi.pub").read_text().startswith("ssh-rsa ")
    assert imagetest.ensure_keys(checkout) == key
    ignored = subprocess.run(["git", "check-ignore", "cloudinit/id_rsa.capi",
                              "cloudinit/id_rsa.capi.pub"], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ["cloudinit/id_rsa.capi", "cloudinit/id_rsa.capi.pub"]


@pytest.mark.vcsim
@OWN
def test_cloudinit_injection_twice_leaves_two_snapshots(checkout, vcsim, knobs):
    power_off(vcsim, "DC0_H0_VM0")
    for _ in range(2):
        imagetest.cloudinit_vm(checkout, knobs, "DC0_H0_VM0", report=lambda text: None)
    names, extra = snapshot_names(vcsim, "DC0_H0_VM0")
    assert names == ["new", "cloudinit"]
    user = base64.b64decode(extra["guestinfo.userdata"]).decode()
    public = (checkout.root / "cloudinit" / "id_rsa.capi.pub").read_text().strip()
    assert f"      - {public}\n" in user and user.startswith("#cloud-config")
    assert base64.b64decode(extra["guestinfo.metadata"]) == \
        (checkout.root / "cloudinit" / "meta-data").read_bytes()
    assert extra["guestinfo.userdata.encoding"] == extra["guestinfo.metadata.encoding"] == "base64"


@pytest.mark.vcsim
@OWN
def test_cloudinit_with_own_files(checkout, vcsim, knobs, tmp_path):
    power_off(vcsim, "DC0_H0_VM1")
    mine = tmp_path / "ud"
    mine.write_text("#cloud-config\nhostname: mine\n")
    imagetest.cloudinit_vm(checkout, knobs, "DC0_H0_VM1", user_data_file=mine,
                           report=lambda text: None)
    _, extra = snapshot_names(vcsim, "DC0_H0_VM1")
    assert base64.b64decode(extra["guestinfo.userdata"]) == mine.read_bytes()


@pytest.mark.vcsim
@OWN
def test_cloudinit_refuses_running_vms_and_templates(checkout, vcsim, knobs):
    with pytest.raises(InputError, match="DC0_C0_RP0_VM0 is powered on: power it off first"):
        imagetest.cloudinit_vm(checkout, knobs, "DC0_C0_RP0_VM0")
    with Session(VSphereSettings.from_vars(vsphere_config(vcsim), env={})) as si:
        driver = Driver(si)
        driver.mark_as_template(driver.vm(driver.datacenter("DC0"), "DC0_C0_RP0_VM1"))
    with pytest.raises(InputError, match="DC0_C0_RP0_VM1 is a template: cloud-init data goes"):
        imagetest.cloudinit_vm(checkout, knobs, "DC0_C0_RP0_VM1")
    with pytest.raises(InputError, match="vm 'nope' not found in datacenter DC0"):
        imagetest.cloudinit_vm(checkout, knobs, "nope")


@pytest.mark.vcsim
@OWN
def test_ssh_vm_without_guest_ip(checkout, vcsim, knobs):
    from imagebuilder.errors import BuildError
    power_off(vcsim, "DC0_H0_VM0")
    with pytest.raises(BuildError, match="DC0_H0_VM0 reports no IP address"):
        imagetest.vm_ssh_argv(checkout, knobs, "DC0_H0_VM0")


def test_image_ssh_needs_vmrun(checkout, tmp_path, monkeypatch):
    build = tmp_path / "ubuntu-2204-kube-v1.37.1"
    build.mkdir()
    (build / "ubuntu-2204-kube-v1.37.1.vmx").write_text("")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(InputError, match="vmrun: not found; it comes with VMware Workstation"):
        imagetest.local_ssh_argv(checkout, build)
    # VMware Workstation cannot run here: a script stands in for vmrun's side of the boundary
    fake = tmp_path / "bin" / "vmrun"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/vmrun.args\necho 192.0.2.10\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    argv = imagetest.local_ssh_argv(checkout, build, "builder")
    assert argv[-1] == "builder@192.0.2.10"
    assert argv[:3] == ["ssh", "-i", str(checkout.root / "cloudinit" / "id_rsa.capi")]
    assert (tmp_path / "vmrun.args").read_text().split() == [
        "getGuestIPAddress", str(build / "ubuntu-2204-kube-v1.37.1.vmx"), "-wait"]
    with pytest.raises(InputError, match="no .vmx here"):
        imagetest.local_ssh_argv(checkout, tmp_path / "bin")
