"""deploy-ova against the simulator, run as a user runs it (invoke deploy-ova ...)."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers.common import BIN, REPO, connect, objects, write_json
from helpers.ova import MiB, flip_byte_in_member, make_vmdk
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.vcsim import vsphere_config
from imagebuilder.vsphere.driver import Driver

pytestmark = [pytest.mark.vcsim, own_simulator("module", password="module-Secret-1")]


@pytest.fixture
def ova(tmp_path, checkout):
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(2 * MiB))])
    return assemble(plan_from_vmdks([disk], "ubuntu-2404", "v1.37.1", tmp_path / "out")).ova


def deploy(vcsim, tmp_path, *args):
    files = write_json(tmp_path / "v.json", vsphere_config(vcsim))
    env = dict(os.environ, PACKER_VAR_FILES=str(files))
    return subprocess.run([str(BIN / "invoke"), "deploy-ova", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_deploy_as_template_with_snapshot(vcsim, tmp_path, ova):
    result = deploy(vcsim, tmp_path, str(ova), "--name", "ubuntu-2404-node", "--template",
                    "--snapshot", "imported")
    assert result.returncode == 0, result.stdout + result.stderr
    with connect(vcsim) as si:
        driver = Driver(si)
        vm = objects(si, vim.VirtualMachine)["ubuntu-2404-node"]
        assert driver.is_template(vm)
        assert [s.name for s in driver.snapshots(vm)] == ["imported"]
    again = deploy(vcsim, tmp_path, str(ova), "--name", "ubuntu-2404-node")
    assert again.returncode == 2
    assert "a VM or template named 'ubuntu-2404-node' already exists" in again.stderr


def test_wrong_network_lists_the_available_ones(vcsim, tmp_path, ova):
    result = deploy(vcsim, tmp_path, str(ova), "--name", "n2", "--network", "prod")
    assert result.returncode == 2
    assert "network 'prod' not found in datacenter DC0; the networks there: DC0_DVPG0" in result.stderr
    assert "n2" not in objects_now(vcsim)


def test_upload_error_aborts_the_lease(vcsim, tmp_path, ova):
    bad = flip_byte_in_member(ova, "ubuntu-2404-kube-v1.37.1-disk-0.vmdk", 700_000,
                              tmp_path / "bad.ova")
    result = deploy(vcsim, tmp_path, str(bad), "--name", "broken")
    assert result.returncode == 1
    assert "ubuntu-2404-kube-v1.37.1-disk-0.vmdk: its SHA256 digest is" in result.stderr
    assert "the file is corrupt (as uploaded)" in result.stderr
    assert "importing broken: aborted the upload lease\n" in result.stdout
    assert "broken" not in objects_now(vcsim)  # nothing half-imported is left


def objects_now(vcsim):
    with connect(vcsim) as si:
        return objects(si, vim.VirtualMachine)
