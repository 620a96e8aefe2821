"""The names builds give their VMs, templates and output directories.

One function per name, shared by the targets that make a thing and the ones
that consume it (a base template is built under the name clones look for).
"""

from __future__ import annotations

import re
from pathlib import Path

#: What a name keeps: upstream's names (``ubuntu-2204-kube-v1.33.1+vmware.1``) have
#: letters, digits and ``. _ + -``, which file names, URL paths and vSphere names all take
#: as they are. Anything else becomes ``-``: ``/``, ``\`` and ``%`` (vSphere stores them
#: escaped, ``%2f``, so a name with them is not found by the name it was given), spaces,
#: quotes and the like.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def file_safe(text: str) -> str:
    """``text`` with every character outside letters, digits and ``. _ + -`` as ``-``."""
    return _UNSAFE.sub("-", text)


def node_vm_name(build_name: str, kubernetes_semver: str) -> str:
    """The VM, template and artifact name of a node image: ``<os>-kube-<version>``."""
    return file_safe(f"{build_name}-kube-{kubernetes_semver}")


def base_vm_name(build_name: str) -> str:
    """The VM or template a base build leaves for clones and vmx builds to start from."""
    return file_safe(f"{build_name}-base")


def artifact_dir(output_root: Path, build_name: str, kubernetes_semver: str) -> Path:
    """``output/<build_name>-kube-<kubernetes version>/``."""
    return output_root / node_vm_name(build_name, kubernetes_semver)


def base_artifact_dir(output_root: Path, build_name: str) -> Path:
    """``output/<build_name>-base/``: where a local base build leaves its VM."""
    return output_root / base_vm_name(build_name)
