"""Shared test fixtures: a private copy of the checkout, the stand-in packer, var files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from imagebuilder.vcsim import Simulator
from imagebuilder.vsphere.driver import Driver

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "standin"
BIN = Path(sys.executable).parent
KNOBS = ("PACKER_FLAGS", "PACKER_VAR_FILES", "FOREGROUND", "ON_ERROR_ASK", "DEBUG",
         "PACKER_COLOR", "SSH_PRIVATE_KEY_FILE", "SSH_PUBLIC_KEY_FILE", "RHSM_USER",
         "RHSM_PASS", "FLATCAR_CHANNEL", "FLATCAR_VERSION", "IB_OVFTOOL", "VSPHERE_PASSWORD",
         "INVOKE_BUILD_JOBS", "ANSIBLE_SCP_EXTRA_ARGS", "PACKER")

VSPHERE = {"vcenter_server": "vcenter.example.com", "username": "administrator@vsphere.local",
           "password": "vc-Secret-1234", "datacenter": "DC0", "cluster": "DC0_C0",
           "datastore": "LocalDS_0", "network": "VM Network", "insecure_connection": "true"}


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def events(record: Path) -> list[tuple[float, str, str, int, int]]:
    """The stand-in's events: (time, event, tag, pid, child pid)."""
    log = record / "events.log"
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        t, event, tag, pid, child = line.split()
        out.append((float(t), event, tag, int(pid), int(child)))
    return out


def max_concurrency(record: Path) -> int:
    running, peak = 0, 0
    for _, event, *_ in sorted(events(record)):
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    return peak


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def connect(sim: Simulator, user: str | None = None,
            password: str | None = None) -> Iterator[vim.ServiceInstance]:
    host, port = sim.host.rsplit(":", 1)
    si = SmartConnect(host=host, port=int(port), user=user or sim.username,
                      pwd=password or sim.password, disableSslCertValidation=True)
    try:
        yield si
    finally:
        Disconnect(si)


def objects(si: vim.ServiceInstance, kind: type) -> dict[str, vim.ManagedEntity]:
    """Name -> object for every entity of a kind (the driver's container-view query,
    which skips objects vcsim has deleted but still lists)."""
    found = Driver(si).inventory(kind, ["name"])
    return {props["name"]: obj for obj, props in found.items()}


def invoke(*args: str, env_extra: dict | None = None, timeout: float = 600):
    """Run the real ``invoke`` (ours, from the venv) in the repo, as a user would."""
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([str(BIN / "invoke"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
