"""The Windows playbook and roles: Ansible's syntax check and ansible-lint's production
profile with the Windows collections (ansible.windows, community.windows), their templates
rendered as the roles render them, and a checksum for every download that has one."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import tomllib
import yaml
from helpers.common import REPO

WINDOWS = REPO / "packer" / "ansible" / "windows"
ROLES = WINDOWS / "roles"
BIN = Path(sys.executable).parent
TEMPLATE = json.loads((REPO / "packer" / "windows.json").read_text())
#: Downloads of lists the user writes, as on Linux (additional_*), and upstream's debug
#: scripts from the default branches of their projects, which publish no checksum.
UNCHECKED = {"load_additional_components/tasks/executables.yml",
             "load_additional_components/tasks/url.yml", "debug/tasks/main.yml"}


def test_syntax_check():
    run = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                          "node_windows.yml"], cwd=WINDOWS, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_collections_are_installed():
    run = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json"],
                         capture_output=True, text=True, check=True)
    found = {name for path in json.loads(run.stdout).values() for name in path}
    assert {"ansible.windows", "community.windows"} <= found


def test_ansible_lint_production_profile():
    config = yaml.safe_load((WINDOWS / ".ansible-lint").read_text())
    assert config["profile"] == "production"
    assert config.get("skip_list", []) == ["var-naming[no-role-prefix]"]
    run = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "-c",
                          ".ansible-lint", "node_windows.yml", "tasks", "roles"], cwd=WINDOWS,
                         capture_output=True, text=True,
                         env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()),
                              "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "Passed" in run.stderr + run.stdout


def _tasks(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _tasks(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tasks(value)


def test_every_download_is_checked():
    """win_get_url with a checksum or a checksum file, except the lists named in UNCHECKED."""
    checked, seen = 0, set()
    for path in sorted(ROLES.rglob("tasks/*.yml")):
        rel = str(path.relative_to(ROLES))
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            args = task.get("ansible.windows.win_get_url")
            if not isinstance(args, dict):
                continue
            seen.add(rel)
            if rel in UNCHECKED:
                continue
            assert "checksum" in args or "checksum_url" in args, (rel, task["name"])
            assert args.get("checksum_algorithm") == "sha256", (rel, task["name"])
            checked += 1
    assert UNCHECKED <= seen
    assert checked == 6  # containerd, kubernetes, cloudbase-init, nssm, openssh, gmsa plugin
    assert "Get-AuthenticodeSignature" in (ROLES / "cloudbase_init" / "tasks" /
                                          "main.yml").read_text()


def _env() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["b64decode"] = lambda s: base64.b64decode(s).decode()
    from ansible.plugins.test.core import version_compare
    env.tests["version"] = version_compare
    return env


@pytest.mark.parametrize("version", ["2.4.1", "1.7.27"])
@pytest.mark.parametrize("extra", ["", '[plugins."io.containerd.internal.v1.opt"]\n  path = "C:\\\\opt"\n'])
def test_containerd_config_is_valid_toml(version, extra):
    text = _env().from_string((ROLES / "runtimes" / "templates" / "config.toml.j2").read_text())
    out = text.render(containerd_version=version, programdata="C:\\ProgramData",
                      programfiles="C:\\Program Files", pause_image="registry.k8s.io/pause:3.10",
                      containerd_additional_settings=base64.b64encode(extra.encode()).decode(),
                      containerd_image_pull_progress_timeout="5m",
                      runtimes_cni_bin_dir="C:/opt/cni/bin", runtimes_cni_conf_dir="C:/etc/cni/net.d")
    config = tomllib.loads(out)
    assert config["version"] == (3 if version.startswith("2") else 2)
    assert config["root"] == "C:\\ProgramData\\containerd\\root"
    assert config["grpc"]["address"] == "\\\\.\\pipe\\containerd-containerd"
    assert config["imports"] == ["C:\\Program Files\\containerd\\conf.d\\*.toml"]
    if extra:  # containerd_additional_settings (base64) is appended as it is
        assert config["plugins"]["io.containerd.internal.v1.opt"]["path"] == "C:\\opt"
    if version.startswith("2"):
        assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] \
            == "registry.k8s.io/pause:3.10"
    else:
        assert config["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] \
            == "registry.k8s.io/pause:3.10"


def test_cloudbase_init_configs_carry_the_template_defaults():
    values = TEMPLATE["variables"]
    for name in ("cloudbase-init.conf.j2", "cloudbase-init-unattend.conf.j2"):
        out = _env().from_string((ROLES / "cloudbase_init" / "templates" / name).read_text()).render(
            cloudbase_init_dir="C:\\Program Files\\Cloudbase Solutions\\Cloudbase-Init",
            cloudbase_logging_serial_port="", cloudbase_real_time_clock_utc="false",
            netbios_host_name_compatibility="true", **{k: values[k] for k in (
                "cloudbase_metadata_services", "cloudbase_plugins",
                "cloudbase_metadata_services_unattend", "cloudbase_plugins_unattend")})
        settings = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert "VMwareGuestInfoService" in settings["metadata_services"]
        assert settings["username"] == "capi"


def test_every_variable_handed_to_the_playbook_is_read():
    """Each name of ansible_common_vars (packer/config/windows) and ib_ansible_vars reaches a
    role, a template or the playbook (upstream's ecr_credential_provider is the known idle one:
    warned about when set)."""
    carrier = json.loads((REPO / "packer" / "config" / "windows" /
                          "ansible-args-windows.json").read_text())["ansible_common_vars"]
    names = set(re.findall(r"(\w+)=", carrier + " " + TEMPLATE["variables"]["ib_ansible_vars"]))
    text = "\n".join(p.read_text() for p in WINDOWS.rglob("*") if p.is_file()
                     and p.suffix in (".yml", ".j2", ".ps1"))
    idle = sorted(n for n in names if not re.search(rf"(?<![\w]){n}(?![\w])",
                                                      text.replace(f"{n}=", "")))
    assert idle == ["ecr_credential_provider"]
