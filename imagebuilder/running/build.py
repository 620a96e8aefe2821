"""One build (or validate) of one target, as named steps with cleanups."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from imagebuilder.config.knobs import tool_path
from imagebuilder.config.validation import is_true
from imagebuilder.errors import BuildError, ImageBuilderError, InputError
from imagebuilder.planning import goss, unattend
from imagebuilder.planning.install_files import render_install_files
from imagebuilder.planning.plan import BuildPlan, write_build_files
from imagebuilder.running.packer import PackerProcess, find_packer
from imagebuilder.running.steps import BuildState, Cancelled, StepRunner

OK, FAILED, INTERRUPTED, SKIPPED, BUSY = "ok", "failed", "interrupted", "skipped", "busy"

ISO_TOOLS = ("xorriso", "mkisofs", "genisoimage", "hdiutil", "oscdimg")


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
        return self.result == OK


def missing_tools(plans: list[BuildPlan]) -> list[str]:
    """What the given builds need that this machine lacks, one line each with the fix."""
    missing = []
    try:
        find_packer()
    except InputError as exc:
        missing.append(exc.message)
    runs_ansible = any(not p.target.hypervisor.base for p in plans)
    if runs_ansible and not shutil.which("ansible-playbook", path=tool_path()):
        missing.append("ansible-playbook: not found; Packer's ansible provisioner needs it: "
                       "pip install ansible-core (into the environment you run from)")
    building = [p for p in plans if p.action == "build"]
    if building and not any(shutil.which(t) for t in ISO_TOOLS):
        missing.append("xorriso: not found; Packer builds the install-files CD (cd_files) "
                       "with it: apt-get install xorriso")
    # vmware builders leave monolithicSparse disks; the OVA needs streamOptimized ones
    # (vSphere exports are streamOptimized already, and ovftool converts by itself).
    if any(p.exports and not p.target.hypervisor.vsphere and not p.knobs.ovftool
           for p in building):
        from imagebuilder.ova.convert import MISSING_CONVERTER, find_converter
        if find_converter() is None:
            missing.append(MISSING_CONVERTER)
    if any(p.knobs.ovftool and not p.target.hypervisor.base for p in building) \
            and not shutil.which("ovftool"):
        missing.append("ovftool: not found but IB_OVFTOOL is set; install VMware OVF Tool "
                       "and put it on PATH, or unset IB_OVFTOOL to assemble the OVA ourselves")
    return missing


class TargetBusy(InputError):
    """Another build of the target holds its lock (exit code 2: nothing was done)."""


def lock_path(plan: BuildPlan) -> Path:
    """The target's lock file; beside its work directory, so that clean can
    remove the work directory while holding the lock."""
    return plan.checkout.work_root / f"{plan.target.name}.lock"


def take_lock(plan: BuildPlan, refused: str) -> IO:
    """Hold the target's lock until the returned file is closed (one build or
    clean of a target at a time); TargetBusy, saying ``refused``, when someone
    else holds it."""
    path = lock_path(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise TargetBusy(f"{plan.target.name}: busy: a build of this target is running "
                         f"(lock {path} is held), so {refused}; wait for that build "
                         "to end or stop it") from None
    return lock


def remove_private_files(plan: BuildPlan) -> None:
    """Remove the 0600 var files of a build (SSH password, secrets from flags,
    normalised copies of user files)."""
    for path in [plan.generated_file, plan.flag_secrets_file, *plan.normalised.values()]:
        path.unlink(missing_ok=True)


class PreflightStep:
    """Takes the target's lock (one build per target at a time). The tools and,
    for vSphere, vCenter's objects were checked for every build of the run
    before any started (api.run)."""

    name = "preflight"

    def run(self, state: BuildState) -> None:
        plan: BuildPlan = state.plan
        state.data["lock"] = take_lock(plan, f"this run does not {plan.action} it")

    def cleanup(self, state: BuildState) -> None:
        lock = state.data.pop("lock", None)
        if lock:
            lock.close()


class RenderStep:
    """Writes the generated var files and the install files into the work directory."""

    name = "render"

    def run(self, state: BuildState) -> None:
        plan: BuildPlan = state.plan
        write_build_files(plan)
        state.data["install_files"] = render_install_files(plan)
        # vmware builders create their output directory (and refuse an existing
        # one); vSphere builders only write into it when exporting, but the
        # manifest post-processor always needs it.
        if plan.action == "build" and plan.target.hypervisor.vsphere:
            try:
                plan.artifact_dir.mkdir(parents=True)
                state.data["created_artifact_dir"] = plan.artifact_dir
            except FileExistsError:  # there before (or made by another run meanwhile)
                pass

    def cleanup(self, state: BuildState) -> None:
        """Secrets do not outlive the build: remove every 0600 var file we wrote."""
        plan: BuildPlan = state.plan
        remove_private_files(plan)
        unattend.remove_floppy(plan.work_dir / "floppy")  # Windows: the Administrator password
        created = state.data.get("created_artifact_dir")
        if state.failed and created and created.is_dir():
            shutil.rmtree(created)  # this build made it: at most a half-finished export


class PackerStep:
    """Runs ``packer build`` or ``packer validate``, stopping it when cancelled."""

    name = "packer"

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line

    def run(self, state: BuildState) -> None:
        plan: BuildPlan = state.plan
        env = plan.knobs.packer_env()
        # ISOs are shared between builds; keep them out of the source tree.
        env.setdefault("PACKER_CACHE_DIR", str(plan.checkout.output_dir / ".packer_cache"))
        first_step = []

        def on_step(text: str) -> None:
            # Packer reads every var file before it reports its first step and
            # never again: the secrets need not stay on disk any longer, so
            # not even a SIGKILL of ours (no cleanup runs) leaves them behind.
            if not first_step:
                first_step.append(text)
                remove_private_files(plan)
            state.report(f"packer: {text}")
        proc = PackerProcess(
            plan.argv(find_packer()), plan.log_path, cwd=plan.checkout.root,
            env=env, secrets=plan.secret_values, on_step=on_step, on_line=self.on_line)
        state.data["packer"] = proc
        self.note_unvalidated(state)
        proc.start()
        while proc.poll() is None:
            if state.cancel.wait(0.2):
                proc.interrupt()
                proc.wait()
                raise Cancelled("packer was stopped")
        code = proc.wait()
        if code != 0:
            tail = "\n".join(proc.tail[-15:])
            raise BuildError(f"packer {plan.action} exited with code {code}; "
                             f"see {plan.log_path}\n{tail}")

    def note_unvalidated(self, state: BuildState) -> None:
        """Say in the build's log and output when goss will not check the image."""
        plan: BuildPlan = state.plan
        reason = goss.skipped_reason(plan)
        if not reason:
            return
        note = f"goss: the image will not be validated: {reason}"
        plan.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(plan.log_path, "a", encoding="utf-8") as log:
            log.write(f"# imagebuilder: {note}\n")
        state.report(note)
        if self.on_line:
            self.on_line(note)

    def cleanup(self, state: BuildState) -> None:
        proc: PackerProcess | None = state.data.get("packer")
        if proc and proc.poll() is None:
            proc.interrupt()
            proc.wait()


