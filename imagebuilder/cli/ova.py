r"""``python -m imagebuilder ova ...``: assemble and verify OVAs from the command line.

    python -m imagebuilder ova assemble --from-packer output/ubuntu-2204-kube-v1.37.1
    python -m imagebuilder ova assemble --vmdk disk.vmdk --os ubuntu-2204 \
        --kubernetes-version v1.37.1 --output /tmp/out [--vmx 19] [--firmware efi]
    python -m imagebuilder ova verify output/ubuntu-2204-kube-v1.37.1/ubuntu-2204-kube-v1.37.1.ova
    python -m imagebuilder ova verify x.ova --ca ca.pem --provenance

The environment: ``IB_OVFTOOL`` (make the OVA with ovftool), ``IB_OVFTOOL_ARGS``
(its extra arguments, split like a shell would), ``OVF_CUSTOM_PROPERTIES``
(a JSON file of extra ProductSection properties), ``SOURCE_DATE_EPOCH``
(reproducible OVAs), ``IB_SIGNING_KEY``/``IB_SIGNING_CERT``/
``IB_SIGNING_KEY_PASSPHRASE`` (signed OVAs; never on the command line).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from imagebuilder.errors import ImageBuilderError, InputError
from imagebuilder.ova.assemble import (
    AssembleOptions,
    assemble,
    assemble_from_packer,
    plan_from_vmdks,
)
from imagebuilder.ova.check import check_ova
from imagebuilder.ova.hashing import ALGORITHMS
from imagebuilder.ova.progress import TqdmByteProgress
from imagebuilder.running.stopping import exit_code_of, signal_of, stop_on_signals


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hardware version number")
    return int(text)


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ova`` with its ``assemble`` and ``verify`` commands."""
    ova = subparsers.add_parser("ova", help="assemble or verify an OVA",
                                description="Assemble node image OVAs and verify them.")
    sub = ova.add_subparsers(dest="ova_command", required=True)
    sp = sub.add_parser("assemble", help="make the OVA of a build (or of VMDK files)",
                        description="Make <build>-kube-<version>.{ovf,mf,ova,ova.sha256}. "
                        "Either from a Packer build directory (--from-packer), or from VMDK "
                        "files with the rest taken from the OS catalog and common config.")
    source = sp.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-packer", metavar="BUILD_DIR", type=Path,
                        help="the build's output directory (holds packer-manifest.json)")
    source.add_argument("--vmdk", metavar="PATH", type=Path, action="append",
                        help="a disk to pack (repeat for more; the first one boots)")
    sp.add_argument("--os", help="with --vmdk: the OS catalog entry (ova/<os>.json)")
    sp.add_argument("--kubernetes-version", metavar="VERSION",
                    help="with --vmdk: e.g. v1.37.1")
    sp.add_argument("--output", metavar="DIR", type=Path,
                    help="with --vmdk: directory for the files "
                    "(default: output/<build_name>-kube-<version>/)")
    sp.add_argument("--vmx", type=_positive, metavar="N",
                    help="with --vmdk: virtual hardware version (default: the OS catalog's)")
    sp.add_argument("--firmware", choices=("efi", "bios"),
                    help="with --vmdk: firmware (default: the OS catalog's)")
    sp.add_argument("--manifest-digest", choices=sorted(ALGORITHMS), default="sha256",
                    help="digest of the .mf lines (sha1 for old vSphere/Workstation)")
    sp.add_argument("--package-inventory", metavar="FILE", type=Path,
                    help="with --vmdk: the image's package-inventory.json, for its SBOM")
    sp = sub.add_parser("verify", help="check a finished OVA",
                        description="Check member order, manifest digests, descriptor "
                        "references and sizes, VMDK format and capacity, the signature of a "
                        "signed OVA, and <ova>.sha256.")
    sp.add_argument("ovas", nargs="+", type=Path, metavar="OVA")
    sp.add_argument("--ca", metavar="FILE", type=Path,
                    help="PEM CA certificates: the OVA must be signed by a chain leading to "
                    "one of them, every certificate valid now")
    sp.add_argument("--provenance", nargs="?", const=True, default=False, metavar="FILE",
                    help="check <name>.provenance.json (or FILE) names this OVA and its "
                    "sha256, and its .sig")
    return ova


def _assemble(args: argparse.Namespace) -> int:
    options = AssembleOptions.from_env(manifest_algorithm=args.manifest_digest)
    progress = TqdmByteProgress()
    if args.from_packer is not None:
        extra = [f for f in ("os", "kubernetes_version", "output", "vmx", "firmware",
                             "package_inventory") if getattr(args, f) is not None]
        if extra:
            raise InputError("--from-packer takes everything from the build; drop "
                             + ", ".join("--" + f.replace("_", "-") for f in extra))
        result = assemble_from_packer(args.from_packer, options, progress, _say)
        if result is not None:
            print(result.summary())
        return 0
    missing = [f for f in ("os", "kubernetes_version") if getattr(args, f) is None]
    if missing:
        raise InputError("--vmdk needs " + " and ".join("--" + f.replace("_", "-")
                                                        for f in missing))
    plan = plan_from_vmdks(args.vmdk, args.os, args.kubernetes_version, args.output,
                           args.vmx, args.firmware, options, inventory=args.package_inventory)
    print(assemble(plan, progress, _say).summary())
    return 0


def _verify(args: argparse.Namespace) -> int:
    progress = TqdmByteProgress()
    provenance = args.provenance if args.provenance is True else (
        Path(args.provenance) if args.provenance else False)
    if provenance not in (True, False) and len(args.ovas) > 1:
        raise InputError("--provenance FILE names the provenance of one OVA; give one OVA, "
                         "or --provenance alone to check each OVA's own")
    for path in args.ovas:
        print(check_ova(path, progress, ca_file=args.ca, provenance=provenance))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``ova`` command; return the exit code (2 bad input, 1 failure,
    130/143/129 when Ctrl-C, SIGTERM or SIGHUP stopped it: partial files and the
    work directory are removed first)."""
    try:
        with stop_on_signals():
            if args.ova_command == "assemble":
                return _assemble(args)
            return _verify(args)
    except ImageBuilderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        name = signal.Signals(signal_of(exc)).name
        print(f"interrupted ({name}); no partial OVA was left behind", file=sys.stderr)
        return exit_code_of(exc)
