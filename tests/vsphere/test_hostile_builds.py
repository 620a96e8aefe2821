"""Real builds (Packer 1.6.6 against the simulator) with values no shell or template
engine may interpret (issue 16, items 1 and 6): an output directory holding quotes,
$(...), backticks and blanks simply works; a vCenter password holding ``{{ ... }}``
logs preflight and Packer in alike."""

from __future__ import annotations

import shutil

import pytest
from helpers.common import REPO, invoke
from helpers.simulator import own_simulator

from imagebuilder.ova import verify_ova
from imagebuilder.vcsim.simulation import simulator_var_files

#: A password Packer would read as a template, and a shell as commands.
PASSWORD = "vc{{ .Secret }}{{user `x`}}'$(touch PWNED1)`touch PWNED2`-{{"
pytestmark = [pytest.mark.vcsim, pytest.mark.packer, pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed"),
              own_simulator("function", password=PASSWORD, power_off_after=0.5)]
STEM = "photon-5-kube-v1.37.1"


def no_pwned(*roots) -> bool:
    return not [p for root in roots for p in root.rglob("PWNED*")] and \
        not list(REPO.glob("PWNED*"))


def test_an_output_directory_no_shell_may_see(checkout, vcsim, tmp_path):
    out = tmp_path / "o'brien $(touch PWNED3) `touch PWNED4` \"x\" -dash" / "out"
    files = simulator_var_files(vcsim, tmp_path / "vcsim", template="DC0_H0_VM0")
    result = invoke("build-node-ova-vsphere-clone-photon-5",
                    env_extra={"PACKER_VAR_FILES": " ".join(map(str, files)),
                               "IB_OUTPUT_DIR": str(out)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ova = out / STEM / f"{STEM}.ova"
    assert verify_ova(ova).ovf.properties["DISTRO_NAME"] == "photon"
    assert no_pwned(tmp_path, checkout.root)
    assert PASSWORD not in result.stdout + result.stderr
    log = (out / "logs" / "build-node-ova-vsphere-clone-photon-5.log").read_text()
    assert PASSWORD not in log and "Secret" not in log


def test_a_password_holding_braces_logs_preflight_and_packer_in(checkout, vcsim, tmp_path):
    """Preflight (pyvmomi) logs in with the password as written; Packer gets it as a
    literal of the build's template copy (0600, gone once read), so it logs in too."""
    files = simulator_var_files(vcsim, tmp_path / "vcsim", template="DC0_H0_VM0")
    result = invoke("build-node-ova-vsphere-clone-photon-5",
                    env_extra={"PACKER_VAR_FILES": " ".join(map(str, files))})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    work = checkout.output_dir / ".work" / "node-ova-vsphere-clone-photon-5"
    assert not (work / "node.json").exists()  # the copy with the password is gone
    assert (checkout.output_dir / STEM / f"{STEM}.ova").is_file()
    log = (checkout.output_dir / "logs" / "build-node-ova-vsphere-clone-photon-5.log")
    assert "Secret" not in log.read_text()
    assert no_pwned(tmp_path, checkout.root)
