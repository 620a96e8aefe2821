"""deploy-ova and publish on hostile OVAs (issue 16): they import only what
``ova-verify`` accepts, refuse everything else before anything exists in vCenter
(one line, the exit code, bounded memory, nothing left behind), and undo a
half-done import when SIGTERM or SIGHUP comes, or vCenter goes away, mid-upload.

The corpus is tests/helpers/hostile_ova.py's (the same as ``ova verify``'s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers.common import BIN, REPO, connect, objects, write_json
from helpers.hostile_ova import CASES, RSS_LIMIT, Good, run_measured
from helpers.ova import MiB, make_vmdk
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder.config.checkout import Checkout
from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.vcsim import vsphere_config
from imagebuilder.vsphere.library import RestSession, find_library
from imagebuilder.vsphere.session import VSphereSettings

pytestmark = [pytest.mark.vcsim, own_simulator("module", password="hostile-Secret-1")]
IMPORTED = [c for c in CASES if c.imported]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Good:
    tmp = tmp_path_factory.mktemp("good")
    disk = make_vmdk(tmp / "d.vmdk", data=[(MiB, os.urandom(2 * MiB))])
    return Good.read(assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp / "out",
                                              checkout=Checkout(REPO))).ova)


def environment(vcsim, tmp_path) -> dict[str, str]:
    files = write_json(tmp_path / "sim-vsphere.json", vsphere_config(vcsim))
    return dict(os.environ, PACKER_VAR_FILES=str(files), PYTHONUNBUFFERED="1")


def vms(vcsim) -> set[str]:
    with connect(vcsim) as si:
        return set(objects(si, vim.VirtualMachine))


def library_exists(vcsim, name: str) -> bool:
    settings = VSphereSettings.from_vars(vsphere_config(vcsim), env={})
    with RestSession(settings) as rest:
        return find_library(rest, name) is not None


def answered(case, good, code, out, err, rss) -> None:
    assert code == case.code, (out, err)
    assert "Traceback" not in out + err
    assert case.line.format(stem=good.stem, disk=good.disk) in err
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"


@pytest.mark.parametrize("case", IMPORTED, ids=lambda c: c.id)
def test_deploy_ova_refuses_what_ova_verify_refuses(case, good, vcsim, tmp_path):
    path = case.make(good, tmp_path)
    before = vms(vcsim)
    answered(case, good, *run_measured([str(BIN / "invoke"), "deploy-ova", str(path),
                                        "--name", f"hostile-{case.id}"],
                                       env=environment(vcsim, tmp_path), cwd=REPO))
    assert vms(vcsim) == before  # nothing was created


@pytest.mark.parametrize("case", IMPORTED, ids=lambda c: c.id)
def test_publish_refuses_what_ova_verify_refuses(case, good, vcsim, tmp_path):
    path = case.make(good, tmp_path)
    library = f"hostile-{case.id}"
    answered(case, good, *run_measured(
        [sys.executable, "-m", "imagebuilder", "publish", str(path), "--library", library,
         "--create"], env=dict(environment(vcsim, tmp_path), IB_ROOT=str(REPO))))
    assert not library_exists(vcsim, library)  # not even the library it was to create


@pytest.fixture(scope="module")
def big_ova(tmp_path_factory):
    """An OVA of about 100 MiB: its upload takes long enough to be caught in it."""
    tmp = tmp_path_factory.mktemp("big")
    disk = make_vmdk(tmp / "big.vmdk", size=256 * MiB,
                     data=[(i * 4 * MiB, os.urandom(4 * MiB)) for i in range(24)])
    return assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp / "out",
                                    checkout=Checkout(REPO))).ova


def start_deploy(vcsim, tmp_path, ova, name) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "invoke"), "deploy-ova", str(ova), "--name", name],
                            cwd=REPO, env=environment(vcsim, tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def freeze_when_uploading(proc: subprocess.Popen) -> list[str]:
    """Read the deploy's lines until it starts sending a disk, then stop it (SIGSTOP)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("uploading "):
            proc.send_signal(signal.SIGSTOP)
            return seen
    raise AssertionError(f"the deploy never started uploading: {seen}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_mid_upload_aborts_the_lease_and_removes_the_vm(signum, big_ova, vcsim,
                                                                 tmp_path):
    name = f"stopped-{signum.name.lower()}"
    proc = start_deploy(vcsim, tmp_path, big_ova, name)
    try:
        freeze_when_uploading(proc)
        assert name in vms(vcsim)  # the half-imported VM exists while the disk uploads
        proc.send_signal(signum)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, out + err
    assert f"stopped by {signum.name}: undoing the import of {name}" in out
    assert f"importing {name}: aborted the upload lease" in out
    assert "Traceback" not in out + err
    assert name not in vms(vcsim)
