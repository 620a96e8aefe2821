"""The helper commands, in one table: invoke's tasks and ``python -m imagebuilder`` alike.

Each entry names its flags once; tasks.py makes an invoke task of it and cli/main.py an
argparse command, with the same names, defaults, help and exit codes (the handler's
return value; 2 for bad input, 130/143/129 when a signal stopped it). A value a task
takes positionally (``invoke deploy-ova X.ova vm1``) is positional for ``python -m``
too, and both also take it as a flag (``--ova X.ova``). Adding a command is one entry
here and its handler in cli/handlers.py.

Kept free of heavy imports: ``invoke --list`` reads this table (the handlers import
pyVmomi and the planner when they run).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from imagebuilder.config.options import BY_NAME

#: A parameter's default when it must be given (positionally, or as its flag).
REQUIRED = object()

DEFAULT_TARGET = "build-node-ova-vsphere-clone-ubuntu-2204"


@dataclass(frozen=True)
class Param:
    """One argument of a command."""

    #: The flag's name (``--build-dir``); the handler's keyword has underscores.
    name: str
    help: str
    #: REQUIRED (positional, or the flag), False (a switch), None or a string (a value).
    default: object = REQUIRED
    #: ``python -m`` also takes this value positionally, several joined by commas
    #: (``vcsim-build T1 T2``); invoke takes it as the flag.
    positional_list: bool = False

    @property
    def attr(self) -> str:
        """The handler's keyword: the name with underscores."""
        return self.name.replace("-", "_")

    @property
    def required(self) -> bool:
        """Whether it must be given."""
        return self.default is REQUIRED

    @property
    def is_switch(self) -> bool:
        """Whether it takes no value."""
        return self.default is False


@dataclass(frozen=True)
class Command:
    """One helper command: its name (the same in invoke and ``python -m``), help and flags."""

    name: str
    help: str
    params: tuple[Param, ...] = ()
    #: Changes nothing (help, listing, checks): allowed in a dry-run command line.
    harmless: bool = False
    #: Other names ``python -m`` accepts (its older spellings).
    aliases: tuple[str, ...] = ()

    @property
    def handler(self) -> Callable[..., int]:
        """The function that runs it (imported when it runs): keywords of ``params``,
        returns the exit code."""
        return getattr(import_module("imagebuilder.cli.handlers"), self.name.replace("-", "_"))


_VM = Param("vm", "the VM's name")
_USER = Param("user", "the user to log in as (default capv)", "capv")

COMMANDS: tuple[Command, ...] = (
    Command("clean", "Remove every OVA build's output, work files and logs, and Packer's "
            "ISO cache (upstream's make clean)."),
    Command("clean-ova", "Remove every OVA build's output, work files and logs (upstream's "
            "make clean-ova)."),
    Command("ova-assemble", "Make the OVA of a Packer build directory (what the build's ova "
            "post-processor runs).", (
                Param("build-dir", "e.g. output/ubuntu-2204-kube-v1.37.1"),
                Param("manifest-digest", "sha256 (default), sha1 for old targets, sha512",
                      "sha256"))),
    Command("ova-verify", "Check a finished OVA: member order, manifest digests, descriptor, "
            "VMDKs, signature, .sha256.", (
                Param("ova", "the .ova file"),
                Param("ca", "PEM CA file: the OVA must be signed by a chain leading to it", None),
                Param("provenance", "check <name>.provenance.json names this OVA", False)),
            harmless=True),
    Command("deploy-ova", "Import an OVA into vCenter (placement from vsphere.json), optionally "
            "snapshot it and mark it as a template.", (
                Param("ova", "the .ova file (with --from-library: LIB/ITEM)"),
                Param("name", "the VM's name"),
                Param("folder", "VM folder (default: vsphere.json's)", None),
                Param("datastore", "default: vsphere.json's", None),
                Param("network", "default: vsphere.json's", None),
                Param("template", "mark the VM as a template afterwards", False),
                Param("snapshot", "take a snapshot of this name afterwards", None),
                Param("from-library", "the OVA argument is LIB/ITEM, a Content Library item",
                      False))),
    Command("render", "Write the install files and variables a build would use, without "
            "building (secrets redacted).", (
                Param("target", "e.g. node-ova-vsphere-ubuntu-2404"),
                Param("output", "directory to write into")), harmless=True),
    Command("deps-ova", "Check Packer and its plugins, ansible, ovftool; say what is missing.",
            aliases=("deps",)),
    Command("vcsim-build", "Run builds against the embedded vCenter simulator (starts and "
            "stops it), verify their OVAs and deploy them back as templates.", (
                Param("target", f"comma-separated targets (default: {DEFAULT_TARGET})",
                      DEFAULT_TARGET, positional_list=True),
                Param("jobs", BY_NAME["jobs"].help, None))),
    Command("vcsim", "Run the vCenter simulator in the foreground and write a vsphere.json "
            "for it.", (Param("vsphere-json", "where to write it (default "
                              "output/vcsim/vsphere.json)", "output/vcsim/vsphere.json"),)),
    Command("cloudinit-keys", "Generate cloudinit/id_rsa.capi (0600, git-ignored) if it does "
            "not exist."),
    Command("image-cloudinit", "Give a vCenter VM cloud-init data: snapshot 'new', guestinfo "
            "keys, snapshot 'cloudinit' (other snapshots are kept).", (
                _VM,
                Param("user-data", "default cloudinit/user-data (with the generated key)", None),
                Param("meta-data", "default cloudinit/meta-data", None))),
    Command("image-ssh", "ssh into a local build's VM (IP from vmrun).", (
        Param("build-dir", "e.g. output/ubuntu-2204-kube-v1.37.1"), _USER)),
    Command("image-ssh-vm", "ssh into a vCenter VM (IP from its guest info).", (_VM, _USER)),
    Command("help", "List the targets with one-line descriptions (like make help).",
            harmless=True),
)
BY_COMMAND = {command.name: command for command in COMMANDS}
