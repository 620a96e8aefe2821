"""Var-file layering in the upstream Makefile's order, knobs, and what stays off argv."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers.common import VSPHERE, write_json
from helpers.planning import plan_for

from imagebuilder.config.catalog import HYPERVISORS, Target, parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.planning.plan import write_build_files
from imagebuilder.running.build import steps_for


def var_files(argv):
    return [a.split("=", 1)[1] for a in argv if a.startswith("-var-file=")]


@pytest.fixture
def vsphere_ok(checkout, tmp_path):
    return write_json(tmp_path / "my-vsphere.json", VSPHERE)


def test_upstream_order_for_vsphere(checkout, vsphere_ok, tmp_path):
    extra = write_json(tmp_path / "x.json", {"memory": "4096"})
    env = {"PACKER_VAR_FILES": f"{vsphere_ok} {extra}", "PACKER_FLAGS": "-timestamp-ui"}
    plan = plan_for(checkout, "build-node-ova-vsphere-ubuntu-2204", env)
    argv = plan.argv("packer")
    root = checkout.root
    files = var_files(argv)
    common = [str(root / "packer/config" / n) for n in (
        "kubernetes.json", "cni.json", "containerd.json", "wasm-shims.json", "ansible-args.json",
        "goss-args.json", "common.json", "additional_components.json",
        "ecr_credential_provider.json")]
    assert files[:9] == common
    assert files[9:12] == [str(root / "packer/packer-common.json"),
                           str(root / "ova/ubuntu-2204.json"), str(root / "ova/vsphere.json")]
    assert files[12] == str(plan.generated_file)
    assert files[13:] == [str(vsphere_ok), str(extra)]  # PACKER_VAR_FILES last, in order
    # PACKER_FLAGS sit between the common files and packer-common, as upstream
    assert argv.index("-timestamp-ui") == argv.index(f"-var-file={common[-1]}") + 1
    assert argv.index("-timestamp-ui") < argv.index(f"-var-file={root}/packer/packer-common.json")
    assert "-only=vsphere-iso" in argv
    assert argv.index("-only=vsphere-iso") < argv.index(f"-var-file={vsphere_ok}")
    assert argv[-1] == str(root / "packer/node.json")


@pytest.mark.parametrize("hv,builder,extra,skips_ova", [
    ("local", "vmware-iso", None, False),
    ("local-base", "vmware-iso-base", None, True),
    ("local-vmx", "vmware-vmx", "vmx.json", False),
    ("vsphere", "vsphere-iso", "vsphere.json", False),
    ("vsphere-base", "vsphere-iso-base", "vsphere.json", True),
    ("vsphere-clone", "vsphere-clone", "vsphere.json", False),
])
def test_builder_selection(checkout, vsphere_ok, tmp_path, hv, builder, extra, skips_ova):
    vmx = tmp_path / "base.vmx"
    vmx.write_text("")
    vmx_file = write_json(tmp_path / "vmx.json", {"source_path": str(vmx)})
    env = {"PACKER_VAR_FILES": f"{vsphere_ok} {vmx_file}"}
    plan = plan_for(checkout, f"node-ova-{hv}-photon-5", env)
    argv = plan.argv()
    assert f"-only={builder}" in argv
    # Our own steps make the OVA (base builds make none) and run the custom post-processor.
    assert "-except=ova,custom-post-processor" in argv
    assert ("ova" in [step.name for step in steps_for(plan)]) != skips_ova
    hv_files = [f for f in var_files(argv) if f.endswith(("ova/vsphere.json", "ova/vmx.json"))]
    assert hv_files == ([str(checkout.ova_dir / extra)] if extra else [])


def test_knobs_append_flags_like_the_makefile(checkout, tmp_path):
    pub = tmp_path / "id.pub"
    pub.write_text("ssh-ed25519 AAAAC3 me@host\n")
    env = {"PACKER_FLAGS": "-var=cpu=8", "FOREGROUND": "1", "ON_ERROR_ASK": "1", "DEBUG": "1",
           "PACKER_COLOR": "true", "SSH_PUBLIC_KEY_FILE": str(pub),
           "SSH_PRIVATE_KEY_FILE": str(pub)}
    argv = plan_for(checkout, "node-ova-local-ubuntu-2404", env).argv()
    flags = argv[argv.index("-var=cpu=8"):]
    assert flags[:7] == ["-var=cpu=8", "-color=true", "-var=headless=false", "-on-error=ask",
                         f"-var=ssh_private_key_file={pub}",
                         "-var=ssh_public_key=ssh-ed25519 AAAAC3 me@host", "-debug"]
    validate = plan_for(checkout, "node-ova-local-ubuntu-2404", {}, action="validate").argv()
    assert not any(a.startswith("-color") for a in validate)  # only builds get -color


@pytest.mark.parametrize("given", ["-color=true", "-color"])
def test_a_color_flag_of_the_user_is_not_overridden(checkout, given):
    argv = plan_for(checkout, "node-ova-local-ubuntu-2404",
                    {"PACKER_FLAGS": given, "PACKER_COLOR": "false"}).argv()
    assert [a for a in argv if a.startswith("-color")] == [given]


def test_ansible_scp_extra_args(checkout, tmp_path, monkeypatch):
    import shutil
    import subprocess
    assert Knobs.from_env({"ANSIBLE_SCP_EXTRA_ARGS": "-T"}).ansible_scp_extra_args == "-T"
    # this machine's real OpenSSH (Debian 12 ships 9.2): its scp speaks SFTP, so -O
    real = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr
    assert real.startswith("OpenSSH_9"), real
    assert Knobs.from_env({}).ansible_scp_extra_args == "-O"
    assert Knobs.from_env({}).packer_env({})["ANSIBLE_SCP_EXTRA_ARGS"] == "-O"
    # an OpenSSH 8 (not installable here) reports itself on stderr the same way
    old = tmp_path / "bin" / "ssh"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'OpenSSH_8.4p1 Debian-5, OpenSSL 1.1.1n' >&2\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{old.parent}:{shutil.which('sh').rsplit('/', 1)[0]}")
    assert Knobs.from_env({}).ansible_scp_extra_args is None
    assert "ANSIBLE_SCP_EXTRA_ARGS" not in Knobs.from_env({}).packer_env({})


def test_secrets_never_on_argv(checkout, vsphere_ok):
    env = {"PACKER_VAR_FILES": str(vsphere_ok), "VSPHERE_PASSWORD": "from-env-Secret",
           "PACKER_FLAGS": "-var ssh_password=flag-Secret-99 -var cpu=2"}
    plan = plan_for(checkout, "node-ova-vsphere-clone-ubuntu-2204", env)
    line = plan.command_line()
    assert "ssh_password" not in plan.generated  # the flag's value wins
    for secret in ("from-env-Secret", "flag-Secret-99"):
        assert secret not in line
    assert "-var=cpu=2" in plan.argv()
    write_build_files(plan)
    for path in (plan.generated_file, plan.flag_secrets_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(plan.generated_file.read_text())["password"] == "from-env-Secret"
    assert json.loads(plan.flag_secrets_file.read_text()) == {"ssh_password": "flag-Secret-99"}
    # the flag secret keeps -var's precedence: its file comes after every other var file
    assert var_files(plan.argv())[-1] == str(plan.flag_secrets_file)


def test_each_build_gets_its_own_password_and_work_dir(checkout):
    a = plan_for(checkout, "node-ova-local-ubuntu-2204")
    b = plan_for(checkout, "node-ova-local-ubuntu-2204")
    c = plan_for(checkout, "node-ova-local-flatcar")
    assert a.generated["ssh_password"] != b.generated["ssh_password"]
    assert len(a.generated["ssh_password"]) >= 24
    assert a.work_dir != c.work_dir
    assert a.work_dir.is_relative_to(checkout.output_dir)


def test_generated_values_never_override_var_files(checkout, tmp_path):
    mine = write_json(tmp_path / "mine.json", {"vm_name": "my-vm", "ssh_password": "mine-1234"})
    plan = plan_for(checkout, "node-ova-local-ubuntu-2204", {"PACKER_VAR_FILES": str(mine)})
    assert "vm_name" not in plan.generated and "ssh_password" not in plan.generated
    assert plan.merged.get("vm_name") == "my-vm"


def test_json_booleans_are_passed_as_a_normalised_copy(checkout, tmp_path):
    user = write_json(tmp_path / "u.json", dict(VSPHERE, linked_clone=False, insecure_connection=True,
                                                cpu=8))
    plan = plan_for(checkout, "node-ova-vsphere-clone-ubuntu-2204", {"PACKER_VAR_FILES": str(user)})
    copy = plan.normalised[user]
    assert f"-var-file={copy}" == plan.argv()[-2]  # same position: last var file
    write_build_files(plan)
    assert json.loads(copy.read_text())["linked_clone"] == "false"
    assert json.loads(copy.read_text())["cpu"] == "8"
    assert copy.is_relative_to(plan.work_dir)  # never rewritten in place


def test_artifact_dir_is_build_name_kube_version(checkout):
    plan = plan_for(checkout, "node-ova-local-rhel-9", {"RHSM_USER": "u", "RHSM_PASS": "pass-word"})
    k8s = json.loads((checkout.config_dir / "kubernetes.json").read_text())["kubernetes_semver"]
    assert plan.artifact_dir == checkout.output_dir / f"rhel-9-kube-{k8s}"
    base = plan_for(checkout, "node-ova-local-base-ubuntu-2204")
    assert base.artifact_dir == checkout.output_dir / "ubuntu-2204-base"


def test_target_names_parse_with_overlapping_hypervisors(checkout):
    names = checkout.os_names()
    t = parse_target("build-node-ova-local-base-ubuntu-2204-efi", names)
    assert (t.hypervisor.name, t.os_name) == ("local-base", "ubuntu-2204-efi")
    t = parse_target("node-ova-vsphere-clone-rhel-9", names)
    assert (t.hypervisor.name, t.os_name) == ("vsphere-clone", "rhel-9")
    assert Target(HYPERVISORS["local"], "flatcar").task_name("clean") == "clean-node-ova-local-flatcar"


def test_vsphere_builds_export_with_a_sha256_manifest(checkout, vsphere_ok, tmp_path):
    """Like a real vCenter run: the exporting builder and the OVA post-processor; Packer's
    export writes a sha256 manifest unless a var file asks otherwise (upstream's "none")."""
    env = {"PACKER_VAR_FILES": str(vsphere_ok)}
    for hv, builder in (("vsphere", "vsphere-iso"), ("vsphere-clone", "vsphere-clone")):
        plan = plan_for(checkout, f"node-ova-{hv}-ubuntu-2204", env)
        argv = plan.argv()
        assert f"-only={builder}" in argv and "-except=ova,custom-post-processor" in argv
        assert plan.merged.get("export_manifest") == "sha256"
    base = plan_for(checkout, "node-ova-vsphere-base-ubuntu-2204", env).argv()
    assert "-only=vsphere-iso-base" in base and "-except=ova,custom-post-processor" in base
    none = write_json(tmp_path / "none.json", {"export_manifest": "none"})
    plan = plan_for(checkout, "node-ova-vsphere-ubuntu-2204",
                    {"PACKER_VAR_FILES": f"{vsphere_ok} {none}"})
    assert plan.merged.get("export_manifest") == "none"
    from imagebuilder.errors import InputError
    for name, value in (("md5.json", {"export_manifest": "md5"}),
                        ("old.json", {"export_ovf": "false"})):
        bad = write_json(tmp_path / name, value)
        with pytest.raises(InputError) as info:
            plan_for(checkout, "node-ova-vsphere-ubuntu-2204",
                     {"PACKER_VAR_FILES": f"{vsphere_ok} {bad}"})
        assert any(str(bad) in problem and next(iter(value)) in problem
                   for problem in info.value.problems), info.value.problems


def test_a_later_empty_value_hides_a_generated_default(checkout, vsphere_ok, tmp_path):
    """Packer's rule: a later var file wins, even with "". Our view must agree."""
    blank = write_json(tmp_path / "blank.json", {"template": ""})
    from imagebuilder.errors import InputError
    with pytest.raises(InputError) as info:
        plan_for(checkout, "node-ova-vsphere-clone-ubuntu-2204", var_files=[vsphere_ok, blank])
    assert info.value.problems == [f"{blank}: template: is empty here, which hides the default "
                                   "(the base of ubuntu-2204); remove the field or name a source"]
    plan = plan_for(checkout, "node-ova-vsphere-clone-ubuntu-2204",
                    {"PACKER_VAR_FILES": str(vsphere_ok)})
    assert plan.merged.get("template") == "ubuntu-2204-base"
    assert plan.merged.origin["template"] == "generated"
