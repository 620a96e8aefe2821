"""Progress: a line per running build redrawn in place on a terminal, plain lines elsewhere.

The live lines are checked as a user sees them: the real ``invoke`` with the stand-in
packer in a real terminal (tmux) at 80 and 160 columns, read back with capture-pane."""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest
from helpers.common import BIN

from imagebuilder.running.progress import (
    WARNING,
    LineProgress,
    LiveProgress,
    TqdmTaskProgress,
    build_line,
    default_progress,
    duration,
    fit,
)
from imagebuilder.running.summary import table

LONG = "build-node-ova-vsphere-clone-ubuntu-2204-efi"
STEPS = ["packer: Provisioning with Ansible...", "ova: writing ubuntu-2204-efi-kube-v1.37.1.ova "
         "45%", "vsphere: preparing template ubuntu-2204-efi-base for linked clones",
         "packer: Waiting for IP...", "x" * 200]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    progress = default_progress(out)
    assert isinstance(progress, LineProgress)
    progress.started("build-node-ova-local-flatcar")
    progress.step("build-node-ova-local-flatcar", "packer: Creating VM...")
    progress.step("build-node-ova-local-flatcar", WARNING + "goss: not validated")
    progress.step("build-node-ova-local-photon-5", WARNING + "goss: not validated")
    progress.finished("build-node-ova-local-flatcar", "ok", 61.9)
    progress.close()
    assert out.getvalue().splitlines() == [
        "[build-node-ova-local-flatcar] started",
        "[build-node-ova-local-flatcar] packer: Creating VM...",
        "[build-node-ova-local-flatcar] ok after 1m01s",
        "warning: goss: not validated [build-node-ova-local-flatcar, "
        "build-node-ova-local-photon-5]"]


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("step", STEPS)
def test_a_build_line_fits_shows_its_time_and_cuts_between_words(width, step):
    line = build_line(LONG, step, 754.2, width, len(LONG))
    assert len(line) <= width - 1
    assert line.startswith(f"{LONG}  12m34s")
    text = line[len(f"{LONG}  12m34s"):].strip()
    if text != step:
        assert text.endswith("...") or text.endswith("45%")
        words = [w.removesuffix("...") for w in text.split()]
        assert all(w in step.split() for w in words if w)  # whole words only
    if step.endswith("45%"):
        assert text.endswith(" 45%")


@pytest.mark.parametrize("width", [24, 40, 60])
def test_narrow_terminals_keep_the_timer(width):
    line = build_line(LONG, STEPS[0], 5, width, len(LONG))
    assert len(line) <= width - 1 and "0m05s" in line


def test_fit():
    assert fit("packer: Creating VM...", 80) == "packer: Creating VM..."
    assert fit("packer: Provisioning with Ansible...", 28) == "packer: Provisioning with..."
    assert fit("averyveryverylongword", 10) == "..."
    assert fit("ova: writing node.ova 100%", 20) == "ova: writing... 100%"


def test_the_same_duration_in_the_line_and_the_table():
    from imagebuilder.running.build import BuildResult
    result = BuildResult("build-node-ova-local-flatcar", "build", "ok", 125.9, "/o", "/l", "")
    out = FakeTerminal()
    progress = LiveProgress(out, size=lambda: (80, 24))
    progress.started(result.target)
    progress.finished(result.target, result.result, result.seconds)
    progress.close()
    assert duration(125.9) == "2m05s"
    assert "build-node-ova-local-flatcar  2m05s  ok" in out.getvalue()
    assert re.search(r"build-node-ova-local-flatcar +ok +2m05s", table([result]))


def test_a_narrow_table_puts_the_artifacts_below_each_row():
    from imagebuilder.running.build import BuildResult
    results = [BuildResult(LONG, "build", "ok", 5, "/work/output/ubuntu-2204-efi-kube-v1.37.1",
                           "/l", "")]
    assert all(len(line) < 80 for line in table(results, 80).splitlines())
    assert table(results, 80).splitlines()[2] == "    /work/output/ubuntu-2204-efi-kube-v1.37.1"
    assert len(table(results, 160).splitlines()) == 2 and len(table(results).splitlines()) == 2


def test_task_progress_bar_per_vcenter_task():
    out = FakeTerminal()
    progress = TqdmTaskProgress(out)
    progress("snapshot 'new' of vm1", 0)
    progress("snapshot 'new' of vm1", 60)
    progress("snapshot 'new' of vm1", 100)
    progress("deletion of vm2", 100)
    assert "snapshot 'new' of vm1:  60%" in out.getvalue()
    assert "deletion of vm2: 100%" in out.getvalue()
    quiet = io.StringIO()
    TqdmTaskProgress(quiet)("x", 50)
    assert quiet.getvalue() == ""


