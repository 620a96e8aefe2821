"""invoke tasks: the upstream Makefile's OVA targets, wired to the imagebuilder library.

    invoke --list
    invoke build-node-ova-vsphere-ubuntu-2204 --dry-run
    invoke -j 4 build-node-ova-vsphere-all      (needs the image-builder program, see README)
    INVOKE_BUILD_JOBS=4 invoke build-node-ova-vsphere-all
    invoke build-all --hypervisor vsphere --jobs 4

Every task here only translates flags and exit codes; the work is in imagebuilder.
The build flags come from the options table (imagebuilder/config/options.py), the
helper tasks from the command table (imagebuilder/cli/commands.py), which
``python -m imagebuilder`` reads too.
"""

from __future__ import annotations

import functools
import inspect
import sys

from invoke import Collection, Exit, Task
from invoke.parser import Argument, ParseError

from imagebuilder.cli.commands import COMMANDS, Command
from imagebuilder.config.catalog import HYPERVISORS, Target, buildable, windows_refusal
from imagebuilder.config.checkout import find_checkout
from imagebuilder.config.options import (
    BUILD,
    VALIDATE,
    BuildOptions,
    options_for,
    parse_jobs,
    short_flags,
)
from imagebuilder.errors import ImageBuilderError, InputError

# Only what listing the tasks needs is imported here; the modules that pull in
# pyVmomi and jsonschema (api, simulation, the handlers) are imported by the task
# that runs (invoke --list stays fast; tests/cli/test_invoke_list.py checks it).
from imagebuilder.running.progress import LineProgress, default_progress
from imagebuilder.running.stopping import exit_code_of

HYPERVISOR_HELP = "local (default), local-base, local-vmx, vsphere, vsphere-base or vsphere-clone"


class CountArgument(Argument):
    """A job count shown as ``-j INT``; a value that is not a number is bad input (exit 2)
    in the parser already, as parse_jobs words it."""

    def set_value(self, value, cast: bool = True) -> None:  # noqa: ANN001 (invoke's)
        try:
            parse_jobs(value, "--jobs")
        except InputError as exc:
            raise ParseError(exc.message) from None
        super().set_value(value, cast)


class TableTask(Task):
    """A task whose one-letter flags come from the options table (SHORT_FLAGS), the same
    on every task (``-f`` is --force wherever there is one), instead of invoke's first
    free letter of each name."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, auto_shortflags=False, **kwargs)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict:
        """invoke's options for one argument, plus the table's short flags."""
        opts = super().arg_opts(name, default, taken_names)
        opts["names"] = [*opts["names"], *(s for s in short_flags(name) if s not in taken_names)]
        if name == "jobs":
            opts["kind"] = int
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        """The arguments, the job count as a CountArgument."""
        args = super().get_arguments(ignore_unknown_help)
        for arg in args:
            if arg.kind is int:
                arg.__class__ = CountArgument
        return args


def _user_facing(body):
    """ImageBuilderError -> its message and exit code; Ctrl-C -> 130 (SIGTERM 143, SIGHUP 129)."""
    @functools.wraps(body)
    def wrapper(c, *args, **kwargs):
        try:
            return body(c, *args, **kwargs)
        except ImageBuilderError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise Exit("interrupted", code=exit_code_of(exc)) from None
    return wrapper


def _jobs(c, jobs) -> int:
    """Task flag, then invoke config ``build.jobs`` (INVOKE_BUILD_JOBS, core -j), then 1."""
    if jobs is not None:
        return parse_jobs(jobs, "--jobs")
    jobs = c.config.get("build", {}).get("jobs")
    return 1 if jobs is None else parse_jobs(jobs, "INVOKE_BUILD_JOBS (or -j)")


def _run(c, targets: list[Target], action: str, dry_run=False, jobs=None,
         fail_fast=False, stream=False, **options) -> None:
    from imagebuilder import api
    from imagebuilder.cli.handlers import say_summary
    dry_run = dry_run or bool(c.config.run.dry)  # invoke's core -R/--dry: a dry run
    progress = LineProgress() if stream else default_progress()
    report = api.run(targets, action, jobs=_jobs(c, jobs), fail_fast=fail_fast,
                     dry_run=dry_run, progress=progress, stream=stream,
                     options=BuildOptions.from_flags(options))
    say_summary(report)
    if report.exit_code:
        raise Exit(code=report.exit_code)


def _make(name: str, doc: str, body, help: dict | None = None, **marks) -> Task:
    """A task of ``body``; ``marks`` are the ``ib_*`` attributes executor.py reads."""
    body.__doc__ = doc
    body.__name__ = name.replace("-", "_")
    task = TableTask(_user_facing(body), name=name, help=help or {})
    for key, value in marks.items():
        setattr(task, f"ib_{key}", value)
    return task


def _with_options(body, action: str, several: bool, extra: tuple[inspect.Parameter, ...] = ()):
    """``body(c, **flags)`` given the signature invoke reads a task's flags from (its
    own ``extra`` parameters, then the options of OPTIONS for ``action``), their help,
    and the executor's marks (``flags``: the table flags it takes)."""
    options = options_for(action, several)
    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD), *extra]
    params += [inspect.Parameter(o.attr, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=o.default) for o in options]
    body.__signature__ = inspect.Signature(params)
    return body, {o.name: o.help for o in options}


