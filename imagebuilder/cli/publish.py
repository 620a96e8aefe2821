"""``python -m imagebuilder publish``: an OVA into a vSphere Content Library.

    python -m imagebuilder publish output/x/x.ova --library node-images [--item NAME]
        [--create] [--force] [--datastore NAME]

vCenter and the datastore come from ova/vsphere.json and PACKER_VAR_FILES, as
for the builds (``VSPHERE_PASSWORD``, ``VSPHERE_CA_FILE`` apply). Ctrl-C,
SIGTERM and SIGHUP fail the upload session: no half item is left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from imagebuilder.errors import ImageBuilderError, InputError


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``publish``."""
    sp = subparsers.add_parser("publish", help="publish an OVA to a vSphere Content Library",
                               description="Import an OVA as an OVF item of a Content Library "
                               "(vCenter from ova/vsphere.json and PACKER_VAR_FILES).")
    sp.add_argument("ova", type=Path, help="the .ova file, or a target (node-ova-vsphere-"
                    "ubuntu-2204): the OVA its last build left, as invoke's publish-<target>")
    sp.add_argument("--library", default="", help="the library's name (a target: default its "
                    "content_library)")
    sp.add_argument("--item", help="the item's name (default: the OVA's name without .ova)")
    sp.add_argument("--create", action="store_true",
                    help="create the library (local, on the datastore) when it is missing")
    sp.add_argument("--force", action="store_true", help="replace an item of the same name")
    sp.add_argument("--datastore", default="",
                    help="with --create: the library's datastore (default: vsphere.json's)")
    return sp


def _target(text: Path) -> Any:
    """The target ``text`` names (``[publish-]node-ova-<hypervisor>-<os>``), or None for an
    OVA file's path."""
    from imagebuilder.config.catalog import parse_target
    from imagebuilder.config.checkout import find_checkout
    name = str(text).removeprefix("publish-")
    if text.suffix == ".ova" or text.exists() or not name.startswith("node-ova-"):
        return None
    return parse_target(name, find_checkout().os_names())


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``publish``; 0, or the error's exit code (2 bad input, 1 failure,
    130/143/129 when a signal stopped it)."""
    from imagebuilder.config.checkout import find_checkout
    from imagebuilder.config.knobs import Knobs
    from imagebuilder.ova.progress import TqdmByteProgress
    from imagebuilder.running.stopping import exit_code_of, stop_on_signals
    from imagebuilder.vsphere.publish import publish_ova
    from imagebuilder.vsphere.session import VSphereSettings

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        with stop_on_signals():
            target = _target(args.ova)
            if target is not None:  # as invoke's publish-node-ova-<hypervisor>-<os>
                from imagebuilder.vsphere.library_deploy import publish_target
                published = publish_target(target, args.library, args.item or "",
                                           create=args.create, force=args.force,
                                           progress=TqdmByteProgress(), report=say)
            else:
                if not args.library:
                    raise InputError(f"{args.ova}: --library is required to publish an OVA")
                settings = VSphereSettings.from_checkout(find_checkout(), Knobs.from_env())
                published = publish_ova(settings, args.ova, args.library, args.item,
                                        create=args.create, force=args.force,
                                        datastore=args.datastore, progress=TqdmByteProgress(),
                                        report=say)
    except ImageBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("interrupted; the upload session was failed and no half item was left",
              file=sys.stderr)
        return exit_code_of(exc)
    print(f"{published.library.name}/{published.item.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``publish`` on its own: ``main(["x.ova", "--library", "L"])``."""
    parser = argparse.ArgumentParser(prog="python -m imagebuilder")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subparser(sub)
    return run(parser.parse_args(["publish", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
