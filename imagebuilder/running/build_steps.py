"""The steps every build has: the target's lock, the rendered files, Packer, its
manifest, and the record of what the build made (build-info.json)."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import IO, Callable

from imagebuilder.errors import BuildError, InputError
from imagebuilder.files import open_append, open_lock, private_dir, write_file
from imagebuilder.planning import goss, unattend
from imagebuilder.planning.install_files import render_install_files
from imagebuilder.planning.plan import BuildPlan, write_build_files
from imagebuilder.redaction import Redactor
from imagebuilder.running.packer import PackerProcess, find_packer
from imagebuilder.running.progress import WARNING
from imagebuilder.running.steps import BuildState, Cancelled


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
    lock = open_lock(path)  # a link planted there is replaced, never followed
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise TargetBusy(f"{plan.target.name}: busy: a build of this target is running "
                         f"(lock {path} is held), so {refused}; wait for that build "
                         "to end or stop it") from None
    return lock


def remove_private_files(plan: BuildPlan) -> None:
    """Remove the 0600 files of a build that hold secrets (SSH password, secrets from
    flags, normalised copies of user files, a template copy with the vCenter password)."""
    paths = [plan.generated_file, plan.flag_secrets_file, *plan.normalised.values()]
    if plan.template_secrets:
        paths.append(plan.template)
    for path in paths:
        path.unlink(missing_ok=True)


def log_note(plan: BuildPlan, note: str) -> None:
    """Add one line of ours (``# imagebuilder: ...``) to the build's log, redacted."""
    with open_append(plan.log_path) as log:
        log.write(f"# imagebuilder: {Redactor(plan.secret_values)(note)}\n")


class LockStep:
    """Takes the target's lock (one build per target at a time). The tools and,
    for vSphere, vCenter's objects were checked for every build of the run
    before any started (api.run)."""

    name = "lock"

    def run(self, state: BuildState) -> None:
        """Take the lock; TargetBusy when another build of the target holds it."""
        plan = state.plan
        state.data["lock"] = take_lock(plan, f"this run does not {plan.action} it")

    def cleanup(self, state: BuildState) -> None:
        """Release the lock."""
        lock = state.data.pop("lock", None)
        if lock:
            lock.close()


class RenderStep:
    """Writes the generated var files and the install files into the work directory."""

    name = "render"

    def run(self, state: BuildState) -> None:
        """Write the build's files (and make a vSphere build's output directory)."""
        plan = state.plan
        # Fresh and private (0700): nothing planted in it beforehand is written through.
        private_dir(plan.work_dir, fresh=True)
        write_build_files(plan)
        state.data["install_files"] = render_install_files(plan)
        if plan.action == "build" and plan.exports:  # the OVA's SBOM and provenance read it
            from imagebuilder.ova.build_record import RECORD_NAME, record_from_plan, write_record
            write_record(record_from_plan(plan, find_packer()), plan.work_dir / RECORD_NAME)
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
        remove_private_files(state.plan)
        # Windows: the answer file holds the Administrator password.
        unattend.remove_floppy(state.plan.work_dir / "floppy")
        created = state.data.get("created_artifact_dir")
        if state.failed and created and created.is_dir():
            shutil.rmtree(created)  # this build made it: at most a half-finished export


class PackerStep:
    """Runs ``packer build`` or ``packer validate``, stopping it when cancelled."""

    name = "packer"

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line

    def run(self, state: BuildState) -> None:
        """Run Packer to the end; BuildError with its output's tail when it fails."""
        plan = state.plan
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
        run_to_end(proc, state, f"packer {plan.action}")

    def note_unvalidated(self, state: BuildState) -> None:
        """Say in the build's log and output when goss will not check the image."""
        reason = goss.skipped_reason(state.plan)
        if not reason:
            return
        note = f"goss: the image will not be validated: {reason}"
        log_note(state.plan, note)
        state.report(WARNING + note)  # said once per run, with every build it concerns
        if self.on_line:
            self.on_line(note)

    def cleanup(self, state: BuildState) -> None:
        """Stop Packer if it still runs (it then removes what it made)."""
        stop(state.data.get("packer"))


def run_to_end(proc: PackerProcess, state: BuildState, what: str) -> None:
    """Start ``proc`` and wait for it to exit 0. When the build is cancelled,
    interrupt it as Ctrl-C would and raise Cancelled; when it fails, raise a
    BuildError saying ``what`` exited with which code, with its output's tail."""
    proc.start()
    while proc.poll() is None:
        if state.cancel.wait(0.2):
            proc.interrupt()
            proc.wait()
            raise Cancelled(f"{what} was stopped")
    code = proc.wait()
    if code != 0:
        tail = "\n".join(proc.tail[-15:])
        raise BuildError(f"{what} exited with code {code}; see {proc.log_path}\n{tail}")


def stop(proc: PackerProcess | None) -> None:
    """Interrupt ``proc`` (and what it started) if it is still running."""
    if proc and proc.poll() is None:
        proc.interrupt()
        proc.wait()


class ReadManifestStep:
    """Reads the manifest Packer's manifest post-processor wrote (what it built)."""

    name = "read-manifest"

    def run(self, state: BuildState) -> None:
        """Load packer-manifest.json into the state; BuildError when Packer wrote none."""
        plan = state.plan
        manifest = Path(plan.merged.get("manifest_output"))
        if not manifest.is_file():
            raise BuildError(f"packer finished but wrote no manifest at {manifest}; "
                             f"see {plan.log_path}")
        state.data["manifest"] = json.loads(manifest.read_text())

    def cleanup(self, state: BuildState) -> None:
        """Nothing to undo: the step only reads."""


class RecordStep:
    """Records what the build produced in its artifact directory (build-info.json)."""

    name = "record"

    def run(self, state: BuildState) -> None:
        """Write build-info.json: target, VM name, versions, input hash, the files made."""
        plan = state.plan
        plan.artifact_dir.mkdir(parents=True, exist_ok=True)
        info = {"target": plan.target.name, "vm_name": plan.merged.get("vm_name"),
                "builder": plan.target.hypervisor.builder,
                "kubernetes_semver": plan.merged.get("kubernetes_semver"),
                "build_date": plan.merged.get("build_date"),
                "base_inputs_hash": plan.merged.get("base_inputs_hash") or None,
                "files": sorted(p.name for p in plan.artifact_dir.iterdir())}
        write_file(plan.artifact_dir / "build-info.json", json.dumps(info, indent=2) + "\n",
                   mode=0o644)

    def cleanup(self, state: BuildState) -> None:
        """Nothing to undo: a failed build's record goes with its directory."""
