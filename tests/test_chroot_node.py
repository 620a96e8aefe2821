"""A real run of node.yml: a debootstrapped Debian root provisioned through Ansible's
chroot connection, release downloads served by stand-ins on 127.0.0.1.

Debian shares Ubuntu's apt code path (Ubuntu's archive is out of reach here).
The variables come from the ubuntu-2404 target exactly as node.json passes them
(packer/config + OS file + a user var file + ansible_user_vars), with only the
download URLs and checksums pointed at the stand-ins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from support import REPO, write_json
from test_chroot_support import (
    StandInReleases,
    as_installed_os,
    chroot_unavailable,
    make_debian_root,
    mount_proc,
    unmount_all,
)

from imagebuilder.catalog import parse_target
from imagebuilder.checkout import Checkout
from imagebuilder.knobs import Knobs
from imagebuilder.plan import plan_build
from imagebuilder.render_cli import ansible_vars

pytestmark = [pytest.mark.chroot, pytest.mark.slow,
              pytest.mark.skipif(chroot_unavailable() is not None,
                                 reason=chroot_unavailable() or "")]

PLAYBOOKS = REPO / "packer" / "ansible"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
USER_VARS = "kubelet_extra_args=--node-labels=imagebuilder.test/chroot=yes"


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory) -> Iterator[Path]:
    """A Debian stable root looking like a freshly installed build VM."""
    root = tmp_path_factory.mktemp("chroot") / "root"
    make_debian_root(root)
    try:
        mount_proc(root)
        as_installed_os(root)
        yield root
    finally:
        unmount_all(root)


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Iterator[StandInReleases]:
    with StandInReleases(tmp_path_factory.mktemp("releases"), containerd="2.4.1",
                         runc="1.5.1", crictl="1.37.0", kubernetes="v1.37.1",
                         cni="v1.9.1") as served:
        yield served


def node_vars(checkout, tmp_path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """What node.json's ansible provisioner hands the playbook for ubuntu-2404."""
    user_file = write_json(tmp_path / "user-vars.json",
                           {**overrides, "ansible_user_vars": USER_VARS})
    knobs = Knobs.from_env({"PACKER_VAR_FILES": str(user_file)})
    target = parse_target("node-ova-local-ubuntu-2404", checkout.os_names())
    plan = plan_build(checkout, target, knobs, "build")
    return ansible_vars(plan.merged.resolved(knobs.packer_env({})))


def run_playbook(playbook: Path, root: Path, variables: dict[str, str],
                 tmp_path: Path) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"node ansible_connection=community.general.chroot "
                         f"ansible_host={root} ansible_python_interpreter=auto_silent\n")
    extra = write_json(tmp_path / "extra-vars.json", variables)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
           "ANSIBLE_REMOTE_TMP": "/tmp/.ansible", "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
           "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "-e", f"@{extra}",
                           str(playbook)], capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.fixture(scope="module")
def provisioned(debian_root, releases, tmp_path_factory) -> Path:
    """``debian_root`` after successful runs of firstboot.yml and node.yml."""
    tmp = tmp_path_factory.mktemp("node")
    variables = node_vars(Checkout(REPO), tmp, releases.packer_vars())
    for playbook in ("firstboot.yml", "node.yml"):  # in Packer's order
        run = run_playbook(PLAYBOOKS / playbook, debian_root, variables, tmp)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return debian_root


def systemd_enabled(root: Path, unit: str) -> bool:
    out = subprocess.run(["chroot", str(root), "systemctl", "is-enabled", unit],
                         capture_output=True, text=True)
    return out.stdout.strip() == "enabled"


def test_variables_flow_from_the_config_files(provisioned, releases):
    """The playbook saw packer/config's values, the user var file's and ansible_user_vars."""
    root = provisioned
    assert "registry.k8s.io/pause:3.10.1" in (root / "etc/containerd/config.toml").read_text()
    kubelet_env = (root / "etc/default/kubelet").read_text()
    assert "--node-labels=imagebuilder.test/chroot=yes" in kubelet_env
    assert "unix:///var/run/containerd/containerd.sock" in (root / "etc/crictl.yaml").read_text()


