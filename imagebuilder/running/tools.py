"""``deps-ova``: what the OVA builds need on this machine, and how to get what is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.config.knobs import openssh_major_version, tool_path
from imagebuilder.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from imagebuilder.running.packer import INSTALL_HINT, find_packer

#: Packer first built in with everything the template uses (cd_files, vSphere export).
MIN_PACKER = (1, 6, 6)
#: From this version builders and provisioners come as plugins (``packer init``).
PLUGINS_FROM = (1, 7, 0)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass
class DepsReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(c.ok or not c.required for c in self.checks) else EXIT_BAD_INPUT

    def text(self) -> str:
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
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def check_packer(checkout: Checkout, init: bool = True) -> list[Check]:
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
        checks.append(Check("packer builders", True,
                            "built in (vmware-iso, vmware-vmx, vsphere-iso, vsphere-clone, ansible)"))
    elif init:
        config = checkout.packer_dir / "config.pkr.hcl"
        out = _run([packer, "init", str(config)])
        detail = "installed by packer init" if out.returncode == 0 else \
            (f"`packer init {config}` failed: {(out.stderr or out.stdout).strip()[-300:]}; "
             "it downloads the vsphere, vmware and ansible plugins: check network access, "
             "or install them with `packer plugins install`")
        checks.append(Check("packer plugins", out.returncode == 0, detail))
    return checks


def check_ansible() -> Check:
    path = shutil.which("ansible-playbook", path=tool_path())
    if not path:
        return Check("ansible", False, "ansible-playbook not found: pip install ansible-core")
    version = _version(_run([path, "--version"]).stdout)
    return Check("ansible", True, f"{path} {'.'.join(map(str, version or ()))}")


def check() -> DepsReport:
    """Check every tool the OVA builds use; optional ones never fail the report."""
    checkout = find_checkout()
    report = DepsReport(check_packer(checkout))
    report.checks.append(check_ansible())
    iso = next((t for t in ("xorriso", "mkisofs", "genisoimage") if shutil.which(t)), None)
    report.checks.append(Check("iso tool", bool(iso), iso and shutil.which(iso) or
                               "xorriso not found (Packer's cd_files needs it): "
                               "apt-get install xorriso"))
    ssh = openssh_major_version()
    report.checks.append(Check(
        "openssh", ssh is not None,
        f"OpenSSH {ssh}" + (" (ANSIBLE_SCP_EXTRA_ARGS=-O by default)" if ssh and ssh >= 9 else "")
        if ssh else "ssh not found: apt-get install openssh-client", required=False))
    from imagebuilder.ova.convert import MISSING_CONVERTER, find_converter
    converter = find_converter()
    report.checks.append(Check("vmdk converter", converter is not None,
                               str(converter.path) if converter else MISSING_CONVERTER))
    ovftool = shutil.which("ovftool")
    report.checks.append(Check("ovftool", bool(ovftool), ovftool or
                               "not found; only needed with IB_OVFTOOL=1 (VMware OVF Tool)",
                               required=False))
    for tool, why in (("vmrun", "local builds and image-ssh (VMware Workstation/Fusion)"),):
        path = shutil.which(tool)
        report.checks.append(Check(tool, bool(path), path or f"not found; needed for {why}",
                                   required=False))
    return report
