"""vSphere builds with the real Packer against the simulator: prerequisites, linked
clones from prepared templates, and no VM left behind by a failed build."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from helpers.common import BIN, REPO, alive, connect, invoke, objects, write_json
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder.vcsim.simulation import simulator_var_files
from imagebuilder.vsphere.driver import Driver

pytestmark = [pytest.mark.vcsim, pytest.mark.packer, pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed"),
              own_simulator("function", password="fresh-Secret-1", power_off_after=0.5)]


def files_for(vcsim, tmp_path, **vsphere) -> str:
    return " ".join(map(str, simulator_var_files(vcsim, tmp_path / "vcsim", **vsphere)))


def vms(vcsim) -> dict[str, bool]:
    with connect(vcsim) as si:
        found = objects(si, vim.VirtualMachine)
        props = Driver(si).properties(found.values(), vim.VirtualMachine, ["config.template"])
        return {name: bool(props.get(vm, {}).get("config.template")) for name, vm in found.items()}


def test_clone_builds_its_missing_base_first_then_finds_it_up_to_date(checkout, vcsim, tmp_path):
    env = {"PACKER_VAR_FILES": files_for(vcsim, tmp_path)}
    first = invoke("build-node-ova-vsphere-clone-ubuntu-2204", env_extra=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "node-ova-vsphere-base-ubuntu-2204: base is missing; building it first" in first.stdout
    found = vms(vcsim)
    assert found["ubuntu-2204-base"] is True  # the base template, with its snapshot
    assert found["ubuntu-2204-kube-v1.37.1"] is True  # the linked clone, as a template
    with connect(vcsim) as si:
        driver = Driver(si)
        base = driver.find_vm(driver.datacenter("DC0"), "ubuntu-2204-base")
        assert [s.name for s in driver.snapshots(base)] == ["Created by Packer"]
        extra = driver.extra_config(base)
    assert extra["guestinfo.imagebuilder.os"] == "ubuntu-2204"
    assert len(extra["guestinfo.imagebuilder.inputs_hash"]) == 64
    base_log = checkout.output_dir / "logs" / "build-node-ova-vsphere-base-ubuntu-2204.log"
    assert "Creating VM..." in base_log.read_text()
    assert list((checkout.output_dir / ".packer_cache").iterdir())  # the ISO, not in the tree
    assert not (REPO / "packer_cache").exists()

    second = invoke("build-node-ova-vsphere-clone-ubuntu-2204", "--force", env_extra=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "node-ova-vsphere-base-ubuntu-2204: base is up to date" in second.stdout
    assert "build-node-ova-vsphere-base" not in second.stdout.split("TARGET", 1)[1]


def test_no_deps_refuses_a_missing_base(checkout, vcsim, tmp_path):
    env = {"PACKER_VAR_FILES": files_for(vcsim, tmp_path)}
    result = invoke("build-node-ova-vsphere-clone-photon-5", "--no-deps", env_extra=env)
    assert result.returncode == 2
    assert ("build-node-ova-vsphere-clone-photon-5: the base 'photon-5-base' is missing and "
            "--no-deps forbids building it; run build-node-ova-vsphere-base-photon-5 first"
            in result.stderr)
    assert "photon-5-base" not in vms(vcsim)


def test_linked_clone_from_a_template_without_snapshot(checkout, vcsim, tmp_path):
    with connect(vcsim) as si:
        driver = Driver(si)
        driver.mark_as_template(driver.vm(driver.datacenter("DC0"), "DC0_C0_RP0_VM0"))
    env = {"PACKER_VAR_FILES": files_for(vcsim, tmp_path, template="DC0_C0_RP0_VM0",
                                         linked_clone="true")}
    refused = invoke("build-node-ova-vsphere-clone-rockylinux-9", env_extra=env)
    assert refused.returncode == 2 and "has no snapshot, which a linked clone needs" in refused.stderr
    result = invoke("build-node-ova-vsphere-clone-rockylinux-9", "--prepare-template",
                    env_extra=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert vms(vcsim)["rockylinux-9-kube-v1.37.1"] is True
    with connect(vcsim) as si:
        driver = Driver(si)
        source = driver.vm(driver.datacenter("DC0"), "DC0_C0_RP0_VM0")
        assert driver.is_template(source)
        assert [s.name for s in driver.snapshots(source)] == ["imagebuilder-base"]


@pytest.mark.parametrize("keep", [False, True])
def test_a_failed_build_leaves_no_vm(checkout, vcsim, tmp_path, keep):
    """Packer is told to leave its VM on error (-on-error=abort); our cleanup removes it."""
    ssh = write_json(tmp_path / "ssh.json", {"communicator": "ssh", "ip_wait_timeout": "2s"})
    env = {"PACKER_VAR_FILES": files_for(vcsim, tmp_path, template="DC0_H0_VM0") + f" {ssh}",
           "PACKER_FLAGS": "-on-error=abort"}
    args = ["build-node-ova-vsphere-clone-flatcar"] + (["--keep-on-failure"] if keep else [])
    result = invoke(*args, env_extra=env)
    assert result.returncode == 1, result.stdout + result.stderr
    log = (checkout.output_dir / "logs" / "build-node-ova-vsphere-clone-flatcar.log").read_text()
    assert "Timeout waiting for IP" in log
    assert ("flatcar-kube-v1.37.1" in vms(vcsim)) is keep
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    assert summary["builds"][0]["result"] == "failed"


IMPOSTOR_PACKER = '''#!{python}
"""Before the real Packer starts, someone else makes a VM of the build's name
(another build, a person): the race preflight cannot see."""
import os, shutil, sys
sys.path.insert(0, {tests!r})
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim
from imagebuilder.vsphere.driver import Driver
if sys.argv[1:2] == ["build"]:
    host, port = os.environ["SIM_HOST"].rsplit(":", 1)
    si = SmartConnect(host=host, port=int(port), user=os.environ["SIM_USER"],
                      pwd=os.environ["SIM_PASSWORD"], disableSslCertValidation=True)
    driver = Driver(si)
    source = driver.vm(driver.datacenter("DC0"), "DC0_H0_VM0")
    driver.run("clone", source.CloneVM_Task, folder=source.parent, name=os.environ["SIM_VM"],
               spec=vim.vm.CloneSpec(location=vim.vm.RelocateSpec()))
    impostor = driver.vm(driver.datacenter("DC0"), os.environ["SIM_VM"])
    driver.set_extra_config(impostor, {{"guestinfo.imagebuilder.build_id": "someone-else"}})
    Disconnect(si)
os.execv(shutil.which("packer", path="/usr/bin:/usr/local/bin:" + os.environ["PATH"]),
         ["packer", *sys.argv[1:]])
'''


def test_a_cleanup_leaves_a_vm_it_did_not_make(checkout, vcsim, tmp_path):
    """The real Packer fails because a VM of its name appeared after preflight;
    that VM is not this build's (no build id of ours in its extraConfig), so
    the cleanup leaves it alone. (test_a_failed_build_leaves_no_vm: the build's
    own VM carries the id and is destroyed.)"""
    import sys
    wrapper = tmp_path / "packer-with-impostor"
    wrapper.write_text(IMPOSTOR_PACKER.format(python=sys.executable, tests=str(REPO)))
    wrapper.chmod(0o755)
    env = {"PACKER_VAR_FILES": files_for(vcsim, tmp_path, template="DC0_H0_VM0"),
           "PACKER": str(wrapper), "SIM_HOST": vcsim.host, "SIM_USER": vcsim.username,
           "SIM_PASSWORD": vcsim.password, "SIM_VM": "flatcar-kube-v1.37.1"}
    result = invoke("build-node-ova-vsphere-clone-flatcar", env_extra=env)
    assert result.returncode == 1, result.stdout + result.stderr
    log = (checkout.output_dir / "logs" / "build-node-ova-vsphere-clone-flatcar.log").read_text()
    assert "already exists" in log
    assert "flatcar-kube-v1.37.1" in vms(vcsim)  # it survived our cleanup
    with connect(vcsim) as si:
        driver = Driver(si)
        vm = driver.vm(driver.datacenter("DC0"), "flatcar-kube-v1.37.1")
        assert driver.extra_config(vm)["guestinfo.imagebuilder.build_id"] == "someone-else"
    assert "left VM flatcar-kube-v1.37.1 on" in result.stdout
    assert "this build did not make it" in result.stdout


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopped_while_packer_waits_leaves_no_vm(checkout, vcsim, tmp_path, sig):
    """A CI cancel (SIGTERM) while the real Packer waits for its VM: Packer is
    stopped and removes the VM, nothing keeps running, exit 143. SIGKILL runs
    none of our cleanups, but Packer gets its death signal and still removes it."""
    ssh = write_json(tmp_path / "ssh.json", {"communicator": "ssh", "ip_wait_timeout": "300s"})
    env = dict(os.environ, PACKER_VAR_FILES=files_for(vcsim, tmp_path, template="DC0_H0_VM0")
               + f" {ssh}")
    proc = subprocess.Popen([str(BIN / "invoke"), "build-node-ova-vsphere-clone-flatcar"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    log = checkout.output_dir / "logs" / "build-node-ova-vsphere-clone-flatcar.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (
            log.exists() and "Waiting for IP" in log.read_text()):
        time.sleep(0.3)
    assert "flatcar-kube-v1.37.1" in vms(vcsim)
    below = descendants(proc.pid)
    assert below  # Packer and its plugins
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=180)
    deadline = time.time() + 120  # after a SIGKILL, Packer cleans up on its own
    while time.time() < deadline and any(alive(p) for p in below):
        time.sleep(0.3)
    assert [p for p in below if alive(p)] == []
    assert not list((checkout.output_dir / ".work").glob("*/build-vars.json"))
    if sig == signal.SIGTERM:
        assert "flatcar-kube-v1.37.1" not in vms(vcsim)
        assert proc.returncode == 143, out + err
        summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
        assert summary["signal"] == "SIGTERM"
        assert summary["builds"][0]["result"] == "interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
        if "flatcar-kube-v1.37.1" in vms(vcsim):
            # Packer could not destroy it in time (it may die of a write to the pipe
            # its dead reader left); README promises only that the next build stops
            # at preflight naming it, before anything starts.
            again = invoke("build-node-ova-vsphere-clone-flatcar",
                           env_extra={"PACKER_VAR_FILES": env["PACKER_VAR_FILES"]})
            assert again.returncode == 2, again.stdout + again.stderr
            assert "a VM named 'flatcar-kube-v1.37.1' already exists" in again.stderr
            assert "pass --force to replace it" in again.stderr


def test_destroy_removes_the_vm_after_the_build(checkout, vcsim, tmp_path):
    """Upstream's destroy: Packer 1.6.6's builders lack the field, so the build's own
    step removes the VM once the build is done."""
    extra = write_json(tmp_path / "destroy.json", {"destroy": "true"})
    env = {"PACKER_VAR_FILES": files_for(vcsim, tmp_path, template="DC0_H0_VM0") + f" {extra}"}
    result = invoke("build-node-ova-vsphere-clone-photon-5", env_extra=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "photon-5-kube-v1.37.1" not in vms(vcsim)
    assert "DC0_H0_VM0" in vms(vcsim)  # the source is untouched
