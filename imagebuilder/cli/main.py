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

from imagebuilder import api
from imagebuilder.cli import ova as ova_cli
from imagebuilder.cli import publish as publish_cli
from imagebuilder.config.options import OPTION_HELP, BuildOptions
from imagebuilder.errors import EXIT_BAD_INPUT, ImageBuilderError
from imagebuilder.running import tools as deps
from imagebuilder.running.progress import LineProgress, default_progress
from imagebuilder.running.stopping import exit_code_of
from imagebuilder.vcsim import simulation


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs") from None
    if value < 0:
        raise argparse.ArgumentTypeError("jobs must be 0 (no limit) or more")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imagebuilder",
                                description="Build Kubernetes node images for vSphere.")
    sub = p.add_subparsers(dest="command", required=True)
    for action in ("build", "validate"):
        sp = sub.add_parser(action, help=f"{action} node-ova targets")
        sp.add_argument("targets", nargs="*", help="e.g. node-ova-vsphere-ubuntu-2204")
        sp.add_argument("--all", action="store_true", help="every OS (of --hypervisor)")
        sp.add_argument("--hypervisor", help="with --all: only this hypervisor")
        sp.add_argument("-j", "--jobs", type=_jobs, nargs="?", const=0, default=1,
                        help="run N at once; -j alone: all at once (like make)")
        sp.add_argument("--fail-fast", action="store_true",
                        help="stop the other builds when one fails")
        sp.add_argument("--dry-run", action="store_true",
                        help="print the packer commands, run nothing")
        sp.add_argument("--stream", action="store_true",
                        help="echo Packer's output, prefixed with the target")
        if action == "build":
            for flag, text in OPTION_HELP.items():
                sp.add_argument(f"--{flag}", action="store_true", help=text)
    sp = sub.add_parser("clean", help="remove targets' output, work files and logs")
    sp.add_argument("targets", nargs="*")
    sp.add_argument("--all", action="store_true")
    sp.add_argument("--hypervisor")
    sp = sub.add_parser("vcsim-build", help="run builds against the embedded vCenter simulator, "
                        "verify their OVAs and deploy them back as templates")
    sp.add_argument("targets", nargs="*", default=["build-node-ova-vsphere-clone-ubuntu-2204"])
    sp.add_argument("-j", "--jobs", type=_jobs, nargs="?", const=0, default=1)
    sp = sub.add_parser("render", help="write a target's install files and variables, no build")
    sp.add_argument("target", help="e.g. node-ova-local-ubuntu-2404")
    sp.add_argument("--output", required=True, help="directory to write into")
    sub.add_parser("list", help="list every target")
    sub.add_parser("help", help="overview of targets and knobs")
    sub.add_parser("deps", help="check Packer, plugins, ansible, ovftool")
    ova_cli.add_subparser(sub)
    publish_cli.add_subparser(sub)
    return p


def _targets(args: argparse.Namespace):
    if args.all:
        return api.targets_of(args.hypervisor)
    if not args.targets:
        raise ImageBuilderError("name at least one target, or --all", EXIT_BAD_INPUT)
    return api.resolve_targets(args.targets)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "ova":
        return ova_cli.run(args)
    if args.command == "publish":
        return publish_cli.run(args)
    try:
        if args.command in ("build", "validate"):
            progress = (LineProgress() if args.stream else default_progress())
            options = BuildOptions(**{f.replace("-", "_"): getattr(args, f.replace("-", "_"))
                                      for f in OPTION_HELP}) if args.command == "build" else None
            report = api.run(_targets(args), args.command, jobs=args.jobs,
                             fail_fast=args.fail_fast, dry_run=args.dry_run,
                             progress=progress, stream=args.stream, options=options)
            return report.exit_code
        if args.command == "clean":
            for path in api.clean(_targets(args)):
                print(f"removed {path}")
            return 0
        if args.command == "vcsim-build":
            report = simulation.build_against_simulator(api.resolve_targets(args.targets),
                                                        jobs=args.jobs, progress=default_progress())
            return report.exit_code
        if args.command == "render":
            from imagebuilder.planning.inspect import render_target
            for path in render_target(args.target, args.output):
                print(path)
            return 0
        if args.command == "list":
            for target in api.targets_of():
                for action in ("build", "validate", "clean"):
                    print(target.task_name(action))
            return 0
        if args.command == "help":
            print(api.help_text(program="python -m imagebuilder"))
            return 0
        if args.command == "deps":
            report = deps.check()
            print(report.text())
            return report.exit_code
    except ImageBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return exit_code_of(exc)
    return 0
