"""The steps after Packer that node.json also has as post-processors: the OVA,
then the user's custom post-processor.

Our runs pass ``-except=ova,custom-post-processor`` to Packer and run these
two steps instead, in upstream's order (the custom command after the OVA
exists); node.json keeps both post-processors for ``packer build`` run on the
template directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from imagebuilder.files import create_exclusive, remove_path
from imagebuilder.ova import AssembleOptions, assemble_from_packer
from imagebuilder.running.build_steps import log_note, run_to_end, stop
from imagebuilder.running.packer import PackerProcess
from imagebuilder.running.steps import BuildState, Cancelled

if TYPE_CHECKING:
    from imagebuilder.planning.plan import BuildPlan

#: The percentage steps in which the OVA's passes are reported.
REPORT_EVERY = 5


class _StepProgress:
    """The OVA's byte progress on the build's progress line, in REPORT_EVERY %
    steps; raises Cancelled at the next chunk once the build is cancelled (the
    assembly then removes its partial files)."""

    def __init__(self, state: BuildState) -> None:
        self.state = state
        self.label = ""
        self.total = self.done = 0
        self.shown = -REPORT_EVERY

    def begin(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.shown = label, total, 0, -REPORT_EVERY
        self.advance(0)

    def advance(self, count: int) -> None:
        if self.state.cancel.is_set():
            raise Cancelled("stopped while making the OVA")
        self.done += count
        percent = self.done * 100 // self.total if self.total else 100
        if percent >= self.shown + REPORT_EVERY:
            self.shown = percent - percent % REPORT_EVERY
            self.state.report(f"ova: {self.label} {self.shown}%")

    def end(self) -> None:
        pass


class OvaStep:
    """Assembles the OVA from the disks Packer exported (imagebuilder.ova), as
    node.json's ``ova`` post-processor does when Packer runs the template alone.

    When the step itself fails or is interrupted, its cleanup removes every
    file it added to the output directory: the assembly leaves no partial file
    behind when it stops, and this also covers a stop between its renames. A
    finished OVA stays, whatever later steps do.
    """

    name = "ova"

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line

    def run(self, state: BuildState) -> None:
        """Assemble and verify ``<name>.ova`` (and .ovf, .mf, .ova.sha256) in the
        build's output directory; say so when the build exported no disk."""
        plan = state.plan
        out = plan.artifact_dir
        state.data["ova_before"] = set(os.listdir(out)) if out.is_dir() else set()
        state.data["ova_dir"] = out

        def log(text: str) -> None:
            if state.cancel.is_set():  # between passes (a disk's conversion has no progress)
                raise Cancelled("stopped while making the OVA")
            log_note(plan, f"ova: {text}")
            if self.on_line:
                self.on_line(f"ova: {text}")

        options = AssembleOptions.from_env(plan.knobs.packer_env())
        result = assemble_from_packer(out, options, _StepProgress(state), log, plan.checkout)
        state.data["ova"] = result.ova if result is not None else None
        if result is not None:
            log(result.summary())

    def cleanup(self, state: BuildState) -> None:
        """When this step did not finish: remove what it added to the output directory."""
        out: Path | None = state.data.get("ova_dir")
        if "ova" in state.data or out is None or not out.is_dir():
            return
        before = state.data.get("ova_before", set())
        for name in sorted(set(os.listdir(out)) - before):
            remove_path(out / name)


#: The interpreter line Packer's shell-local puts above inline commands.
SHEBANG = "#!/bin/sh -e"


class CustomPostProcessorStep:
    """Upstream's ``custom-post-processor``: when ``custom_post_processor`` is
    "true", runs ``custom_post_processor_command`` (the user's own shell text,
    by design) as Packer's shell-local would: a script of the inline lines under
    ``/bin/sh -e``, in the checkout, with Packer's environment plus
    CUSTOM_POST_PROCESSOR, PACKER_BUILD_NAME and PACKER_BUILDER_TYPE. Its output
    goes to the build's log, redacted; a non-zero exit fails the build."""

    name = "custom-post-processor"

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.on_line = on_line

    @staticmethod
    def wanted(state: BuildState) -> bool:
        """Upstream's test: the variable is exactly "true"."""
        return state.plan.merged.get("custom_post_processor") == "true"

    def run(self, state: BuildState) -> None:
        """Run the command if asked to; BuildError when it fails."""
        if not self.wanted(state):
            return
        plan = state.plan
        script = create_exclusive(
            plan.work_dir / "custom-post-processor.sh",
            f"{SHEBANG}\n{plan.merged.get('custom_post_processor_command')}\n", mode=0o700)
        state.data["custom_script"] = script
        builder = plan.target.hypervisor.builder
        env = dict(plan.knobs.packer_env(), CUSTOM_POST_PROCESSOR="true",
                   PACKER_BUILD_NAME=builder, PACKER_BUILDER_TYPE=_builder_type(plan))
        proc = PackerProcess(["/bin/sh", "-e", str(script)], plan.log_path,
                             cwd=plan.checkout.root, env=env, secrets=plan.secret_values,
                             on_line=self.on_line)
        state.data["custom_process"] = proc
        log_note(plan, "custom-post-processor: running custom_post_processor_command")
        run_to_end(proc, state, "custom-post-processor: custom_post_processor_command")

    def cleanup(self, state: BuildState) -> None:
        """Stop the command if it still runs; remove its script."""
        stop(state.data.get("custom_process"))
        script: Path | None = state.data.pop("custom_script", None)
        if script is not None:
            script.unlink(missing_ok=True)


def _builder_type(plan: BuildPlan) -> str:
    """The builder's type as Packer names it (vsphere-iso-base is a vsphere-iso)."""
    builders = json.loads(plan.checkout.node_template.read_text()).get("builders", [])
    name = plan.target.hypervisor.builder
    return next((b.get("type", name) for b in builders if b.get("name", b.get("type")) == name),
                name)
