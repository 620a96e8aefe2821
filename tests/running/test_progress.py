"""Progress: a redrawn tqdm line per running build on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from imagebuilder.running.progress import (
    LineProgress,
    TqdmProgress,
    TqdmTaskProgress,
    default_progress,
)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    progress = default_progress(out)
    assert isinstance(progress, LineProgress)
    progress.started("build-node-ova-local-flatcar")
    progress.step("build-node-ova-local-flatcar", "packer: Creating VM...")
    progress.finished("build-node-ova-local-flatcar", "ok", 61.2)
    assert out.getvalue().splitlines() == [
        "[build-node-ova-local-flatcar] started",
        "[build-node-ova-local-flatcar] packer: Creating VM...",
        "[build-node-ova-local-flatcar] ok after 61s"]


def test_tqdm_line_per_build_on_a_terminal():
    out = FakeTerminal()
    progress = default_progress(out)
    assert isinstance(progress, TqdmProgress)
    progress.started("a")
    progress.started("b")
    progress.step("a", "packer: Waiting for IP...")
    progress.step("b", "packer: Cloning VM...")
    progress.finished("a", "failed", 3.0)
    progress.close()
    text = out.getvalue()
    assert "a: packer: Waiting for IP... [00:00]" in text
    assert "b: packer: Cloning VM... [00:00]" in text
    assert "a: failed after 3s" in text


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
