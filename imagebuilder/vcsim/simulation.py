"""Builds against the embedded vCenter simulator, for trying the vSphere targets anywhere.

The simulator (``imagebuilder.vcsim``) answers the vSphere API like a
vCenter, with an inventory of its own and no guests: Packer runs with
``communicator: none``. It exports like a vCenter (ExportVm, CreateDescriptor;
the disks are generated, mostly empty streamOptimized VMDKs of the VM's disk
sizes), so vSphere builds end with an OVA, which ``build_against_simulator``
verifies and deploys back into the simulator as a template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import IO

from imagebuilder import api
from imagebuilder.config.catalog import Target
from imagebuilder.config.checkout import Checkout, find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.varfiles import read_var_file
from imagebuilder.files import write_private_json
from imagebuilder.running.progress import Progress
from imagebuilder.running.stopping import stop_on_signals
from imagebuilder.vcsim import Simulator, vsphere_config
from imagebuilder.vsphere.settings import VSphereSettings

#: What a build against the simulator must change: no guest to talk to.
SIMULATOR_OVERRIDES = {"communicator": "none"}

#: What the simulator cannot type (it has no console): the typed boot command of every
#: OS. The Linux installers' is prefix + boot_media_path + suffix (RHEL, Rocky, Alma
#: and Photon type the kickstart URL as boot_media_path), Windows EFI's boot_command.
BLANKED = {"boot_command_prefix": "", "boot_media_path": "", "boot_command_suffix": "",
           "boot_command": ""}

#: Suffix of the template an OVA of the run is deployed back as.
DEPLOYED_SUFFIX = "-ova"


def simulator_var_files(sim: Simulator, directory: Path, template: str = "",
                        **vsphere: str) -> list[Path]:
    """Write the var files that point builds at ``sim``: its vsphere.json
    (0600: it holds the password) and the simulator overrides.

    An empty ``template`` makes clone builds use the base template of their
    OS (built first when missing). The simulator has no console to type a
    boot command into and this machine may not reach the OS mirrors, so base
    builds boot a small stand-in ISO with no boot command (and no wait for one):
    BLANKED empties every part of the typed command, for every OS.

    Written into the work root (``work_dir``), the files are imagebuilder's own:
    their settings, the same for every target, warn about nothing (a clone has
    no boot command, a Windows target no ``iso_url``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    settings = {"template": template, "convert_to_template": "true",
                "create_snapshot": "true", "linked_clone": "true" if not template else "false"}
    settings.update(vsphere)
    config = {k: v for k, v in vsphere_config(sim, **settings).items() if v != ""}
    vsphere_file = directory / "vsphere.json"
    write_private_json(vsphere_file, config)  # no empty fields: they would hide defaults
    iso = directory / "stand-in.iso"
    if not iso.exists():
        iso.write_bytes(b"imagebuilder: stand-in install medium for the vCenter simulator\n")
    overrides = directory / "simulator.json"
    write_private_json(overrides, dict(
        SIMULATOR_OVERRIDES, iso_url=iso.as_uri(), iso_checksum_type="sha256",
        iso_checksum=hashlib.sha256(iso.read_bytes()).hexdigest(), boot_wait="1s",
        **BLANKED))
    return [vsphere_file, overrides]


def work_dir(checkout: Checkout, role: str) -> Path:
    """This process's own directory for the simulator's var files, in the work root
    (two runs at once each have theirs): ``output/.work/vcsim/<role>-<pid>``."""
    return checkout.work_root / "vcsim" / f"{role}-{os.getpid()}"


def start_simulator() -> Simulator:
    """Start a simulator with a password of its own (long enough to redact)."""
    return Simulator(password=f"vcsim-{secrets.token_urlsafe(12)}", power_off_after=1.0).start()


def inventory(sim: Simulator) -> list[tuple[str, bool]]:
    """(name, is template) of every VM in the simulator, sorted by name."""
    from pyVmomi import vim

    from imagebuilder.vsphere.driver import Driver
    from imagebuilder.vsphere.session import Session

    with Session(VSphereSettings.from_vars(vsphere_config(sim), env={})) as si:
        found = Driver(si).inventory(vim.VirtualMachine, ["name", "config.template"])
    return sorted((str(props["name"]), bool(props.get("config.template")))
                  for props in found.values())


#: The Content Library vcsim-build publishes each OVA to (and deploys it back from).
LIBRARY = "imagebuilder-vcsim"


def deploy_outputs(report: api.RunReport, vsphere_json: Path,
                   out: IO[str]) -> list[tuple[Path, str]]:
    """Close the loop for each build of ``report`` that left an OVA: verify it
    (``ova-verify``) and deploy it into the simulator as a template (``deploy-ova``)
    named after it with DEPLOYED_SUFFIX. Returns (OVA, template name) pairs."""
    from imagebuilder.ova import verify_ova
    from imagebuilder.vsphere.deploy import deploy_ova

    settings = VSphereSettings.from_vars(read_var_file(vsphere_json), env={})
    done = []
    for result in report.results:
        if not result.ok:
            continue
        for ova in sorted(Path(result.artifact_dir).glob("*.ova")):
            verify_ova(ova)
            print(f"\nOVA: {ova} (verified; sha256 in {ova.name}.sha256)", file=out)
            name = ova.stem + DEPLOYED_SUFFIX
            deploy_ova(settings, ova, name, template=True,
                       report=lambda text: print(f"  deploy-ova: {text}", file=out))
            print(f"deployed into the simulator as template {name}", file=out)
            done.append((ova, name))
            from imagebuilder.vsphere.library_deploy import library_round_trip
            name = library_round_trip(settings, ova, LIBRARY, report=lambda text: print(
                f"  content library: {text}", file=out))
            print(f"published to library {LIBRARY} and deployed back from it as template "
                  f"{name}", file=out)
            done.append((ova, name))
    return done


def build_against_simulator(targets: list[Target], jobs: int | None = 1,
                            progress: Progress | None = None, out: IO[str] | None = None,
                            checkout: Checkout | None = None,
                            knobs: Knobs | None = None) -> api.RunReport:
    """Start the simulator, run ``targets`` against it, deploy the OVAs they
    made back into it as templates, show what is there, stop it.

    The simulator's var files come after any PACKER_VAR_FILES, so a
    vsphere.json aimed at a real vCenter cannot send the run there.
    """
    out = out or sys.stdout
    checkout = checkout or find_checkout()
    knobs = knobs or Knobs.from_env()
    directory = work_dir(checkout, "build")
    with stop_on_signals():  # SIGTERM, SIGHUP: the simulator stops as on Ctrl-C
        return _build_against(start_simulator(), directory, targets, jobs, progress, out,
                              checkout, knobs)


def _build_against(sim: Simulator, directory: Path, targets: list[Target], jobs: int | None,
                   progress: Progress | None, out: IO[str], checkout: Checkout,
                   knobs: Knobs) -> api.RunReport:
    try:
        print(f"vCenter simulator at {sim.url}", file=out)
        files = simulator_var_files(sim, directory)
        knobs = dataclasses.replace(knobs, packer_var_files=knobs.packer_var_files + files)
        report = api.run(targets, "build", jobs=jobs, progress=progress, out=out,
                         checkout=checkout, knobs=knobs)
        if not report.interrupted:
            deploy_outputs(report, files[0], out)
        print("\nVMs and templates in the simulator now:", file=out)
        for name, template in inventory(sim):
            print(f"  {name}{'  (template)' if template else ''}", file=out)
        return report
    finally:
        sim.stop()
        shutil.rmtree(directory, ignore_errors=True)


def serve(vsphere_json: Path, out: IO[str] | None = None,
          checkout: Checkout | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C; write a vsphere var file for it
    (``vsphere_json``) and the simulator's overrides (in the work root, removed at the end
    with the simulator)."""
    out = out or sys.stdout
    directory = work_dir(checkout or find_checkout(), "serve")
    with stop_on_signals():  # SIGTERM, SIGHUP (a plain kill): the simulator stops too
        _serve(start_simulator(), directory, vsphere_json, out)


def _serve(sim: Simulator, directory: Path, vsphere_json: Path, out: IO[str]) -> None:
    try:
        files = simulator_var_files(sim, directory)
        vsphere_json.parent.mkdir(parents=True, exist_ok=True)
        files[0].replace(vsphere_json)
        files[0] = vsphere_json
        overrides = read_var_file(files[1])
        print(f"vCenter simulator at {sim.url} (user {sim.username}; password in {vsphere_json})\n"
              f"Try:  PACKER_VAR_FILES=\"{files[0]} {files[1]}\" "
              "invoke build-node-ova-vsphere-clone-ubuntu-2204\n"
              f"({files[1].name} sets {', '.join(f'{k}={v}' for k, v in overrides.items())}.)\n"
              "Ctrl-C stops the simulator.", file=out, flush=True)
        while sim.running:
            time.sleep(1)
    finally:
        sim.stop()
        shutil.rmtree(directory, ignore_errors=True)