class PostProcessStep:
    """Reads what Packer reported in its manifest (the OVA hook ran inside Packer)."""

    name = "post-process"

    def run(self, state: BuildState) -> None:
        plan: BuildPlan = state.plan
        manifest = Path(plan.merged.get("manifest_output"))
        if not manifest.is_file():
            raise BuildError(f"packer finished but wrote no manifest at {manifest}; "
                             f"see {plan.log_path}")
        state.data["manifest"] = json.loads(manifest.read_text())

    def cleanup(self, state: BuildState) -> None:
        pass


class PublishStep:
    """Records what the build produced in its artifact directory."""

    name = "publish"

    def run(self, state: BuildState) -> None:
        plan: BuildPlan = state.plan
        plan.artifact_dir.mkdir(parents=True, exist_ok=True)
        info = {"target": plan.target.name, "vm_name": plan.merged.get("vm_name"),
                "builder": plan.target.hypervisor.builder,
                "kubernetes_semver": plan.merged.get("kubernetes_semver"),
                "build_date": plan.merged.get("build_date"),
                "base_inputs_hash": plan.merged.get("base_inputs_hash") or None,
                "files": sorted(p.name for p in plan.artifact_dir.iterdir())}
        (plan.artifact_dir / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")

    def cleanup(self, state: BuildState) -> None:
        pass


def steps_for(plan: BuildPlan, on_line: Callable[[str], None] | None = None) -> list:
    """The named steps of one build, in order."""
    if plan.action == "validate":
        return [PreflightStep(), RenderStep(), PackerStep(on_line)]
    hv = plan.target.hypervisor
    steps: list = [PreflightStep(), RenderStep()]
    if hv.vsphere:
        from imagebuilder.vsphere.steps import VSphereStep
        steps.append(VSphereStep())
    steps += [PackerStep(on_line), PostProcessStep()]
    if hv.vsphere and hv.base:
        from imagebuilder.vsphere.steps import VerifyBaseStep
        steps.append(VerifyBaseStep())
    steps.append(PublishStep())
    if hv.vsphere and not hv.base and is_true(plan.merged.get("destroy")):
        from imagebuilder.vsphere.steps import DestroyStep
        steps.append(DestroyStep())
    return steps


def run_plan(plan: BuildPlan, cancel=None, on_step: Callable[[str], None] | None = None,
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
    return BuildResult(
        target=plan.target.task_name(plan.action), action=plan.action, result=result,
        seconds=round(time.monotonic() - start, 1), artifact_dir=str(plan.artifact_dir),
        log=str(plan.log_path), error=error, cleanup_errors=runner.cleanup_errors,
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
                if path.is_dir():
                    shutil.rmtree(path)
                    removed.append(path)
                elif path.exists():
                    os.unlink(path)
                    removed.append(path)
    return removed
