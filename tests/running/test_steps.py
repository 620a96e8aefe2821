"""The step runner: cleanups in reverse, always, and never hiding the original error."""

from __future__ import annotations

import pytest

from imagebuilder.running.steps import BuildState, Cancelled, StepRunner


class Recorder:
    def __init__(self, name, log, fail=False, fail_cleanup=False):
        self.name, self.log, self.fail, self.fail_cleanup = name, log, fail, fail_cleanup

    def run(self, state):
        self.log.append(f"run {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} broke")

    def cleanup(self, state):
        self.log.append(f"cleanup {self.name} failed={state.failed}")
        if self.fail_cleanup:
            raise OSError(f"{self.name} cleanup broke")


def test_cleanups_run_in_reverse_after_success():
    log = []
    StepRunner([Recorder("a", log), Recorder("b", log)]).run(BuildState(plan=None))
    assert log == ["run a", "run b", "cleanup b failed=False", "cleanup a failed=False"]


def test_failure_runs_cleanups_of_started_steps_only_and_keeps_the_error():
    log = []
    runner = StepRunner([Recorder("a", log, fail_cleanup=True), Recorder("b", log, fail=True),
                         Recorder("c", log)])
    with pytest.raises(RuntimeError, match="b broke"):
        runner.run(BuildState(plan=None))
    assert log == ["run a", "run b", "cleanup b failed=True", "cleanup a failed=True"]
    assert runner.cleanup_errors == ["cleanup of a: a cleanup broke"]


def test_cancel_stops_before_the_next_step():
    log = []
    state = BuildState(plan=None)

    class Canceller(Recorder):
        def run(self, st):
            super().run(st)
            st.cancel.set()

    with pytest.raises(Cancelled, match="stopped before b"):
        StepRunner([Canceller("a", log), Recorder("b", log)]).run(state)
    assert log == ["run a", "cleanup a failed=True"]
