"""What a base image is made from, as one digest (its up-to-date check)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: Settings besides the OS file that shape what a base install produces.
HARDWARE_KEYS = ("cpu", "cpu_cores", "memory", "disk_size", "disk_controller_type",
                 "disk_thin_provisioned", "network_card", "firmware", "vmx_version",
                 "ssh_username", "boot_wait", "create_snapshot")

def inputs_hash(checkout_root: Path, values: dict[str, str], os_keys: list[str],
                builder: str) -> str:
    """A digest of what a base image is made from: the OS file's settings, the
    hardware settings, every install template and the base builder itself."""
    digest = hashlib.sha256()
    settings = {k: values.get(k, "") for k in sorted(set(os_keys) | set(HARDWARE_KEYS))}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    install = checkout_root / "packer" / "install"
    for path in sorted(p for p in install.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(install)).encode() + b"\0" + path.read_bytes())
    template = json.loads((checkout_root / "packer" / "node.json").read_text())
    block = [b for b in template["builders"] if b.get("name") == builder]
    digest.update(json.dumps(block, sort_keys=True).encode())
    return digest.hexdigest()
