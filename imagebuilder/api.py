"""What front ends call: build, validate and clean targets; list and describe them.

Used by ``tasks.py`` (invoke), ``python -m imagebuilder`` and developer
scripts alike. Nothing here imports invoke.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable

from imagebuilder.config.catalog import HYPERVISORS, Target, all_targets, parse_target
from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.options import OPTIONS, BuildOptions, Option
from imagebuilder.errors import (
    EXIT_BAD_INPUT,
    EXIT_BUILD_FAILED,
    EXIT_OK,
    ImageBuilderError,
    InputError,
)
from imagebuilder.planning.bases import base_target, needs_base, required_bases
from imagebuilder.planning.inspect import dry_run_plans
from imagebuilder.planning.plan import BuildPlan, plan_build
from imagebuilder.planning.rules import combine_target_problems, raise_target_problems
from imagebuilder.running import summary
from imagebuilder.running.build import (
    BUSY,
    FAILED,
    SKIPPED,
    BuildResult,
    clean_targets,
    run_plan,
)
from imagebuilder.running.progress import NullProgress, Progress, terminal_size
from imagebuilder.running.scheduler import run_jobs
from imagebuilder.running.stopping import stop_on_signals
from imagebuilder.running.tools import missing_tools
from imagebuilder.vsphere.preflight import preflight


@dataclass
class RunReport:
    """How a run of one or more builds ended."""

    results: list[BuildResult]
    #: The signal that interrupted the run (SIGINT for Ctrl-C), 0 when none did.
    signal: int = 0
    #: Why the summary JSON could not be written, if it could not.
    summary_error: str = ""
    #: This run's summary JSON, once written (builds only; None for a dry run).
    summary_path: Path | None = None

    @property
    def interrupted(self) -> bool:
        """Whether a signal (Ctrl-C, SIGTERM, SIGHUP) stopped the run."""
        return bool(self.signal)

    @property
    def exit_code(self) -> int:
        """128 + the signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP);
        1 when a build failed or the summary could not be written; 2 when a
        build was refused because another build of its target holds the lock."""
        if self.signal:
            return 128 + self.signal
        if any(r.result == FAILED for r in self.results) or self.summary_error:
            return EXIT_BUILD_FAILED
        return EXIT_BAD_INPUT if any(r.result == BUSY for r in self.results) else EXIT_OK


def resolve_targets(names: Iterable[str], checkout: Checkout | None = None) -> list[Target]:
    """Targets from names such as ``build-node-ova-vsphere-ubuntu-2204``."""
    checkout = checkout or find_checkout()
    os_names = checkout.os_names()
    return [parse_target(name, os_names) for name in names]


def targets_of(hypervisor: str | None = None, checkout: Checkout | None = None) -> list[Target]:
    """Every target of a hypervisor (or of all of them)."""
    checkout = checkout or find_checkout()
    return all_targets(checkout.os_names(), hypervisor)


def plan_all(targets: list[Target], action: str, checkout: Checkout | None = None,
             knobs: Knobs | None = None, options: BuildOptions | None = None) -> list[BuildPlan]:
    """Plan every target; report the problems of all of them at once (InputError)."""
    checkout = checkout or find_checkout()
    knobs = knobs or Knobs.from_env()
    plans, found = [], []
    for target in targets:
        try:
            plans.append(plan_build(checkout, target, knobs, action, options=options))
        except InputError as exc:
            found.append((target.task_name(action), exc.problems or [exc.message]))
    raise_target_problems(found, len(targets))
    return plans


def clash_problems(plans: list[BuildPlan]) -> list[str]:
    """Builds of one run that would make the same VM (same vCenter, same name)
    or write the same output directory: each would fail, or worse, clean up
    the other's work. One line per clash, naming both targets."""
    problems = []
    seen: dict[tuple, BuildPlan] = {}
    for plan in plans:
        if plan.action != "build":
            continue
        keys = [("output directory", str(plan.artifact_dir))]
        if plan.target.hypervisor.vsphere:
            keys.append(("VM", plan.merged.get("vcenter_server"), plan.merged.get("vm_name")))
        for key in keys:
            other = seen.setdefault(key, plan)
            if other is not plan:
                what = f"output directory {key[1]}" if key[0] == "output directory" \
                    else f"VM {key[2]!r} on {key[1]}"
                problems.append(f"{other.target.task_name('build')} and "
                                f"{plan.target.task_name('build')} would both make {what}; "
                                "build them in separate runs, one after the other, or give "
                                "one another vm_name/output_directory (PACKER_VAR_FILES)")
    return problems


