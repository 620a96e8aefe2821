"""Testing a built image: the example cloud-init data, its key pair, ssh into the VM."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from imagebuilder.config.checkout import Checkout
from imagebuilder.errors import BuildError, InputError
from imagebuilder.processes import run_child

if TYPE_CHECKING:
    from imagebuilder.config.knobs import Knobs

KEY_NAME = "id_rsa.capi"
DEFAULT_USER = "capv"


def ensure_keys(checkout: Checkout) -> Path:
    """The example key pair ``cloudinit/id_rsa.capi(.pub)``, generated on first use
    (mode 0600, ignored by git: no private key is ever committed)."""
    key = checkout.root / "cloudinit" / KEY_NAME
    if key.is_file() and key.with_suffix(".capi.pub").is_file():
        return key
    keygen = shutil.which("ssh-keygen")
    if not keygen:
        raise InputError("ssh-keygen: not found; install OpenSSH (apt-get install openssh-client)")
    key.parent.mkdir(parents=True, exist_ok=True)
    made = run_child([keygen, "-q", "-t", "rsa", "-b", "4096", "-N", "", "-C",
                      "capv@imagebuilder-test", "-f", str(key)], timeout=120)
    if made.returncode != 0:
        raise BuildError(f"ssh-keygen could not make {key} (exit code {made.returncode})")
    os.chmod(key, 0o600)
    return key


def user_data(path: Path, public_key_file: Path | None) -> bytes:
    """The user-data to inject: the example file gets the generated public key;
    any other file is used as it is."""
    text = path.read_bytes()
    if b"{{ ssh_public_key }}" not in text:
        return text
    if public_key_file is None:
        raise InputError(f"{path}: needs a public key; run `invoke cloudinit-keys` first")
    import jinja2  # only rendering needs it, not listing the tasks
    template = jinja2.Template(text.decode(), undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True)
    return template.render(ssh_public_key=public_key_file.read_text().strip()).encode()


def ssh_argv(address: str, user: str, key: Path) -> list[str]:
    """The ssh command into a test VM (its host key is new on every boot)."""
    return ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            f"{user}@{address}"]


def find_vmx(build_dir: Path) -> Path:
    """The .vmx of a local build's output directory; InputError naming the directory."""
    vmxs = sorted(build_dir.glob("*.vmx"))
    if not vmxs:
        raise InputError(f"{build_dir}: no .vmx here; name the output directory of a local "
                         "build (output/<build_name>-kube-<version>)")
    return vmxs[0]


def local_vm_address(vmx: Path, timeout: float = 300) -> str:
    """The guest's IP address as VMware Workstation/Fusion sees it (``vmrun``)."""
    vmrun = shutil.which("vmrun")
    if not vmrun:
        raise InputError("vmrun: not found; it comes with VMware Workstation or Fusion "
                         "(on macOS: /Applications/VMware Fusion.app/Contents/Library)")
    try:
        out = run_child([vmrun, "getGuestIPAddress", str(vmx), "-wait"], timeout=timeout,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{vmx}: no guest IP address within {timeout:.0f}s; is the VM "
                         "running with VMware Tools?") from None
    address = out.stdout.strip()
    if out.returncode != 0 or not address:
        raise BuildError(f"vmrun getGuestIPAddress {vmx} failed: "
                         f"{(out.stdout + out.stderr).strip()}")
    return address


def cloudinit_vm(checkout: Checkout, knobs: Knobs, vm_name: str,
                 user_data_file: Path | None = None, meta_data_file: Path | None = None,
                 report: Callable[[str], None] = print,
                 on_task: Callable[[str, int], None] | None = None) -> None:
    """``image-cloudinit``: inject cloud-init data into a VM in vCenter (see vsphere.cloudinit)."""
    from imagebuilder.vsphere import cloudinit
    from imagebuilder.vsphere.driver import datacenter_session
    from imagebuilder.vsphere.session import VSphereSettings

    user_file = user_data_file or checkout.root / "cloudinit" / "user-data"
    meta_file = meta_data_file or checkout.root / "cloudinit" / "meta-data"
    public = None
    if user_data_file is None:
        public = ensure_keys(checkout).with_suffix(".capi.pub")
    for path in (user_file, meta_file):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    data = user_data(user_file, public)
    settings = VSphereSettings.from_checkout(checkout, knobs)
    with datacenter_session(settings, on_task) as (driver, dc):
        cloudinit.inject(driver, driver.vm(dc, vm_name), data, meta_file.read_bytes(), report)


def vm_ssh_argv(checkout: Checkout, knobs: Knobs, vm_name: str,
                user: str = DEFAULT_USER) -> list[str]:
    """``image-ssh-vm``: the ssh command into a VM in vCenter, by its guest IP."""
    from imagebuilder.vsphere.driver import datacenter_session
    from imagebuilder.vsphere.session import VSphereSettings

    key = ensure_keys(checkout)
    settings = VSphereSettings.from_checkout(checkout, knobs)
    with datacenter_session(settings) as (driver, dc):
        address = driver.guest_address(driver.vm(dc, vm_name))
    return ssh_argv(address, user, key)


def local_ssh_argv(checkout: Checkout, build_dir: Path, user: str = DEFAULT_USER) -> list[str]:
    """``image-ssh``: the ssh command into a local build's VM, by vmrun's guest IP."""
    key = ensure_keys(checkout)
    return ssh_argv(local_vm_address(find_vmx(build_dir)), user, key)
