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

from imagebuilder.config.packer_flags import split_packer_flags
from imagebuilder.config.varfiles import read_regular_file
from imagebuilder.errors import InputError

TRUTHY = ("1",)

#: One OpenSSH public key line: type, base64 key, optional comment. Quotes,
#: backslashes and control characters are refused: the key is typed into
#: kickstart files and a shell command of the install.
PUBLIC_KEY = re.compile(
    r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
    r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^'\"`\\\x00-\x1f\x7f]*)?$")
#: Flatcar's release channels, and the form of its release versions; both
#: reach the ISO URL and the typed boot command.
FLATCAR_CHANNELS = ("stable", "beta", "alpha", "lts")
FLATCAR_VERSION = re.compile(r"^(current|[0-9]{1,5}\.[0-9]{1,3}\.[0-9]{1,3})$")


def split_var_files(text: str, cwd: Path) -> list[Path]:
    """PACKER_VAR_FILES: paths separated by spaces, quoted as a shell would
    quote them when a path holds a space; made absolute against ``cwd``."""
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise InputError(f"PACKER_VAR_FILES: cannot split it ({exc}); it is a space-separated "
                         "list, quote a path holding spaces: PACKER_VAR_FILES='\"my vars.json\" "
                         "other.json'") from None
    return [Path(cwd, p).absolute() for p in parts]


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
        out = subprocess.run([ssh, "-V"], capture_output=True, text=True, timeout=10,
                             env=child_env())
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"OpenSSH_(\d+)", out.stderr + out.stdout)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Knobs:
    """What the environment asks of a build, as the upstream Makefile reads it.

    Secrets (``rhsm_pass``, ``vsphere_password``, ``windows_admin_password``) are kept
    here only to be handed to Packer through its environment or a 0600 file, never argv.
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
    packer_var_files_text: str = ""
    windows_admin_password: str | None = None

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
        except ValueError as exc:  # its text may hold a -var password=...: not shown
            raise InputError(f"PACKER_FLAGS: cannot split it like a shell would ({exc}); "
                             "check its quotes") from None
        var_files = split_var_files(env.get("PACKER_VAR_FILES", ""), cwd)
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
            packer_var_files_text=env.get("PACKER_VAR_FILES", ""),
            windows_admin_password=env.get("WINDOWS_ADMIN_PASSWORD") or None,
        )

    def derived_packer_flags(self, building: bool, color_given: bool = False) -> list[str]:
        """What the Makefile appends to ``PACKER_FLAGS``, in its order.

        Colour defaults to off (upstream: on) because Packer's output goes to
        a log file and a progress line, not straight to a terminal; a ``-color``
        already in ``PACKER_FLAGS`` (``color_given``) is left to decide, where the
        Makefile would override it. Knobs with problems (planning.rules.knob_problems) add nothing.
        """
        flags: list[str] = []
        if building and not color_given:
            flags.append(f"-color={self.packer_color or 'false'}")
        if self.foreground:
            flags.append("-var=headless=false")
        if self.on_error_ask:
            flags.append("-on-error=ask")
        if self.ssh_private_key_file:
            flags.append(f"-var=ssh_private_key_file={self.ssh_private_key_file}")
        if self.ssh_public_key_file:
            try:
                flags.append(f"-var=ssh_public_key={self.public_key()}")
            except InputError:
                pass  # reported by planning.rules.knob_problems
        if self.debug:
            flags.append("-debug")
        return flags

    def public_key(self) -> str:
        """The key of ``SSH_PUBLIC_KEY_FILE``, checked to be one OpenSSH public
        key: a private key never reaches argv, a log or the install files."""
        shown = f"environment: SSH_PUBLIC_KEY_FILE: {self.ssh_public_key_file}"
        data = read_regular_file(Path(self.ssh_public_key_file or ""), shown,
                                 "public key file", limit=64 * 1024)
        text = data.decode("utf-8", "replace")
        if "PRIVATE KEY" in text or text.lstrip().startswith("-----BEGIN"):
            raise InputError(f"{shown}: holds a private key; point it at the public half "
                             "(the .pub file next to it)")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) != 1 or not PUBLIC_KEY.match(lines[0]):
            what = f"{len(lines)} lines" if len(lines) > 1 else "no OpenSSH public key"
            raise InputError(f"{shown}: {what}; it must hold one public key line such as "
                             "'ssh-ed25519 AAAA... me@host' (without quotes or backslashes)")
        return lines[0]

    def packer_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a Packer process: secrets travel here, not in argv
        (PACKER_FLAGS' own ``-var`` secrets travel in a 0600 file: see child_env)."""
        env = child_env(base)
        env["PATH"] = tool_path(env)  # Packer's ansible provisioner looks there
        env.setdefault("FLATCAR_CHANNEL", self.flatcar_channel)
        env.setdefault("FLATCAR_VERSION", self.flatcar_version)
        if self.ansible_scp_extra_args is not None:
            env["ANSIBLE_SCP_EXTRA_ARGS"] = self.ansible_scp_extra_args
        return env


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: our environment) for a child process: PACKER_FLAGS without
    the ``-var`` flags of secrets, which reach Packer in a 0600 file; a child (Packer,
    its plugins, ansible, a custom post-processor, the simulator) never sees them."""
    env = dict(os.environ if base is None else base)
    raw = env.get("PACKER_FLAGS")
    if raw:
        try:
            env["PACKER_FLAGS"] = shlex.join(split_packer_flags(shlex.split(raw)).public_flags())
        except ValueError:  # cannot be split: the build refuses it; keep nothing of it
            del env["PACKER_FLAGS"]
    return env

