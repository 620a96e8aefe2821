"""local-base -> local-vmx as a make-style prerequisite (stand-in packer: no VMware here)."""

from __future__ import annotations

import json

from helpers.common import events, invoke, write_json


def started(record):
    return [e[2] for e in events(record) if e[1] == "start"]


def test_vmx_build_builds_its_base_first_then_reuses_it(checkout, standin):
    env = {"STANDIN_SECONDS": "0.2"}
    first = invoke("build-node-ova-local-vmx-ubuntu-2404", env_extra=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert started(standin) == ["build-node-ova-local-base-ubuntu-2404",
                                "build-node-ova-local-vmx-ubuntu-2404"]
    base_dir = checkout.output_dir / "ubuntu-2404-base"
    argv = json.loads((standin / "build-node-ova-local-vmx-ubuntu-2404.argv").read_text())["argv"]
    generated = [a.split("=", 1)[1] for a in argv if a.endswith("build-vars.json")]
    assert generated  # (removed after the build; the stand-in saw it)
    info = json.loads((base_dir / "build-info.json").read_text())
    assert len(info["base_inputs_hash"]) == 64

    second = invoke("build-node-ova-local-vmx-ubuntu-2404", env_extra=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "node-ova-local-base-ubuntu-2404: base is up to date" in second.stdout
    assert started(standin).count("build-node-ova-local-base-ubuntu-2404") == 1


def test_a_changed_input_makes_the_base_stale(checkout, standin, tmp_path):
    env = {"STANDIN_SECONDS": "0.2"}
    assert invoke("build-node-ova-local-base-photon-5", env_extra=env).returncode == 0
    bigger = write_json(tmp_path / "disk.json", {"disk_size": "40960"})
    result = invoke("build-node-ova-local-vmx-photon-5",
                    env_extra=dict(env, PACKER_VAR_FILES=str(bigger)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "node-ova-local-base-photon-5: base is stale; building it first" in result.stdout
    assert started(standin).count("build-node-ova-local-base-photon-5") == 2


def test_failed_base_skips_its_dependent(checkout, standin):
    result = invoke("build-node-ova-local-vmx-flatcar",
                    env_extra={"STANDIN_SECONDS": "0.2", "STANDIN_FAIL": "local-base-flatcar"})
    assert result.returncode == 1
    summary = json.loads((checkout.output_dir / "logs" / "summary.json").read_text())
    results = {b["target"]: (b["result"], b["error"]) for b in summary["builds"]}
    assert results["build-node-ova-local-base-flatcar"][0] == "failed"
    assert results["build-node-ova-local-vmx-flatcar"] == (
        "skipped", "not started: its base build-node-ova-local-base-flatcar did not build")


def test_no_deps_with_a_missing_local_base(checkout, standin):
    result = invoke("build-node-ova-local-vmx-rhel-8", "--no-deps",
                    env_extra={"RHSM_USER": "u", "RHSM_PASS": "rhsm-Secret-1"})
    assert result.returncode == 2
    assert "the base 'rhel-8-base' is missing and --no-deps forbids building it" in result.stderr
    assert started(standin) == []
