"""The build flags come from one table (config/options.py), and job counts from one parser:
invoke's tasks, ``python -m imagebuilder`` and the help all say the same."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys

import pytest
from helpers.common import REPO

from imagebuilder.config.options import OPTIONS, BuildOptions, options_for, parse_jobs
from imagebuilder.errors import InputError


def load_tasks():
    spec = importlib.util.spec_from_file_location("ib_tasks_under_test", REPO / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns


@pytest.mark.parametrize("value,count", [("0", 0), ("4", 4), (" 3 ", 3), (7, 7), ("012", 12)])
def test_job_counts(value, count):
    assert parse_jobs(value, "--jobs") == count


@pytest.mark.parametrize("value", ["-1", "x", "2.5", "+3", "", "٣", True])
def test_bad_job_counts(value):
    with pytest.raises(InputError) as info:
        parse_jobs(value, "--jobs", hint=", or -j alone")
    assert info.value.exit_code == 2
    assert info.value.message == (f"--jobs: {value!r} is not a number of builds; give a whole "
                                  "number of 0 (no limit) or more, or -j alone")


def test_build_options_are_the_tables():
    assert [f.name for f in dataclasses.fields(BuildOptions)] == \
        [o.attr for o in OPTIONS if o.build_option]
    flags = {"force": True, "no_deps": True, "dry_run": True, "jobs": "3"}
    assert BuildOptions.from_flags(flags) == BuildOptions(force=True, no_deps=True)


def test_invoke_tasks_take_the_tables_flags():
    ns = load_tasks()

    def flags(task_name):
        return {a.names[0]: a.help for a in ns[task_name].get_arguments()
                if a.names[0] != "hypervisor"}

    def names(command, several):
        return sorted(o.name for o in options_for(command, several))

    assert sorted(flags("build-node-ova-vsphere-ubuntu-2204")) == names("build", False)
    assert sorted(flags("validate-node-ova-vsphere-ubuntu-2204")) == names("validate", False)
    assert sorted(flags("build-node-ova-local-all")) == names("build", True)
    # (invoke hands each help text out once: read a task's arguments once)
    assert flags("build-all") == {o.name: o.help for o in OPTIONS}
    assert flags("clean-node-ova-local-ubuntu-2204") == {}


def test_library_cli_takes_the_tables_flags_and_refuses_bad_counts():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "imagebuilder", *args], cwd=REPO,
                              env=dict(os.environ), capture_output=True, text=True, timeout=120)
    build_help = run("build", "--help").stdout
    for option in options_for("build", several=True):
        assert f"--{option.name}" in build_help
    validate_help = run("validate", "--help").stdout
    assert "--force" not in validate_help and "--dry-run" in validate_help
    bad = run("build", "-j", "x", "node-ova-local-ubuntu-2204", "--dry-run")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: -j/--jobs: 'x' is not a number of builds; give a "
                                  "whole number of 0 (no limit) or more")


def test_help_lists_every_flag():
    from imagebuilder.api import help_text
    text = help_text()
    for option in OPTIONS:
        assert f"--{option.name}" in text and option.help in text
