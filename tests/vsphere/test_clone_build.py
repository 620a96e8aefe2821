"""End to end: the real Packer builds vsphere-clone against the vCenter simulator.

Runs ``invoke build-node-ova-vsphere-clone-<os>`` as a user would, with a
vsphere.json for the simulator and ``communicator: none`` (the simulator's
VMs have no guest to talk to), and checks what Packer left in vCenter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from helpers.common import BIN, REPO, connect, invoke, objects, write_json
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder.vcsim import write_vsphere_json

pytestmark = [pytest.mark.vcsim, pytest.mark.packer,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")]


def sim_var_files(vcsim, tmp_path, **overrides) -> str:
    vsphere = write_vsphere_json(vcsim, tmp_path / "vcsim-vsphere.json", **overrides)
    # The simulator's VMs have no guest to talk to.
    none = write_json(tmp_path / "vcsim.json", {"communicator": "none"})
    return f"{vsphere} {none}"


FRESH = own_simulator("function", password="fresh-Secret-1", power_off_after=0.5)


@FRESH
def test_clone_build_leaves_a_template(checkout, vcsim, tmp_path):
    files = sim_var_files(vcsim, tmp_path, template="DC0_C0_RP0_VM0", convert_to_template="true")
    result = invoke("build-node-ova-vsphere-clone-ubuntu-2204", env_extra={"PACKER_VAR_FILES": files})
    assert result.returncode == 0, result.stdout + result.stderr
    k8s = json.loads((checkout.config_dir / "kubernetes.json").read_text())["kubernetes_semver"]
    name = f"ubuntu-2204-kube-{k8s}"
    with connect(vcsim) as si:
        vm = objects(si, vim.VirtualMachine)[name]
        assert vm.config.template is True
        assert vm.config.guestId  # a real VM object, cloned from the model's VM
    log = (checkout.output_dir / "logs" / "build-node-ova-vsphere-clone-ubuntu-2204.log").read_text()
    assert "Cloning VM..." in log and "Convert VM into template..." in log
    assert vcsim.password not in log  # the vCenter password never reaches the log
    manifest = json.loads((checkout.output_dir / name / "packer-manifest.json").read_text())
    assert manifest["builds"][-1]["custom_data"]["ib_target"] == "node-ova-vsphere-clone-ubuntu-2204"
    assert manifest["builds"][-1]["custom_data"]["vm_name"] == name


@FRESH
def test_missing_clone_source_is_caught_before_packer(checkout, vcsim, tmp_path):
    files = sim_var_files(vcsim, tmp_path, template="no-such-template")
    result = invoke("build-node-ova-vsphere-clone-photon-5", env_extra={"PACKER_VAR_FILES": files})
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"build-node-ova-vsphere-clone-photon-5: {tmp_path}/vcsim-vsphere.json: template: "
            "'no-such-template' not found in datacenter DC0; the templates there: none"
            in result.stderr)
    assert not (checkout.output_dir / "logs" / "build-node-ova-vsphere-clone-photon-5.log").exists()


def test_invoke_vcsim_serves_until_ctrl_c(vcsim_binary, tmp_path):
    import signal
    import stat
    import time
    target = tmp_path / "my" / "vsphere.json"
    proc = subprocess.Popen([str(BIN / "invoke"), "vcsim", "--vsphere-json", str(target)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while not target.exists() and time.time() < deadline:
            time.sleep(0.2)
        config = json.loads(target.read_text())
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        from imagebuilder.vsphere.session import Session, VSphereSettings
        with Session(VSphereSettings.from_vars(config, env={})) as si:
            assert si.RetrieveContent().about.apiType == "VirtualCenter"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f'PACKER_VAR_FILES="{target}' in out
    assert proc.returncode == 130


def test_readme_main_job_without_an_activated_venv(vcsim_binary, tmp_path):
    """README: `.venv/bin/invoke vcsim-build`, the venv not activated: ansible-playbook
    (in the venv) must still be found, by our tool check and by Packer's provisioner."""
    env = dict(os.environ, PATH="/usr/bin:/bin", IB_OUTPUT_DIR=str(tmp_path / "output"))
    result = subprocess.run([str(BIN / "invoke"), "vcsim-build"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "node-ova-vsphere-base-ubuntu-2204: base is missing; building it first" in result.stdout
    assert "  ubuntu-2204-kube-v1.37.1  (template)" in result.stdout
    # The whole loop: the clone's OVA on disk, verified, deployed back as a template.
    ova = tmp_path / "output" / "ubuntu-2204-kube-v1.37.1" / "ubuntu-2204-kube-v1.37.1.ova"
    assert ova.is_file() and ova.with_name(ova.name + ".sha256").is_file()
    assert f"OVA: {ova} (verified; sha256 in {ova.name}.sha256)" in result.stdout
    assert "deployed into the simulator as template ubuntu-2204-kube-v1.37.1-ova" in result.stdout
    assert "  ubuntu-2204-kube-v1.37.1-ova  (template)" in result.stdout


def test_ctrl_c_during_vcsim_build_cleans_up_before_the_simulator_stops(vcsim_binary, tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the simulator (in a session
    of its own) must outlive the builds' cleanups, which remove the interrupted clone."""
    import signal
    import time
    out = tmp_path / "out.txt"
    env = dict(os.environ, IB_OUTPUT_DIR=str(tmp_path / "output"))
    with open(out, "w") as fh:
        proc = subprocess.Popen([str(BIN / "invoke"), "vcsim-build"], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and \
            "clone-ubuntu-2204] packer: Cloning VM" not in out.read_text():
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) == 130, out.read_text()
    text = out.read_text()
    listed = text.split("VMs and templates in the simulator now:", 1)[1].split()
    assert "ubuntu-2204-base" in listed  # the base finished before Ctrl-C
    assert "ubuntu-2204-kube-v1.37.1" not in listed, text  # the interrupted clone left no VM
    assert "cleanup of" not in text, text  # every cleanup reached the simulator
    assert not (tmp_path / "output" / "ubuntu-2204-kube-v1.37.1").exists()
