"""A build as a sequence of named steps, each able to clean up after itself.

As in Packer's own builders: a step's cleanup is registered the moment the
step starts, cleanups of every started step run in reverse order whether the
build succeeded, failed or was interrupted, and a failing cleanup never hides
the original error (its message is kept in ``StepRunner.cleanup_errors``).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from imagebuilder.planning.plan import BuildPlan


class Step(Protocol):
    """One named piece of a build: ``run`` does it, ``cleanup`` undoes what must not stay."""

    name: str

    def run(self, state: BuildState) -> None:
        """Do the step's work; raise to fail the build (Cancelled when stopped)."""

    def cleanup(self, state: BuildState) -> None:
        """Runs after every later step's cleanup, whether the build succeeded
        (``state.failed`` False), failed or was interrupted."""


@dataclass
class BuildState:
    """What steps share: the plan, the cancel flag, and what each step produced."""

    plan: BuildPlan
    #: Set when the build must stop (Ctrl-C, --fail-fast after another failure).
    cancel: threading.Event = field(default_factory=threading.Event)
    #: What steps hand on to later steps and to their own cleanups, by name.
    data: dict[str, Any] = field(default_factory=dict)
    #: Whether a step failed or the build was interrupted (cleanups read it).
    failed: bool = False
    on_step: Callable[[str], None] | None = None

    def report(self, text: str) -> None:
        """Tell the front end's progress display what the build is doing now."""
        if self.on_step:
            self.on_step(text)


class Cancelled(Exception):
    """The build was asked to stop (Ctrl-C, or --fail-fast after another failure)."""


class StepRunner:
    """Runs steps in order with their cleanups on an ExitStack."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.cleanup_errors: list[str] = []

    def run(self, state: BuildState) -> None:
        """Run every step in order; stop at the first failure or cancel, then clean up."""
        with contextlib.ExitStack() as stack:
            try:
                for step in self.steps:
                    if state.cancel.is_set():
                        raise Cancelled(f"stopped before {step.name}")
                    state.report(step.name)
                    stack.callback(self._cleanup, step, state)
                    step.run(state)
            except BaseException:
                state.failed = True  # cleanups (run next, in reverse) can tell
                raise

    def _cleanup(self, step: Step, state: BuildState) -> None:
        try:
            step.cleanup(state)
        except Exception as exc:  # a cleanup must not hide the build's own error
            self.cleanup_errors.append(f"cleanup of {step.name}: {exc}")
