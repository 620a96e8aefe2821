"""Templates of the node roles rendered by Ansible itself (the template module on
localhost), for the branches the Debian chroot run does not take: containerd 1.x's
config layout and Ubuntu's sysctls."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import tomllib
from helpers.common import REPO, write_json

ROLES = REPO / "packer" / "ansible" / "roles"
ANSIBLE = Path(sys.executable).parent / "ansible"


def render(role: str, template: str, variables: dict, tmp_path: Path) -> str:
    out = tmp_path / "rendered"
    extra = write_json(tmp_path / "vars.json", variables)
    run = subprocess.run([str(ANSIBLE), "localhost", "-c", "local", "-i", "localhost,",
                          "-m", "ansible.builtin.template", "-e", f"@{extra}",
                          "-a", f"src={ROLES / role / 'templates' / template} dest={out}"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                              "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    return out.read_text()


CONTAINERD = {"containerd_cri_socket": "/var/run/containerd/containerd.sock",
              "pause_image": "registry.k8s.io/pause:3.9", "containerd_runc_path": "/usr/local/sbin/runc",
              "containerd_image_pull_progress_timeout": "", "containerd_wasm_shims": [],
              "containerd_wasm_versions": {}, "containerd_gvisor_runtime": "false",
              "containerd_extra_toml": ""}


def test_containerd_1x_layout(tmp_path):
    config = tomllib.loads(render("containerd", "config.toml.j2", {
        **CONTAINERD, "containerd_version": "1.7.22", "containerd_image_pull_progress_timeout": "5m",
        "containerd_gvisor_runtime": "true", "containerd_wasm_shims": ["wws"],
        "containerd_wasm_versions": {"wws": "v1"}}, tmp_path))
    assert config["version"] == 2
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert cri["image_pull_progress_timeout"] == "5m"
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    runtimes = cri["containerd"]["runtimes"]
    assert runtimes["runc"]["options"] == {"BinaryName": "/usr/local/sbin/runc", "SystemdCgroup": True}
    assert runtimes["gvisor"]["runtime_type"] == "io.containerd.runsc.v1"
    assert runtimes["wws"]["runtime_type"] == "io.containerd.wws.v1"


def test_user_imports_replace_ours(tmp_path):
    """As upstream: settings with their own "imports" leave ours out (TOML allows one)."""
    toml = 'imports = ["/opt/site/containerd/*.toml"]\n'
    text = render("containerd", "config.toml.j2", {
        **CONTAINERD, "containerd_version": "2.4.1", "containerd_extra_toml": toml}, tmp_path)
    assert tomllib.loads(text)["imports"] == ["/opt/site/containerd/*.toml"]
    assert base64.b64encode(toml.encode()).decode() not in text


def test_ubuntu_gets_strict_rp_filter(tmp_path):
    node = {"node_sysctls": {"net.ipv4.ip_forward": 1},
            "node_ubuntu_sysctls": {"net.ipv4.conf.all.rp_filter": 1}}
    ubuntu = render("node", "sysctl.conf.j2", {**node, "ansible_distribution": "Ubuntu"}, tmp_path)
    assert "net.ipv4.conf.all.rp_filter = 1" in ubuntu.splitlines()
    debian = render("node", "sysctl.conf.j2", {**node, "ansible_distribution": "Debian"}, tmp_path)
    assert "rp_filter" not in debian
