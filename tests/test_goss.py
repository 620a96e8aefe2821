"""goss runs only where its provisioner plugin is installed (Packer 1.6.6 refuses the type)."""

from __future__ import annotations

import json

from imagebuilder.catalog import parse_target
from imagebuilder.knobs import Knobs
from imagebuilder.plan import plan_build, write_build_files


def plan_for(checkout, name="node-ova-local-ubuntu-2204"):
    return plan_build(checkout, parse_target(name, checkout.os_names()), Knobs.from_env({}))


def test_without_the_plugin_the_source_template_runs(checkout, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PACKER_PLUGIN_PATH", raising=False)
    plan = plan_for(checkout)
    assert plan.goss_plugin is None
    assert plan.argv()[-1] == str(checkout.node_template)
    assert "goss" not in checkout.node_template.read_text().split('"provisioners"')[1]


def test_with_the_plugin_goss_runs_after_node_yml(checkout, monkeypatch, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "packer-provisioner-goss").write_text("#!/bin/sh\n")  # its presence is all we read
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(plugins))
    plan = plan_for(checkout)
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
