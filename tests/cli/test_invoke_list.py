"""Listing the tasks (``invoke --list``) stays fast: nothing on that path imports
pyVmomi, jsonschema or the planner's jinja2, which only the tasks that run need.
No timing is asserted (bench/invoke_list.py measures it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers.common import BIN, REPO

HEAVY = ("pyVmomi", "pyVim", "jsonschema", "referencing", "jinja2")

# Runs a program's --list in a fresh interpreter and reports, at exit, which of
# the HEAVY top-level packages were imported.
PROBE = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: print("IMPORTED " + json.dumps(sorted(
    {{m.split(".")[0] for m in sys.modules}} & set(heavy))), file=sys.stderr))
{program}
program.run(["invoke", *sys.argv[1:]])
"""
PROGRAMS = {
    "image-builder": "from imagebuilder_invoke.program import program",
    "plain invoke": "from invoke.main import program",
}


@pytest.mark.parametrize("which", PROGRAMS)
@pytest.mark.parametrize("args", [["--list"], ["--list", "--list-format", "json"],
                                  ["--help", "build-node-ova-vsphere-ubuntu-2204"]])
def test_listing_imports_neither_pyvmomi_nor_jsonschema(which, args):
    code = PROBE.format(heavy=HEAVY, program=PROGRAMS[which])
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO,
                            env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "build-node-ova-vsphere-ubuntu-2204" in result.stdout
    imported = json.loads(result.stderr.rsplit("IMPORTED ", 1)[1])
    assert imported == []


def test_the_probe_sees_what_a_running_task_imports():
    """The probe is not blind: ``help`` runs the library's api module, which
    imports the vSphere preflight and with it pyVmomi."""
    code = PROBE.format(heavy=HEAVY, program=PROGRAMS["image-builder"])
    result = subprocess.run([sys.executable, "-c", code, "help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {"pyVmomi", "jinja2"} <= set(json.loads(result.stderr.rsplit("IMPORTED ", 1)[1]))


@pytest.mark.parametrize("argv, expected", [
    (["--complete", "--", "invoke", "build-node-ova-vsphere-ubuntu-2204", "--"], "--dry-run"),
    (["--complete", "--", "invoke", "build-node-ova-vsph"], "build-node-ova-vsphere-ubuntu-2204"),
    (["build-node-ova-vsphere-ubuntu-2204", "--help"], "--prepare-template"),
])
def test_commands_naming_a_task_still_parse_its_flags(argv, expected):
    """The listing's short cut (no task flags parsed when no task is named)
    leaves completion and per-task help whole."""
    result = subprocess.run([str(BIN / "invoke"), *argv], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.split()