def test_binaries_where_the_units_expect_them(provisioned):
    root = provisioned
    containerd_unit = (root / "usr/lib/systemd/system/containerd.service").read_text()
    kubelet_unit = (root / "usr/lib/systemd/system/kubelet.service").read_text()
    dropin = (root / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert "ExecStart=/usr/local/bin/containerd\n" in containerd_unit
    assert "ExecStart=/usr/bin/kubelet\n" in kubelet_unit
    assert "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS" in dropin
    for path, version in (("usr/local/bin/containerd", "v2.4.1"), ("usr/local/sbin/runc", "1.5.1"),
                          ("usr/local/bin/crictl", "v1.37.0"), ("usr/bin/kubeadm", "v1.37.1"),
                          ("usr/bin/kubelet", "v1.37.1"), ("usr/bin/kubectl", "v1.37.1"),
                          ("opt/cni/bin/bridge", "v1.9.1"), ("opt/cni/bin/portmap", "v1.9.1")):
        out = subprocess.run(["chroot", str(root), "/" + path], capture_output=True, text=True)
        assert out.returncode == 0 and version in out.stdout, (path, out.stdout, out.stderr)
    config = (root / "etc/containerd/config.toml").read_text()
    assert 'BinaryName = "/usr/local/sbin/runc"' in config
    assert 'sandbox = "registry.k8s.io/pause:3.10.1"' in config


def test_units_enabled(provisioned):
    for unit in ("containerd.service", "kubelet.service", "chrony.service",
                 "open-vm-tools.service"):
        assert systemd_enabled(provisioned, unit), unit


def test_kernel_settings(provisioned):
    root = provisioned
    modules = (root / "etc/modules-load.d/kubernetes.conf").read_text().split()
    assert modules == ["overlay", "br_netfilter"]
    sysctl = (root / "etc/sysctl.d/99-kubernetes.conf").read_text()
    for line in ("net.bridge.bridge-nf-call-iptables = 1", "net.ipv4.ip_forward = 1",
                 "net.bridge.bridge-nf-call-ip6tables = 1"):
        assert line in sysctl


def test_cloud_init_pinned_to_vmware(provisioned):
    root = provisioned
    cfg = (root / "etc/cloud/cloud.cfg.d/99_vmware-datasource.cfg").read_text()
    assert 'datasource_list: ["VMware"]' in cfg
    assert (root / "etc/cloud/ds-identify.cfg").read_text().strip().endswith("datasource: VMware")
    assert not (root / "etc/cloud/cloud.cfg.d/99-installer.cfg").exists()
    # cloud-init itself reads the same list (it is installed by the providers role)
    out = subprocess.run(["chroot", str(root), "python3", "-c",
                          "from cloudinit.stages import Init; i = Init(); i.read_cfg(); "
                          "print(i.cfg['datasource_list'])"], capture_output=True, text=True)
    assert out.stdout.strip() == "['VMware']", out.stderr


def test_sysprep(provisioned):
    root = provisioned
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "var/log/installer.log").read_text() == ""
    assert not (root / "var/log/old.log.1.gz").exists()
    assert not (root / "root/.bash_history").exists()
    assert not (root / "var/lib/cloud").exists()
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))


def test_no_build_user(provisioned):
    root = provisioned
    for name in ("passwd", "shadow", "group"):
        assert not any(line.startswith("builder:")
                       for line in (root / "etc" / name).read_text().splitlines()), name
    assert "builder" not in (root / "etc/group").read_text()
    assert not (root / "home/builder").exists()
    assert not (root / "etc/sudoers.d/builder").exists()
    sudoers = [(root / "etc/sudoers").read_text()]
    sudoers += [p.read_text() for p in (root / "etc/sudoers.d").iterdir()]
    assert not any("builder" in text for text in sudoers)
    assert not (root / "usr/local/sbin/imagebuilder-remove-build-user").exists()


def test_checksum_mismatch_fails_with_a_clear_message(debian_root, releases, tmp_path):
    """A wrong containerd_sha256 stops the containerd role and says which variable."""
    variables = {**releases.packer_vars(), "containerd_sha256": "0" * 64}
    playbook = tmp_path / "containerd.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: true\n  become: true\n"
        f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n"
        "  roles: [containerd]\n")
    run = run_playbook(playbook, debian_root, variables, tmp_path)
    assert run.returncode != 0
    assert "containerd_url/containerd_sha256 (packer/config/containerd.json): checksum mismatch" \
        in run.stdout, run.stdout[-4000:]
    assert "0" * 64 in run.stdout