# --- in a real terminal ----------------------------------------------------------------

needs_tmux = pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
TARGETS = ["build-node-ova-local-ubuntu-2204", "build-node-ova-local-photon-5",
           "build-node-ova-local-ubuntu-2404-efi", "build-node-ova-local-flatcar"]
RUNNING = re.compile(r"^(build-node-ova-\S+) +(\d+m\d\ds)  (packer|lock|render|starting|read-|"
                     r"ova|custom|record)")


class Terminal:
    """A tmux pane of a given size running one command, read back as its screen."""

    def __init__(self, width: int, command: list[str]) -> None:
        self.socket = f"ib-test-{uuid.uuid4().hex[:8]}"
        self.width = width
        script = " ".join(map(shlex.quote, command)) + "; echo EXIT=$?"
        self._tmux("new-session", "-d", "-x", str(width), "-y", "40", "-s", "t",
                   "bash", "--norc", "-c", f"{script}; sleep 600")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def screen(self, joined: bool = False) -> list[str]:
        """The pane's lines; ``joined``: a line the terminal wrapped as one."""
        args = ["-J"] if joined else []
        return self._tmux("capture-pane", "-p", *args, "-t", "t").rstrip("\n").splitlines()

    def wait_for(self, predicate, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if predicate(lines):
                return lines
            time.sleep(0.1)
        raise AssertionError("timed out; the screen:\n" + "\n".join(self.screen()))

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(checkout, standin, monkeypatch):
    made = []

    def start(width: int, *args: str, seconds: str = "4") -> Terminal:
        monkeypatch.setenv("STANDIN_SECONDS", seconds)
        made.append(Terminal(width, [str(BIN / "invoke"), "-j", "3", *TARGETS, *args]))
        return made[-1]
    yield start
    for t in made:
        t.close()


def _running(lines: list[str]) -> list[re.Match]:
    return [m for m in map(RUNNING.match, lines) if m]


@needs_tmux
@pytest.mark.parametrize("width", [80, 160])
def test_live_lines_in_a_real_terminal(terminal, width):
    term = terminal(width)
    screen = term.wait_for(lambda lines: len(_running(lines)) == 3
                           and any("packer: " in line for line in lines))
    running = _running(screen)
    assert {m.group(1) for m in running} <= set(TARGETS)
    # one line per build, nothing wrapped, the timers in one column
    assert all(len(line) < width for line in screen)
    assert len({line.index(m.group(2)) for line, m in zip(screen, running)}) == 1
    done = term.wait_for(lambda lines: any(line.startswith("EXIT=") for line in lines))
    assert "EXIT=0" in done and not _running(done)
    finished = {m.group(1): m.group(2) for m in map(
        re.compile(r"^(build-node-ova-\S+) +(\d+m\d\ds)  ok$").match, done) if m}
    rows = {m.group(1): m.group(2) for m in map(
        re.compile(r"^(build-node-ova-\S+) +ok \(not validated\) +(\d+m\d\ds)").match, done)
        if m}
    assert finished == rows and sorted(rows) == sorted(TARGETS)  # the same durations
    warnings = [line for line in done if line.startswith("warning: goss")]
    assert len(warnings) == 1  # once per run, naming the builds (on its wrapped lines)
    text = " ".join(done)
    assert all(text.count(t) == 3 for t in TARGETS)  # finished line, the warning, the table
    # the terminal wrapped only what has no space to break at: a long path (the checkout
    # is in a temporary directory) below its table row, the summary's path
    wrapped = [line for line in term.screen(joined=True) if len(line) >= width]
    assert all(line.startswith(("    /", "summary: /")) for line in wrapped), wrapped


@needs_tmux
def test_ctrl_c_leaves_no_live_line_behind(terminal):
    term = terminal(80, seconds="30")
    term.wait_for(lambda lines: len(_running(lines)) == 3
                  and any("packer: " in line for line in lines))
    term.keys("C-c")
    done = term.wait_for(lambda lines: any(line.startswith("EXIT=") for line in lines))
    assert "EXIT=130" in done
    assert not _running(done) and not any("^C" in line for line in done)
    assert sum(bool(re.match(r"^build-node-ova-\S+ +\d+m\d\ds  interrupted$", line))
               for line in done) == 3