def refused_task(target: Target, action: str) -> Task:
    """A target upstream names but cannot build (Windows base, clone, vmx): exit 2, one line."""
    def body(c):
        raise InputError(windows_refusal(target.task_name(action), target.os_name))
    return _make(target.task_name(action), "Refused: Windows images are built from the ISO "
                 "only (local, vsphere).", body, harmless=True)


def clean_task(target: Target) -> Task:
    def body(c):
        from imagebuilder import api
        for path in api.clean([target]):
            print(f"removed {path}")
    return _make(target.task_name("clean"),
                 f"Remove the output, work files and logs of {target.name}.", body)


def publish_task(target: Target) -> Task:
    def body(c, library="", item="", create=False, force=False):
        from imagebuilder.ova.progress import TqdmByteProgress
        from imagebuilder.running.stopping import stop_on_signals
        from imagebuilder.vsphere.library_deploy import publish_target
        with stop_on_signals():
            done = publish_target(target, library, item, create=create, force=force,
                                  progress=TqdmByteProgress(), report=print)
        print(f"{done.library.name}/{done.item.name}")
    return _make(target.task_name("publish"), f"Publish {target.name}'s OVA to a vSphere "
                 "Content Library (content_library, or --library).", body,
                 {"library": "the library (default: content_library / vsphere_library_name)",
                  "item": "the item's name (default: the OVA's name)",
                  "create": "create a missing library on the build's datastore",
                  "force": "replace an item of the same name"})


def target_task(target: Target, action: str) -> Task:
    """``build-`` or ``validate-`` of one target; several named together run as one batch."""
    def batch(c, targets, **flags):
        _run(c, targets, action, **flags)

    def body(c, **flags):
        batch(c, [target], **flags)
    summary = f"Run packer validate for {target.os_name}" if action == VALIDATE \
        else f"Build {target.os_name}"
    body, help_ = _with_options(body, action, several=False)
    return _make(target.task_name(action), f"{summary}: {target.hypervisor.summary}.", body,
                 help_, flags=tuple(o.attr for o in options_for(action, False)),
                 action=action, targets=lambda: [target], batch=_user_facing(batch))


def hypervisor_all_task(hv_name: str) -> Task:
    def targets():
        from imagebuilder import api
        return api.targets_of(hv_name)

    def batch(c, targets, **flags):
        _run(c, targets, BUILD, **flags)

    def body(c, **flags):
        batch(c, targets(), **flags)
    body, help_ = _with_options(body, BUILD, several=True)
    return _make(f"build-node-ova-{hv_name}-all",
                 f"Build every OS with {hv_name}: {HYPERVISORS[hv_name].summary}.", body, help_,
                 flags=tuple(o.attr for o in options_for(BUILD, True)), action=BUILD,
                 targets=targets, batch=_user_facing(batch))


def build_all_task() -> Task:
    def build_all(c, hypervisor="local", **flags):
        from imagebuilder import api
        _run(c, api.targets_of(hypervisor), BUILD, **flags)
    body, options_help = _with_options(build_all, BUILD, several=True, extra=(
        inspect.Parameter("hypervisor", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default="local"),))
    return _make("build-all", "Build every OS of one hypervisor (default: local).", body,
                 dict(options_help, hypervisor=HYPERVISOR_HELP),
                 flags=tuple(o.attr for o in options_for(BUILD, True)))


def command_task(command: Command) -> Task:
    """The invoke task of one entry of the command table (cli/commands.py)."""
    def body(c, **kwargs):
        code = command.handler(**kwargs)
        if code:
            raise Exit(code=code)
    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(p.attr, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 **({} if p.required else {"default": p.default}))
               for p in command.params]
    body.__signature__ = inspect.Signature(params)
    return _make(command.name, command.help, body, {p.name: p.help for p in command.params},
                 harmless=command.harmless)


def namespace() -> Collection:
    ns = Collection()
    os_names = find_checkout().os_names()
    for hv_name in HYPERVISORS:
        for os_name in os_names:
            target = Target(HYPERVISORS[hv_name], os_name)
            if not buildable(target):
                for action in (BUILD, VALIDATE, "clean"):
                    ns.add_task(refused_task(target, action))
                continue
            for action in (BUILD, VALIDATE):
                ns.add_task(target_task(target, action))
            ns.add_task(clean_task(target))
            if not HYPERVISORS[hv_name].base:  # base builds make no OVA
                ns.add_task(publish_task(target))
        ns.add_task(hypervisor_all_task(hv_name))
    ns.add_task(build_all_task())
    for command in COMMANDS:
        ns.add_task(command_task(command))
    # None, not 1: invoke casts INVOKE_BUILD_JOBS to the default's type, and
    # int("abc") would end in a traceback inside invoke instead of our message.
    ns.configure({"build": {"jobs": None}})
    return ns


try:
    ns = namespace()
except ImageBuilderError as exc:  # invoke --list from outside a checkout, a bad IB_ROOT
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
