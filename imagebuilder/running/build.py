"""One build (or validate) of one target, as named steps with cleanups: which steps
(``steps_for``), running them (``run_plan``), and removing what builds made (``clean_targets``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imagebuilder.config.varfiles import is_true
from imagebuilder.errors import BuildError, ImageBuilderError
from imagebuilder.files import remove_path
from imagebuilder.planning import goss
from imagebuilder.planning.plan import BuildPlan
from imagebuilder.redaction import Redactor
from imagebuilder.running.build_steps import (
    LockStep,
    PackerStep,
    ReadManifestStep,
    RecordStep,
    RenderStep,
    TargetBusy,
    take_lock,
)
from imagebuilder.running.post_steps import CustomPostProcessorStep, OvaStep
from imagebuilder.running.steps import BuildState, Cancelled, Step, StepRunner

OK, FAILED, INTERRUPTED, SKIPPED, BUSY = "ok", "failed", "interrupted", "skipped", "busy"


@dataclass
class BuildResult:
    """How one target ended, for the summary table and JSON."""

    target: str
    action: str
    result: str
    seconds: float
    artifact_dir: str
    log: str
    error: str = ""
    cleanup_errors: list[str] = field(default_factory=list)
    #: "goss", "skipped: <why>" (the image was not validated), "" (no image to validate)
    validation: str = ""

    @property
    def ok(self) -> bool:
        """Whether the build succeeded."""
        return self.result == OK


def steps_for(plan: BuildPlan, on_line: Callable[[str], None] | None = None) -> list[Step]:
    """The named steps of one build, in order.

    A build: lock, render, (vSphere: connect once, prepare), Packer, its
    manifest, the OVA (when Packer exported disks), the custom post-processor,
    (vSphere base: verify the template), the record, (destroy: remove the VM),
    (a Content Library configured: publish the OVA to it).
    """
    if plan.action == "validate":
        return [LockStep(), RenderStep(), PackerStep(on_line)]
    hv = plan.target.hypervisor
    steps: list[Step] = [LockStep(), RenderStep()]
    if hv.vsphere:
        from imagebuilder.vsphere.steps import ConnectStep, VSphereStep
        steps += [ConnectStep(), VSphereStep()]
    steps += [PackerStep(on_line), ReadManifestStep()]
    if plan.exports:
        steps.append(OvaStep(on_line))
    steps.append(CustomPostProcessorStep(on_line))
    if hv.vsphere and hv.base:
        from imagebuilder.vsphere.steps import VerifyBaseStep
        steps.append(VerifyBaseStep())
    steps.append(RecordStep())
    if hv.vsphere and not hv.base and is_true(plan.merged.get("destroy")):
        from imagebuilder.vsphere.steps import DestroyStep
        steps.append(DestroyStep())
    if plan.exports:
        from imagebuilder.vsphere.library_deploy import LibraryPublishStep, library_settings
        if library_settings(plan)[0]:
            steps.append(LibraryPublishStep())
    return steps


def run_plan(plan: BuildPlan, cancel: threading.Event | None = None,
             on_step: Callable[[str], None] | None = None,
             on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Run one plan's steps to the end and say how it went; never raises for build errors."""
    state = BuildState(plan=plan, on_step=on_step)
    if cancel is not None:
        state.cancel = cancel
    runner = StepRunner(steps_for(plan, on_line))
    start = time.monotonic()
    result, error = OK, ""
    try:
        runner.run(state)
    except Cancelled as exc:
        result, error = INTERRUPTED, str(exc)
    except TargetBusy as exc:
        result, error = BUSY, str(exc)
    except ImageBuilderError as exc:
        result, error = FAILED, str(exc)
    except KeyboardInterrupt:
        result, error = INTERRUPTED, "interrupted"
    except Exception as exc:  # an unexpected error still ends as a result, not a hang
        result, error = FAILED, f"{type(exc).__name__}: {exc}"
    redact = Redactor(plan.secret_values)  # the table, the JSON summary, the messages
    return BuildResult(
        target=plan.target.task_name(plan.action), action=plan.action, result=result,
        seconds=round(time.monotonic() - start, 1), artifact_dir=str(plan.artifact_dir),
        log=str(plan.log_path), error=redact(error),
        cleanup_errors=[redact(e) for e in runner.cleanup_errors],
        validation=goss.validation(plan))


def clean_targets(plans: list[BuildPlan]) -> list[Path]:
    """Remove the targets' output directories, work directories and logs; returns
    what went. Holds every target's lock meanwhile: while a build of any of them
    runs, removes nothing and raises TargetBusy."""
    removed = []
    with contextlib.ExitStack() as locks:
        for plan in plans:
            locks.enter_context(take_lock(plan, "it cannot be cleaned now"))
        for plan in plans:
            logs = sorted(plan.checkout.logs_dir.glob(f"*-{plan.target.name}.log"))
            for path in [plan.artifact_dir, plan.work_dir, *logs]:
                # A symbolic link is removed itself: what it points to is never touched.
                try:
                    if remove_path(path):
                        removed.append(path)
                except OSError as exc:
                    raise BuildError(f"{exc.filename or path}: cannot remove it "
                                     f"({exc.strerror or exc}); clean stopped there") \
                        from None
    return removed
