"""``python -m imagebuilder``: the library's command line, for scripts without invoke.

python -m imagebuilder build node-ova-local-ubuntu-2204 --dry-run
python -m imagebuilder build -j 4 --hypervisor vsphere --all
python -m imagebuilder validate node-ova-vsphere-ubuntu-2204
python -m imagebuilder clean node-ova-local-ubuntu-2204      (clean alone: make clean)
python -m imagebuilder deploy-ova x.ova vm1 --template
python -m imagebuilder list | help | deps-ova | clean-ova | vcsim-build ...

Every invoke task has its command here, with the same flags (the build flags from the
options table, the helpers' from the command table) and exit codes: 2 bad input, 1 a
failure, 130/143/129 when a signal stopped it. A build prints the path of its run's
summary JSON last (``summary: <path>``).
"""

from __future__ import annotations

import argparse
import sys

from imagebuilder import api
from imagebuilder.cli import handlers
from imagebuilder.cli import ova as ova_cli
from imagebuilder.cli import publish as publish_cli
from imagebuilder.cli.commands import COMMANDS, Command, Param
from imagebuilder.config.catalog import Target
from imagebuilder.config.options import (
    BUILD,
    BY_NAME,
    VALIDATE,
    BuildOptions,
    Option,
    options_for,
    short_flags,
)
from imagebuilder.errors import EXIT_BAD_INPUT, ImageBuilderError
from imagebuilder.running.progress import LineProgress, default_progress
from imagebuilder.running.stopping import exit_code_of

PROG = "python -m imagebuilder"


def _flags(name: str) -> list[str]:
    return [f"-{s}" for s in short_flags(name)] + [f"--{name}"]


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One flag of OPTIONS; a count (``-j``) alone means no limit, as in make, and is
    checked by parse_jobs when the command runs, as every front door checks it."""
    if option.is_switch:
        parser.add_argument(*_flags(option.name), action="store_true", help=option.help)
    else:
        parser.add_argument(*_flags(option.name), nargs="?", const="0", default=None,
                            metavar="N", help=f"{option.help}; -j alone: no limit (as in make)")


def _add_targets(parser: argparse.ArgumentParser, help_: str) -> None:
    parser.add_argument("targets", nargs="*", help=help_)
    parser.add_argument("--all", action="store_true", help="every OS (of --hypervisor)")
    parser.add_argument("--hypervisor", help="with --all: only this hypervisor")


def _add_param(parser: argparse.ArgumentParser, param: Param) -> None:
    """A parameter of the command table: a value invoke takes positionally is positional
    here too, and also the flag (``deploy-ova X.ova vm1`` or ``--ova X.ova --name vm1``)."""
    if param.name == "jobs":
        _add_option(parser, BY_NAME["jobs"])
    elif param.is_switch:
        parser.add_argument(*_flags(param.name), action="store_true", help=param.help)
    elif param.required or param.positional_list:
        parser.add_argument(f"{param.attr}__pos", nargs="?" if param.required else "*",
                            metavar=param.attr.upper(), help=param.help)
        parser.add_argument(*_flags(param.name), dest=param.attr, metavar=param.attr.upper(),
                            help=f"the same as {param.attr.upper()}")
    else:
        parser.add_argument(*_flags(param.name), default=param.default,
                            metavar=param.attr.upper(), help=param.help)


def _add_command(sub: argparse._SubParsersAction, command: Command) -> None:
    sp = sub.add_parser(command.name, aliases=list(command.aliases), help=command.help,
                        description=command.help)
    if command.name == "clean":
        _add_targets(sp, "only these targets (e.g. node-ova-local-ubuntu-2204); none: every "
                     "target and Packer's ISO cache, as make clean")
    for param in command.params:
        _add_param(sp, param)
    sp.set_defaults(entry=command, entry_parser=sp)


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m imagebuilder``."""
    p = argparse.ArgumentParser(prog=PROG,
                                description="Build Kubernetes node images for vSphere.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (BUILD, VALIDATE):
        sp = sub.add_parser(command, help=f"{command} node-ova targets")
        _add_targets(sp, "e.g. node-ova-vsphere-ubuntu-2204")
        for option in options_for(command, several=True):
            _add_option(sp, option)
    sub.add_parser("list", help="list every target")
    for command in COMMANDS:
        _add_command(sub, command)
    ova_cli.add_subparser(sub)
    publish_cli.add_subparser(sub)
    return p


def _targets(args: argparse.Namespace) -> list[Target]:
    if args.all:
        return api.targets_of(args.hypervisor)
    if not args.targets:
        raise ImageBuilderError("name at least one target, or --all", EXIT_BAD_INPUT)
    return api.resolve_targets(args.targets)


def _build(args: argparse.Namespace) -> int:
    progress = LineProgress() if args.stream else default_progress()
    options = BuildOptions.from_flags(vars(args)) if args.command == BUILD else None
    report = api.run(_targets(args), args.command, jobs=handlers.job_count(args.jobs),
                     fail_fast=args.fail_fast, dry_run=args.dry_run, progress=progress,
                     stream=args.stream, options=options)
    handlers.say_summary(report)
    return report.exit_code


def _list() -> int:
    for target in api.targets_of():
        for action in ("build", "validate", "clean"):
            print(target.task_name(action))
    return 0


def _command_kwargs(command: Command, args: argparse.Namespace) -> dict[str, object]:
    """The handler's keywords from the parsed flags and positionals (a missing or twice
    given value: argparse's error, exit 2)."""
    p: argparse.ArgumentParser = args.entry_parser
    kwargs = {}
    for param in command.params:
        value = getattr(args, param.attr, None)
        given = getattr(args, f"{param.attr}__pos", None)
        if param.positional_list:
            value = ",".join([*given, *([value] if value else [])]) or param.default
        elif param.required:
            if given is not None and value is not None:
                p.error(f"give {param.attr.upper()} once (positionally or as --{param.name})")
            value = value if given is None else given
            if value is None:
                p.error(f"{param.attr.upper()} is required (or --{param.name})")
        kwargs[param.attr] = value
    return kwargs


def _run_command(args: argparse.Namespace) -> int:
    command: Command = args.entry
    if command.name == "clean" and (args.targets or args.all):
        for path in api.clean(_targets(args)):
            print(f"removed {path}")
        return 0
    kwargs = _command_kwargs(command, args)
    if command.name == "help":
        kwargs["program"] = PROG
    return command.handler(**kwargs)


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit code (2 bad input, 1 build failure,
    130/143/129 when interrupted)."""
    args = parser().parse_args(argv)
    if args.command == "ova":
        return ova_cli.run(args)
    if args.command == "publish":
        return publish_cli.run(args)
    try:
        if args.command in (BUILD, VALIDATE):
            return _build(args)
        if args.command == "list":
            return _list()
        return _run_command(args)
    except ImageBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return exit_code_of(exc)
