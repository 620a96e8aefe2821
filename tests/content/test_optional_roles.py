"""The optional roles' templates and switches, rendered by Ansible itself on localhost
(no root, no chroot): what the OS paths that cannot run here would write, and that
every role stays off until its variable turns it on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from helpers.common import REPO

ANSIBLE = REPO / "packer" / "ansible"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

#: (role, template, variables) rendered into <out>/<name>.
CASES = {
    "nouveau-blocked": ("gpu", "blocklist-nouveau.conf.j2", {"gpu_block_nouveau_loading": "true"}),
    "nouveau-default": ("gpu", "blocklist-nouveau.conf.j2", {}),
    "gridd": ("gpu", "gridd.conf.j2", {"gridd_feature_type": "4"}),
    "ecr-default": ("ecr_credential_provider", "ecr-credential-provider-config.j2", {}),
    "ecr-string": ("ecr_credential_provider", "ecr-credential-provider-config.j2",
                   {"ecr_credential_provider_match_images": "*.example.com, registry.example:5000",
                    "ecr_credential_provider_aws_profile": "builds"}),
    "audit": ("security", "security.rules.j2", {}),
    "falco-unit": ("security", "falco-modern-bpf.service.j2", {}),
}


def render(tmp_path: Path) -> dict[str, str]:
    """Every case of CASES rendered with its role's defaults under the case's variables."""
    tasks = []
    for name, (role, template, variables) in CASES.items():
        defaults = yaml.safe_load((ANSIBLE / "roles" / role / "defaults/main.yml").read_text())
        tasks.append({"name": name, "ansible.builtin.template": {
            "src": str(ANSIBLE / "roles" / role / "templates" / template),
            "dest": str(tmp_path / name), "mode": "0644"},
            "vars": {**defaults, **variables}})
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                     "connection": "local", "tasks": tasks}]))
    run = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook)],
                         capture_output=True, text=True,
                         env={"PATH": f"{ANSIBLE_PLAYBOOK.parent}:/usr/bin:/bin",
                              "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1",
                              "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return {name: (tmp_path / name).read_text() for name in CASES}


def test_templates(tmp_path):
    out = render(tmp_path)
    lines = out["nouveau-blocked"].splitlines()
    assert {"blacklist nouveau", "options nouveau modeset=0", "install nouveau /bin/false"} <= set(lines)
    assert "install nouveau" not in out["nouveau-default"]  # upstream's default: blocklist only
    assert "blacklist nouveau" in out["nouveau-default"]
    assert "FeatureType=4" in out["gridd"].splitlines()
    default = yaml.safe_load(out["ecr-default"])
    assert default["apiVersion"] == "kubelet.config.k8s.io/v1"
    provider = default["providers"][0]
    assert provider["matchImages"] == ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"]
    assert provider["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1"
    assert provider["defaultCacheDuration"] == "12h"
    # from ansible_user_vars a list arrives as a comma-separated string
    custom = yaml.safe_load(out["ecr-string"])["providers"][0]
    assert custom["matchImages"] == ["*.example.com", "registry.example:5000"]
    assert custom["env"] == [{"name": "AWS_PROFILE", "value": "builds"}]
    rules = [x for x in out["audit"].splitlines() if x and not x.startswith("#")]
    assert all(r.startswith(("-w ", "-a always,exit")) for r in rules)
    assert "-w /etc/sudoers.d/ -p wa -k privilege" in rules
    assert "ExecStart=/usr/bin/falco -o engine.kind=modern_ebpf" in out["falco-unit"]


def test_every_optional_role_is_off_by_default():
    """node.yml runs load_additional_components and ecr_credential_provider only when
    their switch is true (default false); each part of load_additional_components and the
    security scanners have their own switch, default off."""
    play = yaml.safe_load((ANSIBLE / "node.yml").read_text())[0]
    gated = {t["ansible.builtin.include_role"]["name"]: t.get("when")
             for t in play["tasks"] if "ansible.builtin.include_role" in t}
    assert gated["load_additional_components"] == \
        "load_additional_components | default(false) | bool"
    assert gated["ecr_credential_provider"] == "ecr_credential_provider | default(false) | bool"
    names = list(gated)
    assert names.index("kubernetes") < names.index("load_additional_components") \
        < names.index("ecr_credential_provider") < names.index("sysprep")  # upstream's order
    lac = yaml.safe_load((ANSIBLE / "roles/load_additional_components/defaults/main.yml").read_text())
    for switch in ("load_additional_components", "additional_executables",
                   "additional_registry_images", "additional_url_images", "additional_s3"):
        assert lac[switch] is False, switch
    main = yaml.safe_load((ANSIBLE / "roles/load_additional_components/tasks/main.yml").read_text())
    assert [t["when"] for t in main] == [
        "additional_executables | bool", "additional_registry_images | bool",
        "additional_url_images | bool", "additional_s3 | bool"]
    security = yaml.safe_load((ANSIBLE / "roles/security/defaults/main.yml").read_text())
    assert security["security_install_falco"] is False and security["security_install_trivy"] is False
    gpu = yaml.safe_load((ANSIBLE / "roles/gpu/defaults/main.yml").read_text())
    assert gpu["gpu_vendor"] == "" and gpu["gpu_block_nouveau_loading"] is False


def test_s3_keys_only_reach_tasks_that_hide_them():
    """Every task that hands on an S3 key is the s3_download role's module call with no_log
    (include_role only passes variables), and the module marks the keys no_log."""
    keys = ("additional_s3_access", "additional_s3_secret", "nvidia_bucket_access",
            "nvidia_bucket_secret", "s3_download_access_key", "s3_download_secret_key")
    seen = 0
    for path in (ANSIBLE / "roles").glob("*/tasks/*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            text = json.dumps({k: v for k, v in task.items()
                               if k not in ("vars", "block", "rescue", "always")})
            if any(k in text for k in keys):
                assert task.get("no_log") is True, (path, task["name"])
                assert "imagebuilder_s3_get" in task, (path, task["name"])
                seen += 1
    assert seen == 1  # the one module call
    module = (ANSIBLE / "roles/s3_download/library/imagebuilder_s3_get.py").read_text()
    assert '"access_key": {"type": "str", "default": "", "no_log": True}' in module
    assert '"secret_key": {"type": "str", "default": "", "no_log": True}' in module


def _tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always"):
            yield from _tasks(node.get(key))