def _refuse_clashes(plans: list[BuildPlan]) -> None:
    problems = clash_problems(plans)
    if problems:
        raise InputError("builds of this run would overwrite each other; nothing was started",
                         problems)


def run(targets: list[Target], action: str = "build", jobs: int | None = 1,
        fail_fast: bool = False, dry_run: bool = False, progress: Progress | None = None,
        stream: bool = False, out: IO[str] | None = None,
        checkout: Checkout | None = None, knobs: Knobs | None = None,
        options: BuildOptions | None = None) -> RunReport:
    """Build (or validate) ``targets``, at most ``jobs`` at once (0/None: all at once).

    Every input is checked before anything starts (InputError, exit 2): the
    configuration, the tools, and for vSphere builds every object in vCenter.
    Missing or stale base images are built first (make-style prerequisites).
    Two builds that would make the same VM or output directory are refused
    (InputError). With ``dry_run`` the commands are printed and nothing runs.
    Otherwise prints the summary table to ``out`` and writes the run's JSON
    summary (``output/logs/summary.json`` points to the latest). SIGTERM and
    SIGHUP stop the run as Ctrl-C does (see stopping.py).
    """
    out = out or sys.stdout
    checkout = checkout or find_checkout()
    if dry_run:
        dry_run_plans(targets, action, out, checkout, knobs)
        return RunReport([])
    with stop_on_signals():
        return _run(targets, action, jobs, fail_fast, progress or NullProgress(), stream, out,
                    checkout, knobs, options)


def _run(targets: list[Target], action: str, jobs: int | None, fail_fast: bool,
         progress: Progress, stream: bool, out: IO[str], checkout: Checkout,
         knobs: Knobs | None, options: BuildOptions | None) -> RunReport:
    """The run in its phases: plan and check everything, the bases, the builds, the summary."""
    plans, bases = _plan_and_check(targets, action, out, checkout, knobs, options)
    batches = _Batches(jobs, fail_fast, progress, stream, out)
    results, signum = batches.run(bases) if bases else ([], 0)
    runnable, skipped = _after_bases(plans, results, signum)
    results += skipped
    if runnable:
        more, signum = batches.run(runnable)
        results += more
    report = RunReport(results, signum)
    _summarise(report, action, checkout, out)
    return report


def _plan_and_check(targets: list[Target], action: str, out: IO[str], checkout: Checkout,
                    knobs: Knobs | None, options: BuildOptions | None,
                    ) -> tuple[list[BuildPlan], list[BuildPlan]]:
    """Plan every target and check every input before anything starts (InputError):
    the configuration, clashes, the tools, the base builds needed first and, for
    vSphere builds, vCenter's objects. Returns the plans and the bases to build first."""
    plans = plan_all(targets, action, checkout, knobs, options)
    _refuse_clashes(plans)
    for warning in _run_warnings(plans):
        print(f"warning: {warning}", file=out)
    problems = missing_tools(plans)
    if problems:
        raise InputError("missing tools; nothing was started", problems)
    if action != "build":
        return plans, []
    bases = required_bases(plans, report=lambda text: print(text, file=out))
    _refuse_clashes(bases + plans)
    preflight(bases + plans)
    return plans, bases


def _run_warnings(plans: list[BuildPlan]) -> list[str]:
    """Each warning of the run once, ending with the targets it concerns (several)."""
    per_target = [(plan.target.task_name(plan.action),
                   [w.removeprefix(f"{plan.target.task_name('build')}: ") for w in plan.warnings])
                  for plan in plans]
    return combine_target_problems(per_target, len(plans))


@dataclass
class _Batches:
    """How the builds of a run are run: at most ``jobs`` at once, each with its
    output streamed to ``out`` when ``stream`` is set."""

    jobs: int | None
    fail_fast: bool
    progress: Progress
    stream: bool
    out: IO[str]

    def on_line_for(self, plan: BuildPlan) -> Callable[[str], None] | None:
        """Where a build's output lines go: ``[target] line`` on ``out`` when streaming."""
        if not self.stream:
            return None
        label = plan.target.task_name(plan.action)
        return lambda line: print(f"[{label}] {line}", file=self.out, flush=True)

    def run(self, batch: list[BuildPlan]) -> tuple[list[BuildResult], int]:
        """Run one batch of builds; their results and the signal that stopped them (or 0)."""
        return run_jobs(
            batch,
            lambda plan, cancel, on_step: run_plan(plan, cancel, on_step, self.on_line_for(plan)),
            name_of=lambda plan: plan.target.task_name(plan.action),
            max_jobs=self.jobs, fail_fast=self.fail_fast, progress=self.progress)


