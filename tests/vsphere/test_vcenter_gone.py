"""deploy-ova when vCenter goes away mid-upload (issue 16): one line, exit 1, no
traceback from the import or from its cleanup."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from helpers.common import BIN, REPO, write_json
from helpers.ova import MiB, make_vmdk
from helpers.simulator import own_simulator

from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.vcsim import vsphere_config

pytestmark = pytest.mark.vcsim


@own_simulator("function")
def test_vcenter_gone_mid_upload_is_one_line(vcsim, checkout, tmp_path):
    disk = make_vmdk(tmp_path / "big.vmdk", size=256 * MiB,
                     data=[(i * 4 * MiB, os.urandom(4 * MiB)) for i in range(24)])
    ova = assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "out")).ova
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PACKER_VAR_FILES=str(write_json(tmp_path / "v.json", vsphere_config(vcsim))))
    proc = subprocess.Popen([str(BIN / "invoke"), "deploy-ova", str(ova), "--name", "gone"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:
            if line.startswith("uploading "):
                proc.send_signal(signal.SIGSTOP)
                break
        vcsim.stop()          # vCenter goes away while the disk is on its way
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "could not check for a half-imported gone" in out
