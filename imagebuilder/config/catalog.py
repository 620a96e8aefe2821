"""The target matrix: hypervisors, operating systems and the names that join them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from imagebuilder.errors import InputError


@dataclass(frozen=True)
class Hypervisor:
    """One way of building: which Packer builder runs and which var file it adds."""

    name: str
    builder: str
    extra_var_file: str | None
    summary: str
    base: bool = False
    vsphere: bool = False


HYPERVISORS: dict[str, Hypervisor] = {h.name: h for h in (
    Hypervisor("local", "vmware-iso", None,
               "VMware Workstation/Fusion from the ISO (Packer vmware-iso)"),
    Hypervisor("local-base", "vmware-iso-base", None,
               "base VM from the ISO, OS install only, kept as a .vmx to iterate on",
               base=True),
    Hypervisor("local-vmx", "vmware-vmx", "vmx.json",
               "node image from an existing .vmx (ova/vmx.json source_path)"),
    Hypervisor("vsphere", "vsphere-iso", "vsphere.json",
               "vCenter from the ISO (Packer vsphere-iso)", vsphere=True),
    Hypervisor("vsphere-base", "vsphere-iso-base", "vsphere.json",
               "base template on vCenter, OS install only, for fast clones",
               base=True, vsphere=True),
    Hypervisor("vsphere-clone", "vsphere-clone", "vsphere.json",
               "node image as a clone of a base template (Packer vsphere-clone)",
               vsphere=True),
)}

ACTIONS = ("build", "validate", "clean")
TARGET_PREFIX = "node-ova-"
#: Windows images are built from the ISO only, as upstream's working targets do.
WINDOWS_HYPERVISORS = ("local", "vsphere")


def is_windows_os(os_name: str) -> bool:
    """Whether ``os_name`` is a Windows Server OS (upstream's ``findstring windows``)."""
    return os_name.startswith("windows-")


def buildable(target: "Target") -> bool:
    """Whether the target exists in a working form (Windows: local and vsphere only)."""
    return target.hypervisor.name in WINDOWS_HYPERVISORS or not is_windows_os(target.os_name)


def windows_refusal(name: str, os_name: str) -> str:
    """The one line refusing a base, clone or vmx target of a Windows OS."""
    hints = " or ".join(f"build-{TARGET_PREFIX}{hv}-{os_name}" for hv in WINDOWS_HYPERVISORS)
    return (f"{name!r}: Windows images are built from the ISO only; use {hints}")


@dataclass(frozen=True)
class Target:
    """One cell of the matrix: a hypervisor and an OS."""

    hypervisor: Hypervisor
    os_name: str

    @property
    def name(self) -> str:
        """``node-ova-<hypervisor>-<os>``, the make target without its action."""
        return f"{TARGET_PREFIX}{self.hypervisor.name}-{self.os_name}"

    def task_name(self, action: str) -> str:
        """The invoke task (and make target) of ``action`` on this target."""
        return f"{action}-{self.name}"


def hypervisor(name: str) -> Hypervisor:
    """The hypervisor called ``name``; InputError naming the known ones otherwise."""
    try:
        return HYPERVISORS[name]
    except KeyError:
        raise InputError(f"unknown hypervisor {name!r}; choose one of: "
                         + ", ".join(HYPERVISORS)) from None


def parse_target(name: str, os_names: list[str]) -> Target:
    """Read ``[build-|validate-|clean-]node-ova-<hv>-<os>`` into a Target.

    Hypervisor names share prefixes (``local`` / ``local-base``), so the
    longest hypervisor whose remainder is a known OS wins.
    """
    bare = name
    for action in ACTIONS:
        if bare.startswith(action + "-"):
            bare = bare[len(action) + 1:]
            break
    if not bare.startswith(TARGET_PREFIX):
        raise InputError(f"{name!r} is not a node-ova target; "
                         f"expected {TARGET_PREFIX}<hypervisor>-<os>")
    rest = bare[len(TARGET_PREFIX):]
    for hv in sorted(HYPERVISORS.values(), key=lambda h: -len(h.name)):
        if rest.startswith(hv.name + "-") and rest[len(hv.name) + 1:] in os_names:
            os_name = rest[len(hv.name) + 1:]
            if is_windows_os(os_name) and hv.name not in WINDOWS_HYPERVISORS:
                raise InputError(windows_refusal(name, os_name))
            return Target(hv, os_name)
    known = [f"{TARGET_PREFIX}{hv}-{os_name}" for hv in HYPERVISORS for os_name in os_names]
    close = difflib.get_close_matches(bare, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(name[:-len(bare)] + c for c in close)}? " if close else ""
    raise InputError(f"{name!r}: unknown target; {hint}hypervisors are "
                     f"{', '.join(HYPERVISORS)} and OSes are {', '.join(os_names)}")


def all_targets(os_names: list[str], hypervisor_name: str | None = None) -> list[Target]:
    """Every target, or every OS of one hypervisor, in a stable order."""
    hvs = [hypervisor(hypervisor_name)] if hypervisor_name else list(HYPERVISORS.values())
    return [Target(hv, os_name) for hv in hvs for os_name in os_names
            if hv.name in WINDOWS_HYPERVISORS or not is_windows_os(os_name)]
