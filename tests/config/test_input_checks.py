"""What the input checks let through keeps working: Packer's own flags, quoted
paths, a real public key; and what the checks rest on (Packer's flag list)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from helpers.common import VSPHERE, write_json
from helpers.planning import plan_for

from imagebuilder import api
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.packer_flags import BUILD_FLAGS, VALIDATE_FLAGS, split_packer_flags

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly me@host"


def packer_flags(action: str) -> set[str]:
    """The flags the installed Packer lists in ``packer <action> -h``."""
    help_text = subprocess.run(["packer", action, "-h"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+-([a-z][a-z-]*)", help_text, re.M))


@pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")
def test_flag_tables_cover_the_installed_packer():
    assert packer_flags("build") and packer_flags("build") <= set(BUILD_FLAGS)
    assert packer_flags("validate") <= set(VALIDATE_FLAGS)


def test_packer_flags_of_both_forms_reach_packer_joined(checkout, tmp_path):
    extra = write_json(tmp_path / "extra.json", {"cpu": "2"})
    env = {"PACKER_FLAGS": f"-var-file {extra} -parallel-builds 1 -timestamp-ui -force "
                           "--on-error=abort -var headless=true", "DEBUG": "1"}
    argv = plan_for(checkout, "node-ova-local-ubuntu-2404", env).argv()
    flags = argv[argv.index(f"-var-file={extra}"):]
    assert flags[:7] == [f"-var-file={extra}", "-parallel-builds=1", "-timestamp-ui", "-force",
                         "-on-error=abort", "-var=headless=true", "-color=false"]
    assert "-debug" in argv


def test_validate_leaves_out_build_only_flags(checkout):
    env = {"PACKER_FLAGS": "-force -timestamp-ui -var headless=true -syntax-only",
           "ON_ERROR_ASK": "1", "DEBUG": "1"}
    argv = plan_for(checkout, "node-ova-local-ubuntu-2404", env, "validate").argv()
    assert "-var=headless=true" in argv and "-syntax-only" in argv
    for flag in ("-force", "-timestamp-ui", "-on-error=ask", "-debug"):
        assert flag not in argv


@pytest.mark.packer
@pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")
def test_validate_with_build_flags_passes_the_real_packer(checkout, tmp_path):
    targets = api.resolve_targets(["validate-node-ova-local-ubuntu-2404"], checkout)
    knobs = Knobs.from_env({"PACKER_FLAGS": "-force -parallel-builds 1 -var headless=true",
                            "DEBUG": "1"})
    report = api.run(targets, "validate", checkout=checkout, knobs=knobs)
    [result] = report.results
    assert result.ok, open(result.log).read()


def test_bare_var_does_not_swallow_the_next_flag():
    parsed = split_packer_flags(["-var", "-force"])
    assert parsed.problems == ["PACKER_FLAGS: -var needs a value (-var=...)"]
    assert parsed.flags == ["-force"]


def test_quoted_var_file_with_spaces(checkout, tmp_path):
    spaced = write_json(tmp_path / "my vars.json", {"cpu": "6"})
    other = write_json(tmp_path / "other.json", {"memory": "4096"})
    plan = plan_for(checkout, "node-ova-local-ubuntu-2404",
                    {"PACKER_VAR_FILES": f'"{spaced}" {other}'})
    assert plan.merged.get("cpu") == "6" and plan.merged.get("memory") == "4096"
    assert f"-var-file={spaced}" in plan.argv()


def test_public_key_reaches_packer_as_read(checkout, tmp_path):
    pub = tmp_path / "id.pub"
    pub.write_text(PUBLIC_KEY + "\n")
    argv = plan_for(checkout, "node-ova-local-flatcar", {"SSH_PUBLIC_KEY_FILE": str(pub)}).argv()
    assert f"-var=ssh_public_key={PUBLIC_KEY}" in argv


def test_user_var_file_of_a_vsphere_target_gets_vsphere_rules(checkout, tmp_path):
    user = write_json(tmp_path / "mine.json", dict(VSPHERE, datastore="LocalDS_0"))
    plan = plan_for(checkout, "node-ova-vsphere-ubuntu-2204", {"PACKER_VAR_FILES": str(user)})
    assert plan.merged.get("datastore") == "LocalDS_0"


@pytest.mark.parametrize("values,expected", [
    ({"memory": "1536", "disk_size": "10240"}, None),
    ({"memory": "1535"}, "memory: 1535 is below the minimum of 1536"),
])
def test_floors_are_exact(checkout, tmp_path, values, expected):
    from imagebuilder.errors import InputError
    user = write_json(tmp_path / "v.json", values)
    env = {"PACKER_VAR_FILES": str(user), "RHSM_USER": "u", "RHSM_PASS": "pass-word"}
    if expected is None:
        plan_for(checkout, "node-ova-local-rhel-9", env)
        return
    with pytest.raises(InputError) as info:
        plan_for(checkout, "node-ova-local-rhel-9", env)
    assert [p for p in info.value.problems if expected in p]
