"""The tools builds run, in one table: ``deps-ova`` reports on all of them, a run
checks those its builds need (``missing_tools``) before anything starts."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.config.knobs import openssh_major_version, tool_path
from imagebuilder.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from imagebuilder.processes import run_child
from imagebuilder.running.packer import INSTALL_HINT, find_packer

if TYPE_CHECKING:
    from imagebuilder.planning.plan import BuildPlan

#: Packer first built in with everything the template uses (cd_files, vSphere export).
MIN_PACKER = (1, 6, 6)
#: From this version builders and provisioners come as plugins (``packer init``).
PLUGINS_FROM = (1, 7, 0)


@dataclass(frozen=True)
class Tool:
    """A program builds run: where to find it, what needs it, how to install it."""

    name: str
    #: Any of these executables will do (found on PATH, or on tool_path() when
    #: ``venv`` is set: the environment imagebuilder runs from).
    commands: tuple[str, ...]
    needed_by: str
    install: str
    #: Whether ``deps-ova`` fails without it (an optional tool serves some uses only).
    required: bool = True
    venv: bool = False

    def find(self) -> str | None:
        """The path of the first of ``commands`` found, or None."""
        path = tool_path() if self.venv else None
        return next((found for c in self.commands if (found := shutil.which(c, path=path))),
                    None)

    def missing(self) -> str:
        """One line: it is missing, what needs it, how to install it."""
        return f"{self.commands[0]}: not found; needed by {self.needed_by}: {self.install}"


ANSIBLE = Tool("ansible", ("ansible-playbook",), "Packer's ansible provisioner (node builds)",
               "pip install ansible-core (into the environment you run from)", venv=True)
ISO = Tool("iso tool", ("xorriso", "mkisofs", "genisoimage", "hdiutil", "oscdimg"),
           "Packer's cd_files (the install-files CD of every build)", "apt-get install xorriso")
OVFTOOL = Tool("ovftool", ("ovftool",), "OVA assembly with IB_OVFTOOL set",
               "install VMware OVF Tool and put it on PATH, or unset IB_OVFTOOL to assemble "
               "the OVA ourselves", required=False)
VMRUN = Tool("vmrun", ("vmrun",), "local builds and image-ssh (VMware Workstation/Fusion)",
             "it comes with VMware Workstation or Fusion", required=False)
#: Every tool with a plain lookup, in deps-ova's order (Packer, the VMDK
#: converter and OpenSSH have checks of their own: versions, plugins).
TOOLS = (ANSIBLE, ISO, OVFTOOL, VMRUN)


def _converter_missing() -> str | None:
    from imagebuilder.ova.convert import MISSING_CONVERTER, find_converter
    return None if find_converter() is not None else MISSING_CONVERTER


def missing_tools(plans: list[BuildPlan]) -> list[str]:
    """What the given builds need that this machine lacks, one line each with the fix."""
    missing = []
    try:
        find_packer()
    except InputError as exc:
        missing.append(exc.message)
    building = [p for p in plans if p.action == "build"]
    needed = [ANSIBLE] if any(not p.target.hypervisor.base for p in plans) else []
    needed += [ISO] if building else []
    missing += [tool.missing() for tool in needed if not tool.find()]
    # vmware builders leave monolithicSparse disks; the OVA needs streamOptimized ones
    # (vSphere exports are streamOptimized already, and ovftool converts by itself).
    if any(p.exports and not p.target.hypervisor.vsphere and not p.knobs.ovftool
           for p in building):
        converter = _converter_missing()
        missing += [converter] if converter else []
    if any(p.knobs.ovftool and not p.target.hypervisor.base for p in building) \
            and not OVFTOOL.find():
        missing.append(OVFTOOL.missing())
    return missing


@dataclass
class Check:
    """One line of ``deps-ova``: a tool, whether it is there, and the detail."""

    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass
class DepsReport:
    """What ``deps-ova`` found."""

    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every required tool is there, 2 otherwise."""
        return EXIT_OK if all(c.ok or not c.required for c in self.checks) else EXIT_BAD_INPUT

    def text(self) -> str:
        """A table: tool, ok / MISSING / optional, the path or how to install it."""
        width = max(len(c.name) for c in self.checks)
        lines = []
        for c in self.checks:
            mark = "ok" if c.ok else ("MISSING" if c.required else "optional")
            lines.append(f"{c.name.ljust(width)}  {mark.ljust(8)}  {c.detail}")
        return "\n".join(lines)


def _version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else None


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``subprocess.run`` of a tool that dies with us (``packer init`` included): a
    signal that stops this command stops it too (start_child)."""
    return run_child(argv, timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_packer(checkout: Checkout, init: bool = True) -> list[Check]:
    """Packer's version and (from 1.7) its plugins, installed with ``packer init``."""
    try:
        packer = find_packer()
    except InputError as exc:
        return [Check("packer", False, exc.message)]
    version = _version(_run([packer, "version"]).stdout)
    shown = ".".join(map(str, version)) if version else "unknown"
    if not version or version < MIN_PACKER:
        return [Check("packer", False, f"{packer} is {shown}; need "
                      f"{'.'.join(map(str, MIN_PACKER))} or newer: {INSTALL_HINT}")]
    checks = [Check("packer", True, f"{packer} {shown}")]
    if version < PLUGINS_FROM:
        checks.append(Check("packer builders", True, "built in (vmware-iso, vmware-vmx, "
                            "vsphere-iso, vsphere-clone, ansible)"))
    elif init:
        config = checkout.packer_dir / "config.pkr.hcl"
        out = _run([packer, "init", str(config)])
        detail = "installed by packer init" if out.returncode == 0 else \
            (f"`packer init {config}` failed: {(out.stderr or out.stdout).strip()[-300:]}; "
             "it downloads the vsphere, vmware and ansible plugins: check network access, "
             "or install them with `packer plugins install`")
        checks.append(Check("packer plugins", out.returncode == 0, detail))
    return checks


def check_tool(tool: Tool) -> Check:
    """A tool of TOOLS: its path (and version, for ansible), or how to install it."""
    path = tool.find()
    if not path:
        return Check(tool.name, False, tool.missing(), tool.required)
    if tool is ANSIBLE:
        version = _version(_run([path, "--version"]).stdout)
        return Check(tool.name, True, f"{path} {'.'.join(map(str, version or ()))}")
    return Check(tool.name, True, path, tool.required)


def check() -> DepsReport:
    """Check every tool the OVA builds use; optional ones never fail the report."""
    checkout = find_checkout()
    report = DepsReport(check_packer(checkout))
    report.checks += [check_tool(tool) for tool in TOOLS]
    ssh = openssh_major_version()
    report.checks.append(Check(
        "openssh", ssh is not None,
        f"OpenSSH {ssh}" + (" (ANSIBLE_SCP_EXTRA_ARGS=-O by default)" if ssh and ssh >= 9 else "")
        if ssh else "ssh not found: apt-get install openssh-client", required=False))
    from imagebuilder.ova.convert import find_converter
    converter = find_converter()
    report.checks.append(Check("vmdk converter", converter is not None,
                               str(converter.path) if converter else str(_converter_missing())))
    return report
