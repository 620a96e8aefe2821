"""The runner with a stand-in packer: -j caps, failure isolation, Ctrl-C, logs and summary.

Runs the real ``invoke`` program (ours, with the core -j) as a user would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from helpers.common import BIN, REPO, alive, events, invoke, max_concurrency

LOCAL_OSES = 17  # 13 Linux, 4 Windows



@pytest.fixture
def rhsm(monkeypatch, tmp_path):
    """What -all runs need from the environment: RHSM credentials for RHEL, an
    Administrator password and the ISOs for Windows."""
    monkeypatch.setenv("RHSM_USER", "someone")
    monkeypatch.setenv("RHSM_PASS", "rhsm-Secret-42")
    monkeypatch.setenv("WINDOWS_ADMIN_PASSWORD", "Windows-Secret-77")
    isos = [tmp_path / "windows.iso", tmp_path / "vmtools.iso"]
    for iso in isos:
        iso.write_bytes(b"stand-in")
    site = tmp_path / "site-windows.json"
    site.write_text(json.dumps({"os_iso_url": isos[0].as_uri(), "vmtools_iso_url": isos[1].as_uri()}))
    monkeypatch.setenv("PACKER_VAR_FILES", str(site))


def test_jobs_cap_and_failure_isolation(checkout, standin, rhsm):
    result = invoke("-j", "3", "build-node-ova-local-all",
                    env_extra={"STANDIN_SECONDS": "1.5", "STANDIN_FAIL": "photon-4"})
    assert result.returncode == 1, result.stderr
    starts = [e for e in events(standin) if e[1] == "start"]
    assert len(starts) == LOCAL_OSES  # the failure did not stop the others
    assert max_concurrency(standin) == 3
    ends = {e[2] for e in events(standin) if e[1] == "end"}
    assert len(ends) == LOCAL_OSES - 1
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    results = {b["target"]: b["result"] for b in summary["builds"]}
    assert results.pop("build-node-ova-local-photon-4") == "failed"
    assert set(results.values()) == {"ok"}
    assert re.search(r"^build-node-ova-local-photon-4 +failed +0m0\ds", result.stdout, re.M)
    assert "stand-in failure" in result.stdout  # the failing build's log tail is shown


def test_bare_j_runs_everything_at_once(checkout, standin, rhsm):
    result = invoke("-j", "build-all", env_extra={"STANDIN_SECONDS": "3"})
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == LOCAL_OSES


def test_default_is_one_at_a_time_and_env_knob(checkout, standin, rhsm):
    result = invoke("build-node-ova-local-base-all", env_extra={"STANDIN_SECONDS": "0.3"})
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == 1
    (standin / "events.log").unlink()
    result = invoke("build-node-ova-local-base-all",
                    env_extra={"STANDIN_SECONDS": "1.5", "INVOKE_BUILD_JOBS": "2"})
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == 2
    (standin / "events.log").unlink()
    result = invoke("build-all", "--hypervisor", "local-base", "--jobs", "4",
                    env_extra={"STANDIN_SECONDS": "1.5", "INVOKE_BUILD_JOBS": "2"})
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == 4  # the task flag wins over the environment


def test_fail_fast_stops_the_rest(checkout, standin, rhsm):
    result = invoke("-j", "2", "build-node-ova-local-all", "--fail-fast",
                    env_extra={"STANDIN_SECONDS": "1", "STANDIN_FAIL": "almalinux-9"})
    assert result.returncode == 1
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    results = [b["result"] for b in summary["builds"]]
    assert "skipped" in results and results.count("ok") < LOCAL_OSES - 1


def test_logs_are_per_target_and_redacted(checkout, standin, rhsm):
    result = invoke("build-node-ova-local-ubuntu-2204", env_extra={"STANDIN_SECONDS": "0.3"})
    assert result.returncode == 0, result.stderr
    log = (checkout.output_dir / "logs" / "build-node-ova-local-ubuntu-2204.log").read_text()
    assert "==> node-ova-local-ubuntu-2204: Creating VM..." in log
    assert "ssh password is <sensitive>" in log  # the stand-in echoes it; we redact
    argv = json.loads((standin / "build-node-ova-local-ubuntu-2204.argv").read_text())["argv"]
    work = checkout.output_dir / ".work" / "node-ova-local-ubuntu-2204"
    assert not (work / "build-vars.json").exists()  # secrets do not outlive the build
    assert (work / "cidata" / "user-data").is_file()  # install files rendered per build
    assert not any("ssh_password" in a for a in argv)
    info = json.loads((checkout.output_dir / "ubuntu-2204-kube-v1.37.1" / "build-info.json")
                      .read_text())
    assert info["target"] == "node-ova-local-ubuntu-2204"


def test_ctrl_c_stops_everything(checkout, standin, rhsm):
    env = dict(os.environ, STANDIN_SECONDS="60")
    proc = subprocess.Popen([str(BIN / "invoke"), "-j", "3", "build-node-ova-local-all"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    # Generous deadlines: planning 17 targets and stopping them is slow on a loaded machine.
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None \
            and len([e for e in events(standin) if e[1] == "start"]) < 3:
        time.sleep(0.2)
    started = [e for e in events(standin) if e[1] == "start"]
    assert len(started) == 3, proc.stderr.read() if proc.poll() is not None else ""
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    pids = [pid for e in started for pid in (e[3], e[4])]
    deadline = time.time() + 30  # a plugin's exit may be reported a moment later
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert [p for p in pids if alive(p)] == []  # no packer, no plugin left behind
    assert len([e for e in events(standin) if e[1] == "start"]) == 3  # nothing new started
    assert {e[2] for e in events(standin) if e[1] == "interrupted"} == {e[2] for e in started}
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    assert summary["interrupted"] is True


def test_dry_run_prints_and_runs_nothing(checkout, standin, tmp_path):
    extra = tmp_path / "x.json"
    extra.write_text('{"memory": "2048"}')
    result = invoke("build-node-ova-local-ubuntu-2204", "--dry-run",
                    env_extra={"PACKER_VAR_FILES": str(extra)})
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert command.startswith("packer build -var-file=")
    assert command.split()[-2] == f"-var-file={extra}"
    assert events(standin) == []


def test_several_named_targets_run_as_one_batch(checkout, standin, rhsm):
    """As `make -j2 A B C`: the named builds share the -j cap and one summary."""
    names = ["build-node-ova-local-ubuntu-2204", "build-node-ova-local-flatcar",
             "build-node-ova-local-photon-5"]
    result = invoke("-j", "2", *names, env_extra={"STANDIN_SECONDS": "1.5"})
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == 2
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    assert sorted(b["target"] for b in summary["builds"]) == sorted(names)
    (standin / "events.log").unlink()
    # different flags per target: refused, nothing started (issue 20: one set of flags)
    result = invoke("-j", "2", names[0], "--stream", names[1], env_extra={"STANDIN_SECONDS": "0.6"})
    assert result.returncode == 2, result.stderr
    assert "flags differ between targets" in result.stderr and events(standin) == []
    # flags after the last target apply to all: one batch, both streamed
    result = invoke("-j", "2", names[0], names[1], "--stream", env_extra={"STANDIN_SECONDS": "0.6"})
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == 2
    assert f"[{names[0]}] " in result.stdout and f"[{names[1]}] " in result.stdout


def test_plain_invoke_batches_too(checkout, standin, rhsm):
    """invoke.yaml names the executor, so invoke's own Program batches as well."""
    import sys
    code = "import sys; from invoke.main import program; sys.exit(program.run())"
    env = dict(os.environ, STANDIN_SECONDS="1.5", INVOKE_BUILD_JOBS="2")
    result = subprocess.run([sys.executable, "-c", code, "build-node-ova-local-ubuntu-2404",
                             "build-node-ova-local-rhel-8"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert max_concurrency(standin) == 2
