"""The run's own inputs and outputs: target names, -j and INVOKE_BUILD_JOBS, IB_ROOT,
builds of one run that would collide, and the per-run summaries (also on a full disk).
The real ``invoke`` program with the stand-in packer, as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
from helpers.common import events, invoke

from imagebuilder.vcsim.simulation import simulator_var_files


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_a_mistyped_target_gets_the_closest_names(checkout, standin):
    result = invoke("build-node-ova-vsphere-ubunt-2204")
    assert result.returncode == 2, result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error: 'build-node-ova-vsphere-ubunt-2204' is not a target; "
                            "did you mean build-node-ova-vsphere-ubuntu-2204 or")
    no_traceback(result)
    assert events(standin) == []


def test_an_unknown_flag_is_bad_input(checkout, standin):
    result = invoke("build-node-ova-local-ubuntu-2204", "--nope")
    assert result.returncode == 2 and "'--nope'" in result.stderr
    assert events(standin) == []


@pytest.mark.parametrize("args, env, says", [
    (["-j", "-1", "build-all"], {}, "-j/--jobs: '-1' is not a number of builds"),
    (["-j-2", "build-all"], {}, "-j/--jobs: '-2' is not a number of builds"),
    (["--jobs=x", "build-all"], {}, "-j/--jobs: 'x' is not a number of builds"),
    (["build-all", "--jobs", "-1"], {}, "--jobs: '-1' is not a number of builds"),
    (["build-all", "--jobs", "two"], {}, "--jobs: 'two' is not a number of builds"),
    (["build-node-ova-local-all"], {"INVOKE_BUILD_JOBS": "abc"},
     "INVOKE_BUILD_JOBS (or -j): 'abc' is not a number of builds"),
    (["build-node-ova-local-all"], {"INVOKE_BUILD_JOBS": "-3"},
     "INVOKE_BUILD_JOBS (or -j): '-3' is not a number of builds"),
])
def test_bad_job_counts_are_refused(checkout, standin, args, env, says):
    result = invoke(*args, env_extra=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {says}; give a whole number of 0 (no limit) or more"
        + (", or -j alone" if says.startswith("-j/") else "")]
    assert events(standin) == []


def test_a_bad_ib_root_is_one_clear_line(checkout, standin, tmp_path):
    result = invoke("build-node-ova-local-ubuntu-2204", env_extra={"IB_ROOT": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: IB_ROOT={tmp_path}: no packer/node.json and ova/ there; point IB_ROOT at an "
        "image-builder checkout"]


def test_builds_that_would_make_the_same_vm_are_refused(checkout, standin, vcsim, tmp_path):
    """vsphere and vsphere-clone of one OS name the same VM and output directory:
    side by side, the failing one's cleanup would destroy the other's VM."""
    files = " ".join(map(str, simulator_var_files(vcsim, tmp_path / "sim")))
    result = invoke("-j", "2", "build-node-ova-vsphere-ubuntu-2204",
                    "build-node-ova-vsphere-clone-ubuntu-2204",
                    env_extra={"PACKER_VAR_FILES": files})
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == ("error: builds of this run would overwrite each other; "
                        "nothing was started")
    pair = ("build-node-ova-vsphere-ubuntu-2204 and build-node-ova-vsphere-clone-ubuntu-2204 "
            "would both make")
    out = checkout.output_dir / "ubuntu-2204-kube-v1.37.1"
    assert any(line.startswith(f"  - {pair} output directory {out};") for line in lines)
    assert any(line.startswith(f"  - {pair} VM 'ubuntu-2204-kube-v1.37.1' on {vcsim.host}")
               for line in lines)
    assert events(standin) == []
    assert not out.exists()


def test_each_run_keeps_its_summary(checkout, standin):
    for target in ("build-node-ova-local-ubuntu-2204", "build-node-ova-local-photon-5"):
        result = invoke(target, env_extra={"STANDIN_SECONDS": "0.3"})
        assert result.returncode == 0, result.stderr
    logs = checkout.output_dir / "logs"
    runs = sorted((logs / "summaries").iterdir())
    assert len(runs) == 2
    targets = [json.loads(p.read_text())["builds"][0]["target"] for p in runs]
    assert sorted(targets) == ["build-node-ova-local-photon-5",
                               "build-node-ova-local-ubuntu-2204"]
    latest = logs / "summary.json"
    assert latest.is_symlink()
    assert json.loads(latest.read_text())["builds"][0]["target"] == \
        "build-node-ova-local-photon-5"
    assert [p.name for p in logs.iterdir() if p.name.endswith(".tmp")] == []


def test_an_unwritable_summary_is_one_line_and_exit_1(checkout, standin):
    logs = checkout.output_dir / "logs"
    logs.mkdir(parents=True)
    (logs / "summaries").write_text("a file where the summaries go\n")
    result = invoke("build-node-ova-local-ubuntu-2204", env_extra={"STANDIN_SECONDS": "0.3"})
    assert result.returncode == 1
    assert f"error: {logs / 'summaries'}: cannot write the run's summary (" in result.stdout
    no_traceback(result)
    assert sorted(p.name for p in logs.iterdir()) == [
        "build-node-ova-local-ubuntu-2204.log", "summaries"]


FULL_DISK = """
import sys
from pathlib import Path
from imagebuilder.running import summary
from imagebuilder.running.build import BuildResult
from imagebuilder.errors import BuildError
from imagebuilder.files import write_private_json
disk = Path(sys.argv[1])
for name, write in (
        ("summary", lambda: summary.write_json(
            [BuildResult("t" * 200, "build", "ok", 1.0, "a" * 20000, "l")], disk / "logs")),
        ("build-vars", lambda: write_private_json(disk / "build-vars.json",
                                                  {"k": "v" * 20000}))):
    try:
        write()
        print(name, "written")
    except BuildError as exc:
        print(name, "error:", exc)
"""


def _in_small_tmpfs(script: str, mount, size_kib: int) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-rm", "sh", "-ec",
                           f"mount -t tmpfs -o size={size_kib}k tmpfs '{mount}'\n{script}"],
                          capture_output=True, text=True, timeout=120)


def test_a_full_disk_leaves_no_temporary_files(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if _in_small_tmpfs("true", disk, 64).returncode:
        pytest.skip("cannot mount a private tmpfs here (unshare -rm)")
    code = tmp_path / "write.py"
    code.write_text(FULL_DISK)
    script = textwrap.dedent(f"""\
        head -c $(( 60 * 1024 )) /dev/zero > {disk}/filler
        {sys.executable} {code} {disk}
        find {disk} -name '*.tmp'
        """)
    result = _in_small_tmpfs(script, disk, 64)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout  # nothing found by find: no temporary file left
    assert re.fullmatch(
        rf"summary error: {disk}/logs/summaries/\d{{8}}T\d{{6}}Z-\d+\.json: cannot write the "
        r"run's summary \(No space left on device\); the table above is all there is", lines[0])
    assert lines[1] == (f"build-vars error: {disk}/build-vars.json: cannot write it "
                        "(No space left on device)")


def test_the_library_cli_suggests_targets_too(checkout):
    result = subprocess.run([sys.executable, "-m", "imagebuilder", "build",
                             "node-ova-vsphere-ubunt-2204"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: 'node-ova-vsphere-ubunt-2204': unknown target; "
                                    "did you mean node-ova-vsphere-ubuntu-2204 or")
