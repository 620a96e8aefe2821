"""The provisioning playbooks: Ansible's syntax check, ansible-lint's production
profile, a default for every variable the roles read, and how node.json wires
them (secrets by environment, RHSM unregistration on a failed build)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml
from helpers.common import REPO

ANSIBLE = REPO / "packer" / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOKS = ("firstboot.yml", "node.yml", "rhsm-unregister.yml")
NODE = json.loads((REPO / "packer" / "node.json").read_text())

#: Names that need no default: Ansible's own, and the loop variable.
BUILTIN = {"item", "omit", "lookup", "query", "hostvars", "inventory_hostname",
           "ansible_facts", "ansible_env", "ansible_distribution", "ansible_os_family",
           "ansible_distribution_version", "ansible_distribution_release",
           "ansible_distribution_major_version", "ansible_swaptotal_mb", "ib_communicator",
           "true", "false", "none", "True", "False", "None"}
CONDITION_KEYS = ("when", "changed_when", "failed_when", "until")


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook):
    run = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                          playbook], cwd=ANSIBLE, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ansible_lint_production_profile():
    """ansible-lint --profile production (packer/ansible/.ansible-lint) finds nothing."""
    config = yaml.safe_load((ANSIBLE / ".ansible-lint").read_text())
    assert config["profile"] == "production"
    assert config.get("skip_list", []) == ["var-naming[no-role-prefix]"]
    run = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor",
                          "-c", ".ansible-lint", *PLAYBOOKS, "roles"], cwd=ANSIBLE,
                         capture_output=True, text=True,
                         env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()),
                              "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "Passed" in run.stderr + run.stdout


def _strings(node, key=None):
    """Every templated string of a task file, conditions wrapped as expressions."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield "{{ " + node + " }}" if key in CONDITION_KEYS else node


def _defined_in_tasks(node) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        if "register" in node:
            names.add(node["register"])
        for key in ("ansible.builtin.set_fact", "vars"):
            if isinstance(node.get(key), dict):
                names |= set(node[key])
        for v in node.values():
            names |= _defined_in_tasks(v)
    elif isinstance(node, list):
        for v in node:
            names |= _defined_in_tasks(v)
    return names


