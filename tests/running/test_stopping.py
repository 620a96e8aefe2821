"""Whatever stops the tool stops its builds: Ctrl-C, SIGTERM, SIGHUP and SIGKILL,
with the stand-in packer and the real ``invoke`` program, as a user (or CI) runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from helpers.common import BIN, REPO, alive, events

from imagebuilder.running.packer import PackerProcess

TARGETS = ["build-node-ova-local-ubuntu-2204", "build-node-ova-local-photon-5"]


def start_builds(standin, *targets: str, count: int) -> tuple[subprocess.Popen, list]:
    """Start ``invoke -j`` on ``targets`` (long stand-in builds) and wait until
    ``count`` Packers run; returns the tool's process and their start events."""
    env = dict(os.environ, STANDIN_SECONDS="60")
    proc = subprocess.Popen([str(BIN / "invoke"), "-j", *targets], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len([e for e in events(standin) if e[1] == "start"]) < count:
        time.sleep(0.2)
    started = [e for e in events(standin) if e[1] == "start"]
    assert len(started) == count, proc.stderr.read() if proc.poll() is not None else ""
    return proc, started


def left_alive(started: list) -> list[int]:
    """Packers and their "plugins" still running, after giving them a moment."""
    pids = [pid for e in started for pid in (e[3], e[4])]
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def wait_for(condition, timeout: float = 60) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def step_lines(checkout) -> list[str]:
    """The build logs that hold a first Packer step."""
    logs = (checkout.output_dir / "logs").glob("build-*.log")
    return [str(p) for p in logs if "==> " in p.read_text(errors="replace")]


def secrets_left(checkout) -> list[str]:
    work = checkout.output_dir / ".work"
    return sorted(str(p) for pattern in ("*/build-vars.json", "*/flag-secrets.json", "**/*.tmp")
                  for p in work.glob(pattern))


@pytest.mark.parametrize("sig, to_group, code", [
    (signal.SIGINT, True, 130),    # a terminal's Ctrl-C: the whole foreground group
    (signal.SIGTERM, False, 143),  # CI cancel, kill
    (signal.SIGHUP, False, 129),   # the terminal closed, the SSH session dropped
])
def test_a_signal_stops_every_build_and_cleans_up(checkout, standin, sig, to_group, code):
    proc, started = start_builds(standin, *TARGETS, count=2)
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err
    assert left_alive(started) == []  # no packer, no plugin left behind
    assert {e[2] for e in events(standin) if e[1] == "interrupted"} == {e[2] for e in started}
    assert secrets_left(checkout) == []
    assert "TARGET" in out and "interrupted" in out  # the summary was printed
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["signal"] == sig.name
    assert {b["result"] for b in summary["builds"]} == {"interrupted"}
    # the run keeps the target's lock no longer: the next build of it runs
    again = subprocess.run([str(BIN / "invoke"), TARGETS[0]], cwd=REPO, capture_output=True,
                           text=True, env=dict(os.environ, STANDIN_SECONDS="0.3"), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr


def test_packer_dies_with_a_killed_tool(checkout, standin):
    """SIGKILL runs no cleanup of ours: the kernel tells each Packer (death signal)
    and it stops as on Ctrl-C; its var files were gone once it had read them."""
    proc, started = start_builds(standin, *TARGETS, count=2)
    # The files go when each Packer reports its first step (it has read them by then);
    # a SIGKILL before that leaves them, as README says: wait for that moment.
    assert wait_for(lambda: secrets_left(checkout) == [] and len(step_lines(checkout)) == 2)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert left_alive(started) == []
    assert {e[2] for e in events(standin) if e[1] == "interrupted"} == {e[2] for e in started}
    assert secrets_left(checkout) == []


def test_a_packer_outlives_the_thread_that_asked_for_it(tmp_path):
    """The death signal follows the thread that forked the child: Packer must not
    be killed when the scheduler's worker that started it ends (see _Launcher)."""
    procs = []

    def worker():
        proc = PackerProcess(["sh", "-c", "sleep 1; echo done"], tmp_path / "x.log",
                             cwd=tmp_path, env=os.environ)
        proc.start()
        procs.append(proc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()  # the worker has ended; its child runs on
    assert procs[0].wait(30) == 0
    assert "done" in (tmp_path / "x.log").read_text()


def test_a_second_build_of_a_running_target_is_busy(checkout, standin):
    """clean refuses to pull a running build's files away; a second build of the
    same target is reported busy (exit 2), not failed."""
    proc, started = start_builds(standin, TARGETS[0], count=1)
    try:
        work = checkout.output_dir / ".work" / "node-ova-local-ubuntu-2204"
        clean = subprocess.run([str(BIN / "invoke"), "clean-node-ova-local-ubuntu-2204"],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
        assert clean.returncode == 2, clean.stdout + clean.stderr
        assert "node-ova-local-ubuntu-2204: busy: a build of this target is running" \
            in clean.stderr and "cannot be cleaned now" in clean.stderr
        assert "removed" not in clean.stdout
        assert (work / "cidata" / "user-data").is_file()
        assert (checkout.output_dir / "logs" / "build-node-ova-local-ubuntu-2204.log").is_file()
        second = subprocess.run([str(BIN / "invoke"), TARGETS[0]], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "build-node-ova-local-ubuntu-2204  busy" in second.stdout
        assert "so this run does not build it" in second.stdout and "failed" not in second.stdout
        assert len([e for e in events(standin) if e[1] == "start"]) == 1
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=90)
    assert proc.returncode == 130
    clean = subprocess.run([str(BIN / "invoke"), "clean-node-ova-local-ubuntu-2204"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0 and not work.exists(), clean.stderr
