"""Each vSphere Windows target against the embedded vCenter simulator: Packer's real
vsphere-iso builder with the Windows template (floppy with the answer file, both ISOs,
communicator none: the simulator has no guest), the export, the OVA verified and deployed
back as a template, as ``invoke vcsim-build`` does."""

from __future__ import annotations

import io
import shutil
import tarfile
import xml.etree.ElementTree as ET

import pytest

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.vcsim import simulation

pytestmark = [pytest.mark.packer,
              pytest.mark.skipif(not shutil.which("packer"), reason="packer is not installed")]

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
VMW = "{http://www.vmware.com/schema/ovf}"
EXPECTED = {"windows-2019": ("windows2019srv_64Guest", "bios"),
            "windows-2019-efi": ("windows2019srv_64Guest", "efi"),
            "windows-2022": ("windows2019srvNext_64Guest", "bios"),
            "windows-2022-efi": ("windows2019srvNext_64Guest", "efi")}


def test_every_vsphere_windows_target_ends_with_a_deployed_ova(checkout, vcsim_binary):
    targets = [parse_target(f"build-node-ova-vsphere-{o}", checkout.os_names()) for o in EXPECTED]
    out = io.StringIO()
    # one at a time: with two Windows builds at once the simulator sometimes loses one
    # build's uploaded floppy image (FileNotFound when Packer deletes it)
    report = simulation.build_against_simulator(targets, jobs=1, out=out, checkout=checkout,
                                                knobs=Knobs.from_env({}))
    text = out.getvalue()
    assert report.exit_code == 0, text
    for os_name, (guest, firmware) in EXPECTED.items():
        name = f"{os_name}-kube-v1.37.1"
        assert f"deployed into the simulator as template {name}-ova" in text
        assert f"  {name}-ova  (template)" in text
        ova = checkout.output_dir / name / f"{name}.ova"
        with tarfile.open(ova) as tar:
            descriptor = ET.fromstring(tar.extractfile(f"{name}.ovf").read())
        [section] = descriptor.iter(f"{OVF}OperatingSystemSection")
        assert section.get(f"{VMW}osType") == guest and section.get(f"{OVF}id") == "112"
        config = {c.get(f"{VMW}key"): c.get(f"{VMW}value") for c in descriptor.iter(f"{VMW}Config")}
        assert config["firmware"] == firmware
        log = (checkout.logs_dir / f"build-node-ova-vsphere-{os_name}.log").read_text()
        assert "Creating floppy disk..." in log and "Mounting ISO images..." in log
        # the answer file (Administrator password) is gone once the build is over
        assert not list((checkout.work_root / f"node-ova-vsphere-{os_name}" / "floppy").iterdir())