class _Anything(dict):
    """Every filter or test name exists: Ansible adds its own to Jinja's."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str):
        return lambda *a, **k: None

    def get(self, key: str, default=None):
        return self[key]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment()
    env.filters, env.tests = _Anything(env.filters), _Anything(env.tests)
    return env


def _variables(text: str, env: jinja2.Environment) -> set[str]:
    text = re.sub(r"\{#.*?#\}", "", text, flags=re.S)
    with warnings.catch_warnings():  # regexes such as '\.disabled$' inside Jinja strings
        warnings.simplefilter("ignore", DeprecationWarning)
        return jinja2.meta.find_undeclared_variables(env.parse(text))


def test_every_variable_the_roles_read_has_a_default():
    env = _environment()
    defaults: set[str] = set(yaml.safe_load((ANSIBLE / "vars" / "main.yml").read_text()))
    read: dict[str, str] = {}
    for path in sorted((ANSIBLE / "roles").rglob("defaults/main.yml")):
        defaults |= set(yaml.safe_load(path.read_text()) or {})
    for path in sorted((ANSIBLE / "roles").rglob("tasks/*.yml")):
        data = yaml.safe_load(path.read_text()) or []
        defaults |= _defined_in_tasks(data)
        for text in _strings(data):
            for name in _variables(text, env):
                read.setdefault(name, str(path.relative_to(ANSIBLE)))
    for path in sorted((ANSIBLE / "roles").rglob("templates/*.j2")):
        for name in _variables(path.read_text(), env):
            read.setdefault(name, str(path.relative_to(ANSIBLE)))
    missing = {n: where for n, where in read.items() if n not in defaults | BUILTIN}
    assert not missing, f"read without a default: {missing}"
    assert len(read) > 60  # the scan did find the roles' variables


def test_packer_interface_variables_have_role_defaults():
    """Every variable ansible-args.json (and node.json's ib_ansible_vars) passes that a
    role reads has a role default."""
    args = json.loads((REPO / "packer" / "config" / "ansible-args.json").read_text())
    template = json.loads((REPO / "packer" / "node.json").read_text())["variables"]
    passed = set(re.findall(r"(\w+)=", args["ansible_common_vars"] + " "
                            + template["ib_ansible_vars"]))
    role_text = "\n".join(p.read_text() for p in (ANSIBLE / "roles").rglob("*.yml"))
    role_text += "\n".join(p.read_text() for p in (ANSIBLE / "roles").rglob("*.j2"))
    defaults: set[str] = set()
    for path in (ANSIBLE / "roles").rglob("defaults/main.yml"):
        defaults |= set(yaml.safe_load(path.read_text()) or {})
    used = {v for v in passed if re.search(rf"\b{v}\b", role_text)}
    assert used - defaults == set()
    assert {"containerd_url", "runc_sha256", "kubernetes_semver", "extra_debs",
            "disable_public_repos", "pause_image", "http_proxy"} <= used


def test_every_play_ends_without_a_communicator():
    for name in PLAYBOOKS:
        for play in yaml.safe_load((ANSIBLE / name).read_text()):
            assert play["gather_facts"] is False, name
            first = play["tasks"][0]
            assert first["ansible.builtin.meta"] == "end_play", name
            assert "ib_communicator" in first["when"], name


def test_node_template_wiring():
    declared = set(NODE["variables"])
    ansible = [p for p in NODE["provisioners"] if p["type"] == "ansible"]
    assert [p["playbook_file"] for p in ansible] == ["./packer/ansible/firstboot.yml",
                                                     "./packer/ansible/node.yml"]
    for prov in ansible:
        assert "RHSM_USER={{user `rhsm_user`}}" in prov["ansible_env_vars"]
        assert "RHSM_PASS={{user `rhsm_pass`}}" in prov["ansible_env_vars"]
        assert not any("rhsm" in a for a in prov["extra_arguments"])  # never on argv
        assert "name" not in prov  # Packer 1.6.6 refuses it
    cleanup = NODE["error-cleanup-provisioner"]
    assert cleanup["type"] == "ansible"
    assert cleanup["playbook_file"] == "./packer/ansible/rhsm-unregister.yml"
    referenced = set(re.findall(r"\{\{user `(\w+)`\}\}", json.dumps(NODE["provisioners"])
                                + json.dumps(cleanup)))
    assert referenced <= declared
    unregister = yaml.safe_load((ANSIBLE / "rhsm-unregister.yml").read_text())[0]
    assert any(t.get("ansible.builtin.include_role", {}).get("tasks_from") == "rhsm_unregister"
               for t in unregister["tasks"])


def test_rhsm_credentials_are_never_logged():
    """Tasks that see the RHSM credentials carry no_log."""
    tasks = yaml.safe_load((ANSIBLE / "roles/setup/tasks/rhsm_register.yml").read_text())
    for task in tasks:
        if "rhsm_pass" in json.dumps(task):
            assert task.get("no_log") is True, task["name"]


def test_goss_spec_and_provisioner():
    provisioner = json.loads((REPO / "packer" / "goss" / "provisioner.json").read_text())
    config = json.loads((REPO / "packer" / "config" / "goss-args.json").read_text())
    used = set(re.findall(r"\{\{user `(\w+)`\}\}", json.dumps(provisioner)))
    assert set(config) <= used and used <= set(NODE["variables"])
    spec = "\n".join(p.read_text() for p in sorted((REPO / "packer" / "goss").glob("goss*.yaml"))
                     if p.name != "goss-vars.yaml")
    goss_vars = yaml.safe_load((REPO / "packer" / "goss" / "goss-vars.yaml").read_text())
    inline = set(provisioner["vars_inline"])
    for var in set(re.findall(r"\.Vars\.(\w+)", spec)):
        assert var in goss_vars or var in inline, var
    for check in ("kubeadm version", "containerd --version", "runc --version",
                  "net.bridge.bridge-nf-call-iptables", "br_netfilter", "enabled: true",
                  "{{ .Vars.build_user }}:\n    exists: {{ not .Vars.build_user_removed }}"):
        assert check in spec, check


@pytest.mark.parametrize("given, expected", [
    ({}, []),
    ({"custom_role_names": "role2 role3"}, ["role2", "role3"]),
    ({"custom_role_names": "role2 role3", "node_custom_roles_post": "role3 role4"},
     ["role2", "role3", "role4"]),
    ({"custom_role_names": "a b a c", "node_custom_roles_pre": "c",
      "node_custom_roles_post_sysprep": "b"}, ["a"]),
])
def test_custom_role_names_run_once_after_the_node_roles(tmp_path, given, expected):
    """custom_role_names (upstream's older hook) runs before node_custom_roles_post,
    without the roles another hook runs already: every role named runs once."""
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars_files": [str(ANSIBLE / "vars" / "main.yml")],
        "tasks": [{"ansible.builtin.debug": {"var": "ib_custom_roles_post"}}]}]))
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          str(play), "--extra-vars", json.dumps(given)],
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_STDOUT_CALLBACK": "json",
                              "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg")})
    assert run.returncode == 0, run.stdout + run.stderr
    [task] = json.loads(run.stdout)["plays"][0]["tasks"]
    assert task["hosts"]["localhost"]["ib_custom_roles_post"] == expected