def _after_bases(plans: list[BuildPlan], base_results: list[BuildResult],
                 signum: int) -> tuple[list[BuildPlan], list[BuildResult]]:
    """The plans that may run after the bases, and a "skipped" result for each
    one that may not (the run was interrupted, or its base did not build)."""
    failed_bases = {r.target for r in base_results if not r.ok}
    runnable, skipped = [], []
    for plan in plans:
        base = base_target(plan.target).task_name("build") if needs_base(plan) else ""
        if signum or base in failed_bases:
            why = "interrupted" if signum else f"its base {base} did not build"
            skipped.append(BuildResult(plan.target.task_name(plan.action), plan.action, SKIPPED,
                                       0.0, str(plan.artifact_dir), str(plan.log_path),
                                       f"not started: {why}"))
        else:
            runnable.append(plan)
    return runnable, skipped


def _summarise(report: RunReport, action: str, checkout: Checkout, out: IO[str]) -> None:
    """Write the run's JSON summary (builds only) and print the table and the errors."""
    # The JSON first: after SIGHUP the terminal may be gone, and printing fail.
    if action == "build":
        try:
            report.summary_path = summary.write_json(report.results, checkout.logs_dir,
                                                     report.signal)
        except ImageBuilderError as exc:
            report.summary_error = str(exc)
    try:
        print(summary.table(report.results, terminal_size(out)[0] if out.isatty() else None),
              file=out)
        for r in report.results:
            if r.error and r.result != "ok":
                print(f"\n{r.target}: {r.error}", file=out)
            for err in r.cleanup_errors:
                print(f"{r.target}: {err}", file=out)
        if report.summary_error:
            print(f"\nerror: {report.summary_error}", file=out)
        out.flush()
    except OSError:
        pass


def clean(targets: list[Target], checkout: Checkout | None = None,
          knobs: Knobs | None = None) -> list[str]:
    """Remove the output, work directory and logs of each target; returns what went.

    Refuses (exit 2, nothing removed) while a build of any of them runs.
    """
    checkout = checkout or find_checkout()
    knobs = knobs or Knobs.from_env()
    plans = [plan_build(checkout, target, knobs, "build", strict=False) for target in targets]
    return [str(p) for p in clean_targets(plans)]


def _helpers() -> list[tuple[str, str]]:
    """The helper tasks in the help overview (the command table's): usage, what it does."""
    from imagebuilder.cli.commands import COMMANDS
    rows = [("build-all [--hypervisor HV]", "every OS of one hypervisor (default local)")]
    for command in COMMANDS:
        usage = " ".join([command.name] + [p.attr.upper() for p in command.params if p.required])
        rows.append((usage, command.help.rstrip(".")))
    return rows


def _flags(options: Iterable[Option]) -> str:
    names = [f"--{o.name}" for o in options]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def help_text(checkout: Checkout | None = None, program: str = "invoke") -> str:
    """A ``make help`` style overview of the targets, their flags (from OPTIONS) and knobs."""
    checkout = checkout or find_checkout()
    lines = ["Usage:", f"  {program} [-j [N]] <target> [<target> ...]", "",
             "Node OVA builds (each has validate- and clean- twins):"]
    for hv in HYPERVISORS.values():
        lines.append(f"  build-node-ova-{hv.name}-<os>".ljust(44) + hv.summary)
        lines.append(f"  build-node-ova-{hv.name}-all".ljust(44) + f"every OS with {hv.name}")
    lines += ["", "Helpers:"]
    lines += [f"  {usage}".ljust(44) + what for usage, what in _helpers()]
    lines += ["", "Build flags:"]
    lines += [f"  {''.join(f'-{c}, ' for c in o.short)}--{o.name}{'' if o.is_switch else ' N'}"
              .ljust(44) + o.help for o in OPTIONS]
    lines += ["  " + _flags(o for o in OPTIONS if o.several_only) + ": only where several "
              "targets run (the -all targets, build-all, python -m imagebuilder)",
              "  validate takes only " + _flags(o for o in OPTIONS if "validate" in o.commands),
              "", "OSes: " + " ".join(checkout.os_names()),
              "", "Environment: PACKER_FLAGS PACKER_VAR_FILES FOREGROUND ON_ERROR_ASK DEBUG "
              "PACKER_COLOR SSH_PRIVATE_KEY_FILE SSH_PUBLIC_KEY_FILE ANSIBLE_SCP_EXTRA_ARGS "
              "RHSM_USER RHSM_PASS FLATCAR_CHANNEL FLATCAR_VERSION VSPHERE_PASSWORD "
              "INVOKE_BUILD_JOBS IB_OVFTOOL (see README.md)"]
    return "\n".join(lines)
