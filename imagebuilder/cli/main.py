"""``python -m imagebuilder``: the library's command line, for scripts without invoke.

python -m imagebuilder build node-ova-local-ubuntu-2204 --dry-run
python -m imagebuilder build -j 4 --hypervisor vsphere --all
python -m imagebuilder validate node-ova-vsphere-ubuntu-2204
python -m imagebuilder clean node-ova-local-ubuntu-2204
python -m imagebuilder list | help | deps
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from imagebuilder import api
from imagebuilder.cli import ova as ova_cli
from imagebuilder.cli import publish as publish_cli
from imagebuilder.config.catalog import Target
from imagebuilder.config.options import (
    BUILD,
    BY_NAME,
    VALIDATE,
    BuildOptions,
    Option,
    options_for,
    parse_jobs,
)
from imagebuilder.errors import EXIT_BAD_INPUT, ImageBuilderError
from imagebuilder.running import tools as deps
from imagebuilder.running.progress import LineProgress, default_progress
from imagebuilder.running.stopping import exit_code_of
from imagebuilder.vcsim import simulation


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One flag of OPTIONS; a count (``-j``) alone means no limit, as in make, and is
    checked by parse_jobs when the command runs, as every front door checks it."""
    flags = ([f"-{option.short}"] if option.short else []) + [f"--{option.name}"]
    if option.is_switch:
        parser.add_argument(*flags, action="store_true", help=option.help)
    else:
        parser.add_argument(*flags, nargs="?", const="0", default="1", metavar="N",
                            help=f"{option.help}; -j alone: no limit (as in make)")


def _add_targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", help="e.g. node-ova-vsphere-ubuntu-2204")
    parser.add_argument("--all", action="store_true", help="every OS (of --hypervisor)")
    parser.add_argument("--hypervisor", help="with --all: only this hypervisor")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m imagebuilder``."""
    p = argparse.ArgumentParser(prog="python -m imagebuilder",
                                description="Build Kubernetes node images for vSphere.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (BUILD, VALIDATE):
        sp = sub.add_parser(command, help=f"{command} node-ova targets")
        _add_targets(sp)
        for option in options_for(command, several=True):
            _add_option(sp, option)
    _add_targets(sub.add_parser("clean", help="remove targets' output, work files and logs"))
    sp = sub.add_parser("vcsim-build", help="run builds against the embedded vCenter simulator, "
                        "verify their OVAs and deploy them back as templates")
    sp.add_argument("targets", nargs="*", default=["build-node-ova-vsphere-clone-ubuntu-2204"])
    _add_option(sp, BY_NAME["jobs"])
    sp = sub.add_parser("render", help="write a target's install files and variables, no build")
    sp.add_argument("target", help="e.g. node-ova-local-ubuntu-2404")
    sp.add_argument("--output", required=True, help="directory to write into")
    sub.add_parser("list", help="list every target")
    sub.add_parser("help", help="overview of targets and knobs")
    sub.add_parser("deps", help="check Packer, plugins, ansible, ovftool")
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
    report = api.run(_targets(args), args.command, jobs=parse_jobs(args.jobs, "-j/--jobs"),
                     fail_fast=args.fail_fast, dry_run=args.dry_run, progress=progress,
                     stream=args.stream, options=options)
    return report.exit_code


def _clean(args: argparse.Namespace) -> int:
    for path in api.clean(_targets(args)):
        print(f"removed {path}")
    return 0


def _vcsim_build(args: argparse.Namespace) -> int:
    report = simulation.build_against_simulator(api.resolve_targets(args.targets),
                                                jobs=parse_jobs(args.jobs, "-j/--jobs"),
                                                progress=default_progress())
    return report.exit_code


def _render(args: argparse.Namespace) -> int:
    from imagebuilder.planning.inspect import render_target
    for path in render_target(args.target, args.output):
        print(path)
    return 0


def _list(args: argparse.Namespace) -> int:
    for target in api.targets_of():
        for action in ("build", "validate", "clean"):
            print(target.task_name(action))
    return 0


def _help(args: argparse.Namespace) -> int:
    print(api.help_text(program="python -m imagebuilder"))
    return 0


def _deps(args: argparse.Namespace) -> int:
    report = deps.check()
    print(report.text())
    return report.exit_code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    BUILD: _build, VALIDATE: _build, "clean": _clean, "vcsim-build": _vcsim_build,
    "render": _render, "list": _list, "help": _help, "deps": _deps,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit code (2 bad input, 1 build failure,
    130/143/129 when interrupted)."""
    args = parser().parse_args(argv)
    if args.command == "ova":
        return ova_cli.run(args)
    if args.command == "publish":
        return publish_cli.run(args)
    try:
        return COMMANDS[args.command](args)
    except ImageBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return exit_code_of(exc)
