"""The front ends: invoke's task list and core -j, the library CLI, help, deps-ova."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers.common import BIN, REPO

from imagebuilder.config.catalog import HYPERVISORS
from imagebuilder.config.checkout import find_checkout
from imagebuilder_invoke.program import split_core_jobs

OS_NAMES = find_checkout().os_names()
VALUE_FLAGS = {"-c", "--collection", "-f", "--config", "-r", "--search-root"}


def run(argv, env_extra=None, timeout=120):
    env = dict(os.environ, **(env_extra or {}))
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_catalog_has_the_seventeen_oses():
    assert OS_NAMES == sorted([
        "flatcar", "photon-4", "photon-5", "rhel-8", "rhel-9", "rockylinux-9", "almalinux-9",
        "ubuntu-2204", "ubuntu-2204-efi", "ubuntu-2404", "ubuntu-2404-efi", "ubuntu-2604",
        "ubuntu-2604-efi", "windows-2019", "windows-2019-efi", "windows-2022",
        "windows-2022-efi"])


def test_invoke_list_shows_the_whole_matrix():
    result = run([str(BIN / "invoke"), "--list", "--list-format", "json"])
    assert result.returncode == 0, result.stderr
    names = {t["name"] for t in json.loads(result.stdout)["tasks"]}
    expected = {f"{action}-node-ova-{hv}-{os_name}" for action in ("build", "validate", "clean")
                for hv in HYPERVISORS for os_name in OS_NAMES}
    expected |= {f"build-node-ova-{hv}-all" for hv in HYPERVISORS}
    expected |= {"build-all", "deps-ova", "help"}
    # Windows' base, clone and vmx targets are there too, to refuse with one line
    assert len(expected) == 17 * 6 * 3 + 6 + 3
    assert expected <= names
    human = run([str(BIN / "invoke"), "--list"]).stdout
    assert "build-node-ova-vsphere-clone-ubuntu-2204" in human and "Build ubuntu-2204" in human


def test_plain_invoke_sees_the_same_tasks():
    """tasks.py works with invoke's own Program too (without the core -j)."""
    code = "import sys; from invoke.main import program; sys.exit(program.run())"
    result = run([sys.executable, "-c", code, "--list", "--list-format", "json"])
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["tasks"]) >= 243


@pytest.mark.parametrize("argv,rest,jobs", [
    (["invoke", "-j", "build-all"], ["invoke", "build-all"], "0"),
    (["invoke", "-j", "4", "build-all"], ["invoke", "build-all"], "4"),
    (["invoke", "-j4", "build-all"], ["invoke", "build-all"], "4"),
    (["invoke", "--jobs=3", "-e", "x"], ["invoke", "-e", "x"], "3"),
    (["invoke", "-c", "mytasks", "-j", "2", "x"], ["invoke", "-c", "mytasks", "x"], "2"),
    (["invoke", "-c", "-j", "x"], ["invoke", "-c", "-j", "x"], None),  # -j is -c's value
    (["invoke", "build-all", "-j", "2"], ["invoke", "build-all", "-j", "2"], None),  # task flag
    (["invoke", "--list"], ["invoke", "--list"], None),
])
def test_split_core_jobs(argv, rest, jobs):
    assert split_core_jobs(argv, VALUE_FLAGS) == (rest, jobs)


def test_help_lists_every_hypervisor_and_os():
    result = run([str(BIN / "invoke"), "help"])
    assert result.returncode == 0
    for hv in HYPERVISORS:
        assert f"build-node-ova-{hv}-<os>" in result.stdout
    assert " ".join(OS_NAMES) in result.stdout


def test_library_cli_without_invoke():
    result = run([sys.executable, "-m", "imagebuilder", "build", "node-ova-local-ubuntu-2204",
                  "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("packer build -var-file=")
    assert "-only=vmware-iso" in result.stdout
    listing = run([sys.executable, "-m", "imagebuilder", "list"]).stdout.split()
    assert len(listing) == (13 * 6 + 4 * 2) * 3  # Windows: local and vsphere
    bad = run([sys.executable, "-m", "imagebuilder", "build", "node-ova-nowhere-ubuntu"])
    assert bad.returncode == 2 and "unknown target" in bad.stderr


@pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")
def test_deps_ova_with_the_real_packer():
    result = run([str(BIN / "invoke"), "deps-ova"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "packer builders  ok" in result.stdout and "built in" in result.stdout
    assert "ansible" in result.stdout


def test_deps_ova_runs_packer_init_on_plugin_era_packer(tmp_path):
    """Packer >= 1.7 cannot run here (its plugins download): a script stands in."""
    fake = tmp_path / "packer"
    log = tmp_path / "calls"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                    "[ \"$1\" = version ] && echo 'Packer v1.9.4'\n"
                    "[ \"$1\" = init ] && echo 'Installed plugin github.com/hashicorp/vsphere'\n"
                    "exit 0\n")
    fake.chmod(0o755)
    result = run([str(BIN / "invoke"), "deps-ova"], env_extra={"PACKER": str(fake)})
    assert f"init {REPO / 'packer' / 'config.pkr.hcl'}" in log.read_text()
    assert "packer plugins  ok" in result.stdout
    fake.write_text("#!/bin/sh\n[ \"$1\" = version ] && echo 'Packer v1.5.0'\nexit 0\n")
    result = run([str(BIN / "invoke"), "deps-ova"], env_extra={"PACKER": str(fake)})
    assert result.returncode == 2 and "need 1.6.6 or newer" in result.stdout
