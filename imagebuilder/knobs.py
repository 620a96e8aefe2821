"""The environment knobs the upstream Makefile reads, read once into one object."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import InputError

TRUTHY = ("1",)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip() in TRUTHY


def tool_path(env: Mapping[str, str] | None = None) -> str:
    """PATH, then the bin directory of the Python running us: tools installed
    into a virtualenv (ansible-playbook) are found without activating it."""
    env = os.environ if env is None else env
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    here = os.path.dirname(sys.executable)
    return os.pathsep.join(parts if here in parts else parts + [here])


def openssh_major_version(ssh: str | None = None) -> int | None:
    """The local OpenSSH major version (``ssh -V``), or None when ssh is absent."""
    ssh = ssh or shutil.which("ssh")
    if not ssh:
        return None
    try:
        out = subprocess.run([ssh, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"OpenSSH_(\d+)", out.stderr + out.stdout)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Knobs:
    """What the environment asks of a build, as the upstream Makefile reads it.

    Secrets (``rhsm_pass``, ``vsphere_password``) are kept here only to be
    handed to Packer through its environment or a 0600 file, never argv.
    """

    packer_flags: list[str] = field(default_factory=list)
    packer_var_files: list[Path] = field(default_factory=list)
    foreground: bool = False
    on_error_ask: bool = False
    debug: bool = False
    packer_color: str | None = None
    ssh_private_key_file: str | None = None
    ssh_public_key_file: str | None = None
    ansible_scp_extra_args: str | None = None
    rhsm_user: str | None = None
    rhsm_pass: str | None = None
    flatcar_channel: str = "stable"
    flatcar_version: str = "current"
    ovftool: bool = False
    vsphere_password: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> "Knobs":
        """Read the knobs from ``env`` (default: the process environment).

        ``PACKER_VAR_FILES`` entries are made absolute against ``cwd`` as
        make's ``$(abspath ...)`` does. ``ANSIBLE_SCP_EXTRA_ARGS`` defaults
        to ``-O`` when the local OpenSSH is 9 or newer (its scp speaks SFTP).
        """
        env = os.environ if env is None else env
        cwd = cwd or Path.cwd()
        try:
            flags = shlex.split(env.get("PACKER_FLAGS", ""))
        except ValueError as exc:
            raise InputError(f"PACKER_FLAGS: cannot split {env['PACKER_FLAGS']!r}: {exc}")
        var_files = [Path(cwd, p).absolute() for p in env.get("PACKER_VAR_FILES", "").split()]
        scp_args = env.get("ANSIBLE_SCP_EXTRA_ARGS")
        if scp_args is None:
            major = openssh_major_version()
            scp_args = "-O" if major is not None and major >= 9 else None
        return cls(
            packer_flags=flags,
            packer_var_files=var_files,
            foreground=_flag(env, "FOREGROUND"),
            on_error_ask=_flag(env, "ON_ERROR_ASK"),
            debug=_flag(env, "DEBUG"),
            packer_color=env.get("PACKER_COLOR") or None,
            ssh_private_key_file=env.get("SSH_PRIVATE_KEY_FILE") or None,
            ssh_public_key_file=env.get("SSH_PUBLIC_KEY_FILE") or None,
            ansible_scp_extra_args=scp_args,
            rhsm_user=env.get("RHSM_USER") or None,
            rhsm_pass=env.get("RHSM_PASS") or None,
            flatcar_channel=env.get("FLATCAR_CHANNEL") or "stable",
            flatcar_version=env.get("FLATCAR_VERSION") or "current",
            ovftool=bool(env.get("IB_OVFTOOL")),
            vsphere_password=env.get("VSPHERE_PASSWORD") or None,
        )

    def derived_packer_flags(self, building: bool) -> list[str]:
        """``PACKER_FLAGS`` plus what the Makefile appends to it, in its order.

        Colour defaults to off (upstream: on) because Packer's output goes to
        a log file and a progress line, not straight to a terminal.
        """
        flags = list(self.packer_flags)
        if building:
            flags.append(f"-color={self.packer_color or 'false'}")
        if self.foreground:
            flags.append("-var=headless=false")
        if self.on_error_ask:
            flags.append("-on-error=ask")
        if self.ssh_private_key_file:
            flags.append(f"-var=ssh_private_key_file={self.ssh_private_key_file}")
        if self.ssh_public_key_file:
            flags.append(f"-var=ssh_public_key={self._public_key()}")
        if self.debug:
            flags.append("-debug")
        return flags

    def _public_key(self) -> str:
        path = Path(self.ssh_public_key_file or "")
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise InputError(f"SSH_PUBLIC_KEY_FILE={path}: cannot read it ({exc.strerror}); "
                             "point it at an OpenSSH public key file") from None

    def packer_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a Packer process: secrets travel here, not in argv."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = tool_path(env)  # Packer's ansible provisioner looks there
        env.setdefault("FLATCAR_CHANNEL", self.flatcar_channel)
        env.setdefault("FLATCAR_VERSION", self.flatcar_version)
        if self.ansible_scp_extra_args is not None:
            env["ANSIBLE_SCP_EXTRA_ARGS"] = self.ansible_scp_extra_args
        return env
