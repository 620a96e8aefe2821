"""The steps after Packer: the OVA (a build step, no longer a Packer post-processor) and the
user's custom post-processor, run after it with upstream's semantics.

A local build runs as a user runs it (the real ``invoke``) with the stand-in packer,
wrapped so that it leaves what the vmware builder and the manifest post-processor
would: a streamOptimized disk made by qemu-img, listed in packer-manifest.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers.common import REPO, STANDIN, events, invoke, write_json
from helpers.ova import assert_no_partial_files, make_vmdk, write_manifest

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.ova import verify_ova
from imagebuilder.planning.plan import plan_build
from imagebuilder.running.post_steps import OvaStep
from imagebuilder.running.steps import BuildState, Cancelled, StepRunner

TARGET = "node-ova-local-ubuntu-2204"
NAME = "ubuntu-2204-kube-v1.37.1"

EXPORTING_PACKER = '''#!{python}
"""The stand-in packer, then what the vmware builder and the manifest post-processor leave."""
import json, subprocess, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers.ova import make_vmdk, write_manifest
values = {{}}
for arg in sys.argv[2:]:
    if arg.startswith("-var-file="):  # read now: the 0600 ones go once Packer starts
        values.update(json.loads(Path(arg.split("=", 1)[1]).read_text()))
code = subprocess.call([{standin!r}, *sys.argv[1:]])
if code == 0 and sys.argv[1] == "build":
    out = Path(values["output_directory"])
    disk = make_vmdk(out / (values["vm_name"] + "-disk1.vmdk"))
    write_manifest(out, [disk], {{"ib_target": values["ib_target"]}})
sys.exit(code)
'''


@pytest.fixture
def exporting_packer(tmp_path, standin, monkeypatch) -> Path:
    wrapper = tmp_path / "exporting-packer"
    wrapper.write_text(EXPORTING_PACKER.format(python=sys.executable, tests=str(REPO / "tests"),
                                               standin=str(STANDIN / "packer")))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PACKER", str(wrapper))
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES"):
        monkeypatch.delenv(knob, raising=False)
    return wrapper


def custom(tmp_path, command: str, enabled: str = "true") -> dict:
    return {"PACKER_VAR_FILES": str(write_json(tmp_path / "custom.json", {
        "custom_post_processor": enabled, "custom_post_processor_command": command}))}


def test_the_ova_is_a_step_and_the_custom_post_processor_runs_after_it(
        checkout, standin, exporting_packer, tmp_path):
    record = tmp_path / "custom-record"
    out = checkout.output_dir / NAME
    command = (f'echo "$CUSTOM_POST_PROCESSOR $PACKER_BUILD_NAME $PACKER_BUILDER_TYPE '
               f'$(pwd)" > {record}; ls {out} >> {record}; echo custom-ran; echo "$-"')
    result = invoke(f"build-{TARGET}", env_extra=custom(tmp_path, command))
    assert result.returncode == 0, result.stdout + result.stderr
    argv = json.loads((standin / f"build-{TARGET}.argv").read_text())["argv"]
    assert "-except=ova,custom-post-processor" in argv  # Packer runs neither
    verify_ova(out / f"{NAME}.ova")
    lines = record.read_text().splitlines()
    assert lines[0] == f"true vmware-iso vmware-iso {checkout.root}"  # as shell-local runs it
    assert f"{NAME}.ova" in lines[1:] and f"{NAME}.ova.sha256" in lines[1:]  # after the OVA
    log = (checkout.output_dir / "logs" / f"build-{TARGET}.log").read_text()
    assert f"# imagebuilder: ova: writing {NAME}.ova" in log
    assert "custom-ran" in log and "\ne\n" in log  # its output, under sh -e
    assert not (checkout.work_root / TARGET / "custom-post-processor.sh").exists()
    info = json.loads((out / "build-info.json").read_text())
    assert f"{NAME}.ova" in info["files"]


def test_the_custom_post_processor_runs_only_when_true(checkout, standin, exporting_packer,
                                                       tmp_path):
    record = tmp_path / "custom-record"
    result = invoke(f"build-{TARGET}", env_extra=custom(tmp_path, f"touch {record}", "false"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not record.exists()
    assert (checkout.output_dir / NAME / f"{NAME}.ova").is_file()


def test_a_failing_custom_post_processor_fails_the_build(checkout, standin, exporting_packer,
                                                         tmp_path):
    result = invoke(f"build-{TARGET}",
                    env_extra=custom(tmp_path, "echo about to fail; false; echo not reached"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "custom_post_processor_command exited with code 1" in result.stdout
    assert "about to fail" in result.stdout and "not reached" not in result.stdout
    assert [e[1] for e in events(standin)] == ["start", "end"]
    # The OVA was finished before the custom post-processor ran: it stays.
    verify_ova(checkout.output_dir / NAME / f"{NAME}.ova")


def export_for_ova_step(checkout) -> BuildState:
    """A build state whose output directory holds a Packer export, as after ReadManifestStep."""
    knobs = Knobs.from_env({})
    plan = plan_build(checkout, parse_target(TARGET, checkout.os_names()), knobs)
    plan.artifact_dir.mkdir(parents=True)
    disk = make_vmdk(plan.artifact_dir / f"{NAME}-disk1.vmdk")
    write_manifest(plan.artifact_dir, [disk], {"ib_target": TARGET})
    return BuildState(plan=plan)


class Later:
    """A step after the OVA that fails."""

    name = "later"

    def run(self, state):
        raise RuntimeError("a later step failed")

    def cleanup(self, state):
        pass


def test_an_interrupted_ova_step_leaves_only_what_packer_made(checkout):
    state = export_for_ova_step(checkout)
    before = sorted(p.name for p in state.plan.artifact_dir.iterdir())
    reports = []

    def on_step(text: str) -> None:  # Ctrl-C as soon as the OVA is being written
        reports.append(text)
        if text.startswith("ova: writing"):
            state.cancel.set()
    state.on_step = on_step
    with pytest.raises(Cancelled, match="stopped while making the OVA"):
        StepRunner([OvaStep()]).run(state)
    assert f"ova: writing {NAME}.ova 0%" in reports
    assert sorted(p.name for p in state.plan.artifact_dir.iterdir()) == before
    assert_no_partial_files(state.plan.artifact_dir)


def test_a_finished_ova_outlives_a_later_failure(checkout):
    state = export_for_ova_step(checkout)
    reports = []
    state.on_step = reports.append
    runner = StepRunner([OvaStep(), Later()])
    with pytest.raises(RuntimeError, match="a later step failed"):
        runner.run(state)
    assert runner.cleanup_errors == []
    verify_ova(state.plan.artifact_dir / f"{NAME}.ova")
    assert f"ova: writing {NAME}.ova 100%" in reports
