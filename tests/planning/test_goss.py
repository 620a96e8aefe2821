"""goss runs only where its provisioner plugin is installed (Packer 1.6.6 refuses the type)."""

from __future__ import annotations

import json
import re

from helpers.planning import plan_for

from imagebuilder.planning.goss import skipped_reason, validation
from imagebuilder.planning.plan import write_build_files
from imagebuilder.running.build import run_plan
from imagebuilder.running.summary import table, write_json

LOCAL = "node-ova-local-ubuntu-2204"


def test_without_the_plugin_the_source_template_runs(checkout, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PACKER_PLUGIN_PATH", raising=False)
    plan = plan_for(checkout, LOCAL)
    assert plan.goss_plugin is None
    assert plan.argv()[-1] == str(checkout.node_template)
    assert "goss" not in checkout.node_template.read_text().split('"provisioners"')[1]


def test_with_the_plugin_goss_runs_after_node_yml(checkout, monkeypatch, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "packer-provisioner-goss").write_text("#!/bin/sh\n")  # its presence is all we read
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(plugins))
    plan = plan_for(checkout, LOCAL)
    assert plan.goss_plugin == plugins / "packer-provisioner-goss"
    assert plan.argv()[-1] == str(plan.work_dir / "node.json")
    write_build_files(plan)
    provisioners = json.loads(plan.template.read_text())["provisioners"]
    kinds = [p.get("playbook_file", p["type"]) for p in provisioners]
    assert kinds == ["./packer/ansible/firstboot.yml", "./packer/ansible/node.yml", "goss"]
    assert provisioners[2]["tests"] == ["{{user `goss_tests_dir`}}"]
    assert "_comment" not in provisioners[2]
    # the source tree is untouched: the copy lives in the build's work directory
    assert "goss" not in checkout.node_template.read_text().split('"provisioners"')[1]


def test_packer_init_installs_the_goss_plugin():
    """deps-ova runs `packer init packer/config.pkr.hcl`: it names the goss plugin."""
    from helpers.common import REPO
    hcl = (REPO / "packer" / "config.pkr.hcl").read_text()
    block = re.search(r"\bgoss\s*=\s*\{(.*?)\}", hcl, re.S)
    assert block, hcl
    assert re.search(r'source\s*=\s*"github.com/YaleUniversity/goss"', block.group(1))
    assert re.search(r'version\s*=\s*">= 3\.2\.\d+"', block.group(1))


def test_goss_inspect_mode_fails_the_build_by_default(checkout):
    """As upstream: goss_inspect_mode false, so a failing check fails the build."""
    plan = plan_for(checkout, LOCAL)
    assert plan.merged.get("goss_inspect_mode") == "false"


def test_a_build_without_goss_says_its_image_is_not_validated(checkout, standin, monkeypatch,
                                                              tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PACKER_PLUGIN_PATH", raising=False)
    plan = plan_for(checkout, LOCAL)
    lines: list[str] = []
    steps: list[str] = []
    result = run_plan(plan, on_step=steps.append, on_line=lines.append)
    assert result.ok, result.error
    assert result.validation.startswith("skipped: the goss provisioner plugin is not installed")
    note = "goss: the image will not be validated: the goss provisioner plugin is not installed"
    assert note in plan.log_path.read_text()
    assert any(note in line for line in lines) and any(note in s for s in steps)
    row = next(r for r in table([result]).splitlines() if r.startswith(result.target))
    assert row.split()[1:4] == ["ok", "(not", "validated)"]
    doc = write_json([result], tmp_path / "logs")
    assert json.loads(doc.read_text())["builds"][0]["validation"].startswith("skipped: ")


def test_a_build_with_goss_is_reported_validated(checkout, standin, monkeypatch, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "packer-provisioner-goss").write_text("#!/bin/sh\n")
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(plugins))
    plan = plan_for(checkout, LOCAL)
    result = run_plan(plan)
    assert result.ok, result.error
    assert result.validation == "goss"
    assert "not validated" not in plan.log_path.read_text()
    assert "not validated" not in table([result])


def test_no_communicator_and_base_builds(checkout, monkeypatch, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "packer-provisioner-goss").write_text("#!/bin/sh\n")
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(plugins))
    base = plan_for(checkout, "node-ova-local-base-ubuntu-2204")
    assert skipped_reason(base) is None and validation(base) == ""
    user = tmp_path / "none.json"
    user.write_text(json.dumps({"communicator": "none"}))
    plan = plan_for(checkout, LOCAL, var_files=[user])
    assert validation(plan).startswith("skipped: Packer has no communicator")
    assert plan.goss_plugin is None and plan.template == checkout.node_template
