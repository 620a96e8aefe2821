"""Bad input is reported before anything runs: every problem, named by file and field, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.common import REPO, VSPHERE, events, write_json
from helpers.planning import plan_for

from imagebuilder.errors import InputError


def problems_of(checkout, name, env):
    with pytest.raises(InputError) as info:
        plan_for(checkout, name, env)
    assert info.value.exit_code == 2
    return info.value.problems


def set_vsphere(checkout, **changes):
    data = dict(VSPHERE, **changes)
    data = {k: v for k, v in data.items() if v is not None}
    write_json(checkout.ova_dir / "vsphere.json", data)


def run_cli(*args, env_extra=None):
    import os
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "imagebuilder", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("field", ["vcenter_server", "username", "password", "datastore", "network"])
def test_missing_vsphere_field(checkout, field):
    set_vsphere(checkout, **{field: None})
    assert problems_of(checkout, "node-ova-vsphere-ubuntu-2204", {}) == [
        f"ova/vsphere.json: {field}: is empty; set it"
        + (" (or set VSPHERE_PASSWORD)" if field == "password" else "")]


def test_vsphere_password_from_environment(checkout):
    set_vsphere(checkout, password="")
    plan = plan_for(checkout, "node-ova-vsphere-ubuntu-2204", {"VSPHERE_PASSWORD": "env-Secret-1"})
    assert plan.generated["password"] == "env-Secret-1"


def test_cluster_and_host_both_or_neither(checkout):
    set_vsphere(checkout, host="esx-1")
    [problem] = problems_of(checkout, "node-ova-vsphere-clone-photon-5", {})
    assert problem.startswith("ova/vsphere.json: cluster/host: set exactly one of cluster or host "
                              "(both are set")
    set_vsphere(checkout, cluster="")
    set_vsphere(checkout, cluster=None, host=None)
    [problem] = problems_of(checkout, "node-ova-vsphere-clone-photon-5", {})
    assert "neither is set" in problem


@pytest.mark.parametrize("value", ["yes", "1", 1, "True "])
def test_non_boolean_linked_clone(checkout, value):
    set_vsphere(checkout, linked_clone=value)
    [problem] = problems_of(checkout, "node-ova-vsphere-clone-ubuntu-2404", {})
    assert problem.startswith(f"ova/vsphere.json: linked_clone: {value!r} is not a boolean")


@pytest.mark.parametrize("value", [True, False, "true", "false"])
def test_booleans_accepted_both_ways(checkout, value):
    set_vsphere(checkout, linked_clone=value, insecure_connection=value)
    plan_for(checkout, "node-ova-vsphere-clone-ubuntu-2404")


def test_typo_gets_did_you_mean(checkout, tmp_path):
    data = dict(VSPHERE)
    data["vcenter_sever"] = data.pop("vcenter_server")
    user = write_json(tmp_path / "mine.json", data)
    problems = problems_of(checkout, "node-ova-vsphere-ubuntu-2204",
                           {"PACKER_VAR_FILES": str(user), "PACKER_FLAGS": "-var memroy=1024"})
    assert f"{user}: vcenter_sever: unknown variable; did you mean 'vcenter_server'?" in problems
    assert "PACKER_FLAGS: memroy: unknown variable; did you mean 'memory'?" in problems
    assert "ova/vsphere.json: vcenter_server: is empty; set it" in problems


def test_all_problems_at_once(checkout, tmp_path):
    set_vsphere(checkout, datastore="", host="h", linked_clone="maybe")
    problems = problems_of(checkout, "node-ova-vsphere-clone-rhel-9", {})
    text = "\n".join(problems)
    for expected in ("linked_clone: 'maybe'", "datastore: is empty", "cluster/host",
                     "RHSM_USER", "RHSM_PASS"):
        assert expected in text
    # a var file that cannot be read might set any field: no rule over the
    # merged settings speaks then, only the file's own problem and the environment's
    problems = problems_of(checkout, "node-ova-vsphere-clone-rhel-9",
                           {"PACKER_VAR_FILES": str(tmp_path / "absent.json")})
    text = "\n".join(problems)
    for expected in ("linked_clone: 'maybe'", "RHSM_USER", "RHSM_PASS",
                     "absent.json: var file not found (named in PACKER_VAR_FILES)"):
        assert expected in text
    assert "is empty" not in text and "cluster/host" not in text


def test_os_file_schema(checkout):
    data = json.loads((checkout.ova_dir / "photon-5.json").read_text())
    data.update(firmware="uefi", ovf_os_id="linux")
    del data["iso_url"]
    write_json(checkout.ova_dir / "photon-5.json", data)
    problems = problems_of(checkout, "node-ova-local-photon-5", {})
    assert "ova/photon-5.json: firmware: 'uefi' is not one of ['bios', 'efi']" in problems
    assert "ova/photon-5.json: iso_url: is required; add it" in problems
    assert any(p.startswith("ova/photon-5.json: ovf_os_id:") for p in problems)


def test_vmx_version_below_os_minimum(checkout, tmp_path):
    user = write_json(tmp_path / "old-esxi.json", {"vmx_version": "15"})
    env = {"PACKER_VAR_FILES": str(user), "RHSM_USER": "u", "RHSM_PASS": "pass-word"}
    [problem] = problems_of(checkout, "node-ova-local-rhel-9", env)
    assert problem == (f"{user}: vmx_version: 15 is below the minimum 18 that rhel-9 needs; "
                       "set vmx_version to 18 or more")


def test_invalid_json_names_line(checkout):
    (checkout.ova_dir / "vmx.json").write_text('{"source_path": "x",,}')
    problems = problems_of(checkout, "node-ova-local-vmx-ubuntu-2204", {})
    assert problems[0].startswith("ova/vmx.json: not valid JSON (line 1, column 21")


def test_local_vmx_source_must_exist(checkout, tmp_path):
    vmx = write_json(tmp_path / "vmx.json", {"source_path": str(tmp_path / "gone.vmx")})
    [problem] = problems_of(checkout, "node-ova-local-vmx-ubuntu-2204",
                            {"PACKER_VAR_FILES": str(vmx)})
    assert problem == f"{vmx}: source_path: {tmp_path / 'gone.vmx'} does not exist"


def test_bad_config_starts_no_packer(checkout, standin):
    set_vsphere(checkout, linked_clone="sure", cluster="c", host="h")
    del_field = json.loads((checkout.ova_dir / "vsphere.json").read_text())
    del del_field["datastore"]
    write_json(checkout.ova_dir / "vsphere.json", del_field)
    result = run_cli("build", "node-ova-vsphere-clone-ubuntu-2204")
    assert result.returncode == 2, result.stderr
    assert "ova/vsphere.json: datastore: is empty; set it" in result.stderr
    assert "ova/vsphere.json: linked_clone: 'sure' is not a boolean" in result.stderr
    assert "ova/vsphere.json: cluster/host: set exactly one" in result.stderr
    assert not list(standin.iterdir())  # the stand-in packer never ran
    assert events(standin) == []


def test_missing_packer_reported_before_start(checkout, monkeypatch):
    monkeypatch.setenv("PACKER", "packer-that-does-not-exist")
    result = run_cli("build", "node-ova-local-ubuntu-2204")
    assert result.returncode == 2
    assert "packer: not found ('packer-that-does-not-exist' is not on PATH)" in result.stderr


def test_missing_vmdk_converter_reported_before_start(checkout, standin, tmp_path):
    """Local node builds need qemu-img (or vmware-vdiskmanager) for the OVA's disk."""
    import shutil
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("packer", "ansible-playbook", "xorriso", "python3", "sleep"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "STANDIN_DIR": str(standin)}  # everything but a converter
    result = run_cli("build", "node-ova-local-ubuntu-2204", env_extra=env)
    assert result.returncode == 2, result.stderr
    assert "no VMDK converter found: install qemu-img" in result.stderr
    assert events(standin) == []
    base = run_cli("build", "node-ova-local-base-ubuntu-2204", "--dry-run", env_extra=env)
    assert base.returncode == 0  # base builds make no OVA


def test_build_target_is_virt_or_raw(checkout, tmp_path):
    """upstream's two build targets; anything else picks no package list."""
    user = write_json(tmp_path / "target.json", {"build_target": "metal"})
    problems = problems_of(checkout, "node-ova-local-ubuntu-2404", {"PACKER_VAR_FILES": str(user)})
    assert f"{user}: build_target: 'metal' is not one of ['virt', 'raw']" in problems
    user = write_json(tmp_path / "raw.json", {"build_target": "raw"})
    plan_for(checkout, "node-ova-local-ubuntu-2404", var_files=[user])  # accepted
