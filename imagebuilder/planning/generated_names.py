"""What each build generates for itself: its VM's name and output directory, paths,
times, its id and SSH password; and the checks of the values those names come from."""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

from imagebuilder import __version__
from imagebuilder.config import naming
from imagebuilder.config.catalog import Target
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.upstream import TEMPLATE_DEFAULTS
from imagebuilder.config.varfiles import MergedVars, VarLayer, is_true
from imagebuilder.planning import value_rules, windows
from imagebuilder.planning.inputs import shown
from imagebuilder.planning.rules import where_set

#: The name Packer's vSphere builders give the snapshot of create_snapshot.
PACKER_SNAPSHOT = "Created by Packer"


def output_names(checkout: Checkout, target: Target, merged: MergedVars,
                  resolved: dict[str, str]) -> tuple[str, Path, str]:
    """The VM's name, the output directory and the variable the name came from: ours,
    unless a var file sets upstream's. A relative directory is relative to the checkout,
    where Packer runs (as upstream's Makefile runs it in images/capi)."""
    hv = target.hypervisor
    build_name, semver = merged.get("build_name"), merged.get("kubernetes_semver")
    if hv.base:
        artifact = naming.base_artifact_dir(checkout.output_dir, build_name)
        vm_name = naming.base_vm_name(build_name)
    else:
        artifact = naming.artifact_dir(checkout.output_dir, build_name, semver)
        vm_name = naming.node_vm_name(build_name, semver)
    # Upstream's names for the VM and its output directory, when a var file sets them.
    name_var, dir_var = ("base_build_version", "base_output_dir") if hv.base else \
        ("build_version", "output_dir")
    if hv.name == "local-vmx" and resolved.get("image_name"):
        name_var = "image_name"
    source = name_var if resolved.get(name_var) else "build_name"
    vm_name = resolved.get(name_var) or vm_name
    if resolved.get(dir_var):
        artifact = checkout.root / resolved[dir_var]
    if merged.get("output_directory"):
        artifact = checkout.root / merged.get("output_directory")
    return vm_name, artifact, source


def value_problems(checkout: Checkout, target: Target, merged: MergedVars,
                    resolved: dict[str, str], action: str) -> list[str]:
    """Values that reach shell text, host names, paths (value_rules); for builds that
    make an OVA, the OVA step's own inputs, checked now rather than after the VM."""
    os_file = str(checkout.os_file(target.os_name).relative_to(checkout.root))
    problems = value_rules.name_problems(
        resolved, lambda key: where_set(merged)(key, os_file), windows.is_windows(target),
        merged.values)
    if action == "build" and not target.hypervisor.base:
        problems += value_rules.ova_input_problems(os.environ)
    return problems


def generated_values(checkout: Checkout, target: Target, knobs: Knobs, merged: MergedVars,
                      vm_name: str, artifact: Path, work_dir: Path,
                      now: float) -> dict[str, str]:
    """What each build generates for itself: names, paths, times, its id and SSH password."""
    hv, build_name = target.hypervisor, merged.get("build_name")
    generated = {
        "vm_name": vm_name,
        "output_directory": str(artifact),
        "manifest_output": str(artifact / "packer-manifest.json"),
        "http_directory": str(work_dir / "http"),
        "cd_directory": str(work_dir / "cidata"),
        "build_timestamp": str(int(now)),
        "build_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "ib_version": __version__,
        "ib_python": sys.executable,
        "ib_target": target.name,
        # In the VM's extraConfig (guestinfo.imagebuilder.build_id): a cleanup
        # destroys only the VM that carries its own build's id.
        "ib_build_id": secrets.token_hex(12),
        "ssh_password": secrets.token_urlsafe(24),
    }
    if hv.base:
        generated["base_snapshot_name"] = \
            PACKER_SNAPSHOT if is_true(merged.get("create_snapshot")) else ""
    if hv.name == "vsphere-clone":
        generated["template"] = naming.base_vm_name(build_name)
    if hv.name == "local-vmx":
        base = naming.base_vm_name(build_name)
        generated["source_path"] = str(
            naming.base_artifact_dir(checkout.output_dir, build_name) / f"{base}.vmx")
    if knobs.vsphere_password and hv.vsphere:
        generated["password"] = knobs.vsphere_password
    return generated


def overlay_generated(checkout: Checkout, knobs: Knobs, merged: MergedVars,
                       generated: dict[str, str],
                       user_layers: list[VarLayer]) -> dict[str, str]:
    """The generated values nobody set, put into ``merged`` where Packer will see them.

    Generated values fill in; they never override what a var file or flag sets (a
    template default such as ib_python's "python3" is not set by anyone). Packer reads
    the generated file before PACKER_VAR_FILES and -var flags: where one of those sets
    a key, even to "", that value is what Packer uses. Returns the values to write.
    """
    generated = {k: v for k, v in generated.items()
                 if not merged.get(k) or merged.origin.get(k) == TEMPLATE_DEFAULTS
                 or (k == "password" and knobs.vsphere_password)}
    later = {shown(checkout, layer.path) for layer in user_layers} | {"PACKER_FLAGS -var"}
    for key, value in generated.items():
        if merged.origin.get(key) not in later:
            merged.set(key, value, "generated")
    return generated


def vm_name_problems(merged: MergedVars, source: str) -> list[str]:
    """The VM's name (made from ``source``, unless a var file sets vm_name itself) must
    be one vCenter and a local build's output directory can take (value_rules)."""
    if merged.origin.get("vm_name") != "generated":
        source = "vm_name"
    return value_rules.vm_name_problems(merged.get("vm_name"), source,
                                        lambda key: where_set(merged)(key, "packer/node.json"))
