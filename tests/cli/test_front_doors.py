"""The two front doors say the same: a command line has one set of flags (a dry run anywhere
is a dry run everywhere), ``python -m imagebuilder`` has every invoke task with the same flags
and exit codes, short flags mean one thing, ``clean``/``clean-ova`` are upstream's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from helpers.common import REPO, events, invoke, write_json
from helpers.simulator import own_simulator

from imagebuilder.cli.commands import COMMANDS
from imagebuilder.cli.main import parser
from imagebuilder.vcsim import vsphere_config
from imagebuilder.vsphere.driver import Driver
from imagebuilder.vsphere.session import Session, VSphereSettings

A, B = "build-node-ova-local-ubuntu-2204", "build-node-ova-local-photon-5"


def python_m(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagebuilder", *args], cwd=REPO,
                          env=dict(os.environ), capture_output=True, text=True, timeout=timeout)


def load_tasks():
    spec = importlib.util.spec_from_file_location("ib_tasks_front_doors", REPO / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns


def packer_commands(stdout: str) -> int:
    return sum(line.startswith("packer build ") for line in stdout.splitlines())


# --- one set of flags per command line -----------------------------------------------------

def test_a_dry_run_after_the_last_target_dry_runs_the_whole_batch(checkout, standin):
    result = invoke("-j", "2", A, B, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert packer_commands(result.stdout) == 2 and events(standin) == []
    assert not checkout.output_dir.exists() or not any(checkout.output_dir.glob("*-kube-*"))


@pytest.mark.parametrize("args", [[A, "--dry-run", B], [A, "-n", B, "--stream"],
                                  ["build-node-ova-local-all", "--force", B]])
def test_targets_given_different_flags_are_refused(checkout, standin, args):
    result = invoke("-j", "2", *args)
    assert result.returncode == 2 and events(standin) == []
    assert result.stderr.startswith("error: flags differ between targets: ")
    assert "nothing was started" in result.stderr and result.stdout == ""


def test_core_dry_is_a_dry_run_of_build_targets(checkout, standin):
    result = invoke("-R", A, B)
    assert result.returncode == 0, result.stderr
    assert packer_commands(result.stdout) == 2 and events(standin) == []


CLEAN_A = f"clean-{A.removeprefix('build-')}"


@pytest.mark.parametrize("args", [["-R", CLEAN_A], [A, "--dry-run", CLEAN_A],
                                  [A, "-n", "deploy-ova", "x.ova", "vm1"],
                                  ["-R", "deploy-ova", "x.ova", "vm1"]])
def test_nothing_real_starts_when_a_dry_run_was_asked(checkout, standin, args):
    artifacts = checkout.output_dir / "ubuntu-2204-kube-v1.37.1"
    artifacts.mkdir(parents=True)
    result = invoke(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "a dry run was asked" in result.stderr and "nothing was started" in result.stderr
    assert artifacts.is_dir() and events(standin) == []  # clean removed nothing, no build ran


def test_flags_after_the_last_target_apply_to_every_target(checkout, standin):
    result = invoke(A, B, "-s", env_extra={"STANDIN_SECONDS": "0.3"})
    assert result.returncode == 0, result.stderr
    assert f"[{A}] " in result.stdout and f"[{B}] " in result.stdout  # both streamed


# --- python -m imagebuilder covers every task ----------------------------------------------

def test_every_invoke_task_has_its_python_m_command_with_the_same_flags():
    ns = load_tasks()
    sub = next(a for a in parser()._actions if a.dest == "command")
    for command in COMMANDS:
        task_flags = {a.names[0] for a in ns[command.name].get_arguments()}
        assert task_flags == {p.name for p in command.params}, command.name
        sp = sub.choices[command.name]
        options = {s for a in sp._actions for s in a.option_strings}
        assert {f"--{p.name}" for p in command.params} <= options, command.name
    assert {"build", "validate", "clean", "list", "ova", "publish"} <= set(sub.choices)


def test_a_letter_means_one_flag_on_every_task_and_command():
    ns = load_tasks()
    meaning: dict[str, set[str]] = {}
    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            for short in (n for n in arg.names if len(n) == 1):
                meaning.setdefault(short, set()).add(arg.names[0])
    sub = next(a for a in parser()._actions if a.dest == "command")
    for sp in sub.choices.values():
        for action in sp._actions:
            shorts = [s for s in action.option_strings if len(s) == 2 and s != "-h"]
            longs = [s[2:] for s in action.option_strings if s.startswith("--")]
            for short in shorts:
                meaning.setdefault(short[1], set()).update(longs)
    assert {k: v for k, v in meaning.items() if len(v) > 1} == {}
    assert meaning["f"] == {"force"} and meaning["n"] == meaning["d"] == {"dry-run"}
    assert "k" not in meaning  # free for make's -k (--keep-going)


@pytest.mark.parametrize("args, code", [
    (["ova-verify", "/nonexistent/x.ova"], 2),
    (["render", "node-ova-nowhere-ubuntu", "/tmp/x"], 2),
    (["deploy-ova", "x.ova"], 2),
    (["vcsim-build", "--target", "build-node-ova-vsphere-nowhere"], 2),
    (["image-ssh", "/nonexistent-build-dir"], 2),
])
def test_the_same_exit_codes(checkout, args, code):
    assert invoke(*args).returncode == code
    assert python_m(*args).returncode == code


def test_builds_print_their_summary_path(checkout, standin):
    for result in (python_m("build", A), invoke(A)):
        assert result.returncode == 0, result.stderr
        path = result.stdout.strip().splitlines()[-1].removeprefix("summary: ")
        assert path.startswith(str(checkout.logs_dir / "summaries")) and os.path.isfile(path)


def test_clean_and_clean_ova_are_upstreams(checkout, standin):
    assert invoke("-j", "2", A, B).returncode == 0
    cache = checkout.output_dir / ".packer_cache"
    (cache / "iso").mkdir(parents=True)
    (cache / "iso" / "x.iso").write_text("iso")
    result = invoke("clean-ova")
    assert result.returncode == 0, result.stderr
    assert not list(checkout.output_dir.glob("*-kube-*")) and (cache / "iso" / "x.iso").exists()
    assert invoke(A).returncode == 0
    result = python_m("clean")
    assert result.returncode == 0, result.stderr
    assert f"removed {cache / 'iso'}" in result.stdout and cache.is_dir()
    assert not list(cache.iterdir()) and not list(checkout.output_dir.glob("*-kube-*"))


@pytest.mark.vcsim
@own_simulator("function", password="front-Secret-1")
@pytest.mark.parametrize("front_door", ["invoke", "python -m"])
def test_image_cloudinit_keeps_snapshots_it_did_not_make(checkout, vcsim, tmp_path, front_door,
                                                         monkeypatch):
    settings = VSphereSettings.from_vars(vsphere_config(vcsim), env={})
    with Session(settings) as si:
        driver = Driver(si)
        vm = driver.vm(driver.datacenter("DC0"), "DC0_H0_VM0")
        driver.power_off(vm)
        driver.create_snapshot(vm, "new", "made by a person")
        driver.create_snapshot(vm, "before-upgrade", "made by a person")
    monkeypatch.setenv("PACKER_VAR_FILES",
                       str(write_json(tmp_path / "v.json", vsphere_config(vcsim))))
    run = invoke if front_door == "invoke" else python_m
    for _ in range(2):
        result = run("image-cloudinit", "DC0_H0_VM0")
        assert result.returncode == 0, result.stdout + result.stderr
    with Session(settings) as si:
        driver = Driver(si)
        names = [s.name for s in driver.snapshots(driver.vm(driver.datacenter("DC0"),
                                                              "DC0_H0_VM0"))]
    assert sorted(names) == ["before-upgrade", "cloudinit", "new"]


@pytest.mark.vcsim
@pytest.mark.packer
@pytest.mark.slow
@own_simulator("function", password="publish-Secret-1")
def test_publish_a_targets_ova_from_both_front_doors(checkout, vcsim, tmp_path, monkeypatch):
    from imagebuilder.vcsim.simulation import simulator_var_files
    files = simulator_var_files(vcsim, tmp_path / "sim")
    monkeypatch.setenv("PACKER_VAR_FILES", " ".join(map(str, files)))
    built = invoke("build-node-ova-vsphere-ubuntu-2204")
    assert built.returncode == 0, built.stdout + built.stderr
    first = python_m("publish", "node-ova-vsphere-ubuntu-2204", "--library", "L", "--create")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "L/ubuntu-2204-kube-v1.37.1"
    again = invoke("publish-node-ova-vsphere-ubuntu-2204", "--library", "L", "-f")
    assert again.returncode == 0 and again.stdout.strip().endswith("L/ubuntu-2204-kube-v1.37.1")
    refused = python_m("publish", "node-ova-vsphere-ubuntu-2204", "--library", "L")
    assert refused.returncode == 2  # an item of that name exists: --force replaces it
