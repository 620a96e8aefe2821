"""A real run of node.yml: a debootstrapped Debian root provisioned through Ansible's
chroot connection, release downloads served by stand-ins on 127.0.0.1.

Debian shares Ubuntu's apt code path (Ubuntu's archive is out of reach here).
The variables come from the ubuntu-2404 target exactly as node.json passes them
(packer/config + OS file + a user var file + ansible_user_vars), with only the
download URLs and checksums pointed at the stand-ins.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import tomllib
from helpers.chroot import (
    PLAYBOOKS,
    UPGRADE_PROBE,
    ForwardProxy,
    StandInReleases,
    add_gvisor,
    add_wasm_shims,
    as_installed_os,
    chroot_unavailable,
    installed_version,
    make_debian_root,
    mount_proc,
    node_vars,
    run_playbook,
    unmount_all,
    with_pending_upgrade,
)
from helpers.common import REPO

from imagebuilder.config.checkout import Checkout

pytestmark = [pytest.mark.chroot, pytest.mark.slow,
              pytest.mark.skipif(chroot_unavailable() is not None,
                                 reason=chroot_unavailable() or "")]

CUSTOM_USER = "capv-build"
#: containerd_additional_settings of the customized run, before base64.
#: The containerd.service the customized run downloads (containerd_service_url).
CUSTOM_UNIT = ("# a containerd.service of the user's\n[Unit]\nDescription=containerd (custom unit)\n"
               "[Service]\nExecStart=/usr/local/bin/containerd --log-level warn\n"
               "[Install]\nWantedBy=multi-user.target\n")
EXTRA_TOML = '[debug]\n  level = "debug"\n\n[metrics]\n  address = "127.0.0.1:1338"\n'
#: python_path of the customized run: what node.yml's tasks must see as PYTHONPATH.
PROBE_PYTHONPATH = "/opt/imagebuilder-probe/site-packages"
PROBE_ROLE = """\
- name: Record the TMPDIR and PYTHONPATH the play's tasks see
  ansible.builtin.shell: |
    printf '%s' "${TMPDIR:-unset}" > /root/imagebuilder-probe-tmpdir
    printf '%s' "${PYTHONPATH-unset}" > /root/imagebuilder-probe-pythonpath
  changed_when: true
"""


def installer_leftovers(root: Path) -> None:
    """What installers and a first boot leave that sysprep must remove or reset."""
    for path, text in {
        "lib/netplan/00-installer-config.yaml": "network: {version: 2}\n",
        "etc/netplan/50-cloud-init.yaml": "network: {version: 2}\n",
        "run/netplan/90-runtime.yaml": "network: {version: 2}\n",
        "etc/udev/rules.d/70-persistent-net.rules": 'SUBSYSTEM=="net", NAME="eth0"\n',
        "etc/sysconfig/network-scripts/ifcfg-ens192":
            "DEVICE=ens192\nHWADDR=00:50:56:aa:bb:cc\nUUID=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03\n"
            "ONBOOT=yes\n",
        "etc/NetworkManager/system-connections/ens192.nmconnection":
            "[connection]\nid=ens192\nuuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03\ntype=ethernet\n",
        "root/anaconda-ks.cfg": "# kickstart\n",
        "var/log/anaconda/anaconda.log": "install log\n",
        "etc/cloud/cloud-init.disabled": "",
        "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 build-vm-1234\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def build_vm_root(tmp_path_factory, user: str = "builder") -> Iterator[Path]:
    """A Debian stable root looking like a freshly installed build VM."""
    root = tmp_path_factory.mktemp("chroot") / "root"
    make_debian_root(root)
    try:
        mount_proc(root)
        as_installed_os(root, user)
        installer_leftovers(root)
        with_pending_upgrade(root)
        yield root
    finally:
        unmount_all(root)


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory) -> Iterator[Path]:
    """The root of the run with upstream's defaults."""
    yield from build_vm_root(tmp_path_factory)


@pytest.fixture(scope="module")
def custom_root(tmp_path_factory) -> Iterator[Path]:
    """The root of the run with every Debian-path customization on."""
    yield from build_vm_root(tmp_path_factory, CUSTOM_USER)


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Iterator[StandInReleases]:
    with StandInReleases(tmp_path_factory.mktemp("releases"), containerd="2.4.1",
                         runc="1.5.1", crictl="1.37.0", kubernetes="v1.37.1",
                         cni="v1.9.1") as served:
        yield served


@pytest.fixture(scope="module")
def provisioned(debian_root, releases, tmp_path_factory) -> Path:
    """``debian_root`` after successful runs of firstboot.yml and node.yml."""
    tmp = tmp_path_factory.mktemp("node")
    variables = node_vars(Checkout(REPO), tmp, releases.packer_vars())
    for playbook in ("firstboot.yml", "node.yml"):  # in Packer's order
        run = run_playbook(PLAYBOOKS / playbook, debian_root, variables, tmp)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return debian_root


@pytest.fixture(scope="module")
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as served:
        yield served


@pytest.fixture(scope="module")
def customized(custom_root, releases, proxy, tmp_path_factory) -> Path:
    """``custom_root`` after firstboot.yml and node.yml with every Debian-path
    customization of the node content turned on."""
    tmp = tmp_path_factory.mktemp("node-custom")
    (tmp / "roles/imagebuilder_probe/tasks").mkdir(parents=True)
    (tmp / "roles/imagebuilder_probe/tasks/main.yml").write_text(PROBE_ROLE)
    (tmp / "pip.conf").write_text("[global]\nindex-url = https://pypi.example.invalid/simple\n")
    unit = releases.root / "units/containerd.service"
    unit.parent.mkdir(exist_ok=True)
    unit.write_text(CUSTOM_UNIT)
    through_packer = {  # declared in node.json and passed by ansible-args.json
        **releases.packer_vars(),
        "containerd_service_url": f"{releases.url}/units/containerd.service",
        "containerd_service_sha256": hashlib.sha256(CUSTOM_UNIT.encode()).hexdigest(),
        "containerd_additional_settings": base64.b64encode(EXTRA_TOML.encode()).decode(),
        "http_proxy": proxy.url, "https_proxy": proxy.url, "no_proxy": "127.0.0.1,localhost",
        "pip_conf_file": str(tmp / "pip.conf"),
        "node_custom_roles_post": "imagebuilder_probe",
        "python_path": PROBE_PYTHONPATH,
        # a Packer variable: it reaches sysprep through the template's carriers
        "ssh_username": CUSTOM_USER,
    }
    variables = {
        **node_vars(Checkout(REPO), tmp, through_packer),
        **add_gvisor(releases), **add_wasm_shims(releases, {"spin": "v2", "slight": "v1"}),
        "containerd_enable_limit_no_file": "true",
        "containerd_image_pull_progress_timeout": "7m",
        "enable_containerd_audit": "true",
        "kubernetes_enable_automatic_resource_sizing": "true",
        "node_ansible_tmpdir": "/var/tmp/imagebuilder-node",
        "setup_os_upgrade": "false",
    }
    for playbook in ("firstboot.yml", "node.yml"):
        run = run_playbook(PLAYBOOKS / playbook, custom_root, variables, tmp,
                           roles_path=str(tmp / "roles"))
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return custom_root


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
    assert "Written by imagebuilder's containerd role" in containerd_unit  # the default URL: ours
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


def assert_user_gone(root: Path, user: str) -> None:
    for name in ("passwd", "shadow", "group"):
        assert not any(line.startswith(f"{user}:")
                       for line in (root / "etc" / name).read_text().splitlines()), name
    assert not (root / "home" / user).exists()
    assert not (root / "etc/sudoers.d" / user).exists()
    sudoers = [(root / "etc/sudoers").read_text()]
    sudoers += [p.read_text() for p in (root / "etc/sudoers.d").iterdir()]
    assert not any(user in text for text in sudoers)
    assert not (root / "usr/local/sbin/imagebuilder-remove-build-user").exists()


def test_no_build_user(provisioned):
    assert_user_gone(provisioned, "builder")


def test_the_build_user_is_the_one_ssh_username_names(customized):
    assert_user_gone(customized, CUSTOM_USER)


def run_containerd_role(root: Path, variables: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """The containerd role alone against ``root``."""
    playbook = tmp_path / "containerd.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: true\n  become: true\n"
        f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n"
        "  roles: [containerd]\n")
    return run_playbook(playbook, root, variables, tmp_path)


def test_checksum_mismatch_fails_with_a_clear_message(debian_root, releases, tmp_path):
    """A wrong containerd_sha256 stops the containerd role and says which variable."""
    variables = {**releases.packer_vars(), "containerd_sha256": "0" * 64}
    run = run_containerd_role(debian_root, variables, tmp_path)
    assert run.returncode != 0
    assert "containerd_url/containerd_sha256 (packer/config/containerd.json): checksum mismatch" \
        in run.stdout, run.stdout[-4000:]
    assert "0" * 64 in run.stdout


def test_containerd_service_url_without_checksum_is_refused(debian_root, releases, tmp_path):
    """A unit from a URL of the user's is a download like any other: no checksum, no install."""
    variables = {**releases.packer_vars(),
                 "containerd_service_url": f"{releases.url}/units/other.service"}
    run = run_containerd_role(debian_root, variables, tmp_path)
    assert run.returncode != 0
    assert "containerd_service_url/containerd_service_sha256: a URL and a checksum are both " \
        "required" in run.stdout, run.stdout[-4000:]


def containerd_config(root: Path) -> tuple[str, dict]:
    text = (root / "etc/containerd/config.toml").read_text()
    return text, tomllib.loads(text)


def test_containerd_defaults_as_upstream(provisioned):
    """conf.d imports and the certs.d registry directory; nothing opt-in is on."""
    root = provisioned
    text, config = containerd_config(root)
    assert config["version"] == 3
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]
    cri_images = config["plugins"]["io.containerd.cri.v1.images"]
    assert cri_images["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert "image_pull_progress_timeout" not in cri_images
    runtimes = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
    assert set(runtimes) == {"runc"}
    assert (root / "etc/containerd/conf.d").is_dir() and (root / "etc/containerd/certs.d").is_dir()
    dropins = root / "etc/systemd/system/containerd.service.d"
    assert not (dropins / "limit-nofile.conf").exists()
    assert not (dropins / "http-proxy.conf").exists()
    assert "containerd_additional_settings" not in text


def test_containerd_customized(customized, releases):
    root = customized
    text, config = containerd_config(root)
    # the base64 value arrived decoded, once, as TOML containerd reads
    assert config["debug"] == {"level": "debug"}
    assert config["metrics"] == {"address": "127.0.0.1:1338"}
    assert EXTRA_TOML in text
    assert base64.b64encode(EXTRA_TOML.encode()).decode() not in text
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]
    cri_images = config["plugins"]["io.containerd.cri.v1.images"]
    assert cri_images["image_pull_progress_timeout"] == "7m"
    runtimes = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
    assert runtimes["gvisor"] == {"runtime_type": "io.containerd.runsc.v1"}
    assert runtimes["spin"] == {"runtime_type": "io.containerd.spin.v2"}
    assert runtimes["slight"] == {"runtime_type": "io.containerd.slight.v1"}
    limit = (root / "etc/systemd/system/containerd.service.d/limit-nofile.conf").read_text()
    assert "LimitNOFILE=1048576" in limit
    # containerd_service_url: the unit it names, checked, instead of the role's own
    assert (root / "usr/lib/systemd/system/containerd.service").read_text() == CUSTOM_UNIT
    assert systemd_enabled(root, "containerd.service")
    for path, version in (("usr/bin/runsc", "20260101"),
                          ("usr/bin/containerd-shim-runsc-v1", "20260101"),
                          ("usr/bin/containerd-shim-spin-v2", "v0.11.1"),
                          ("usr/bin/containerd-shim-slight-v1", "v0.11.1")):
        out = subprocess.run(["chroot", str(root), "/" + path], capture_output=True, text=True)
        assert out.returncode == 0 and version in out.stdout, (path, out.stderr)


def test_build_proxy_used_then_removed(customized, proxy):
    """apt went through http_proxy during the build; neither apt's nor containerd's
    proxy setting is left in the image."""
    root = customized
    assert any("deb.debian.org" in url or "/dists/" in url for url in proxy.urls), proxy.urls[:5]
    assert not (root / "etc/systemd/system/containerd.service.d/http-proxy.conf").exists()
    assert not (root / "etc/apt/apt.conf.d/90imagebuilder-proxy").exists()


def test_additional_settings_must_be_base64(debian_root, releases, tmp_path):
    """Raw TOML (what this role took before) is refused with upstream's format named."""
    variables = {**releases.packer_vars(), "containerd_additional_settings": EXTRA_TOML}
    run = run_containerd_role(debian_root, variables, tmp_path)
    assert run.returncode != 0
    assert "containerd_additional_settings must be base64-encoded TOML" in run.stdout


def test_kubernetes_version_and_provenance(provisioned):
    root = provisioned
    assert (root / "etc/kubernetes-version").read_text() == "v1.37.1\n"
    # the documented node-conformance step reads it so
    out = subprocess.run(["chroot", str(root), "bash", "-c", "echo $(</etc/kubernetes-version)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "v1.37.1"
    release = dict(line.split("=", 1)
                   for line in (root / "etc/image-builder-release").read_text().splitlines())
    assert set(release) == {"IMAGE_BUILDER_VERSION", "IMAGE_BUILDER_COMMIT", "KUBERNETES_VERSION",
                            "BUILD_DATE"}
    assert release["KUBERNETES_VERSION"] == "v1.37.1"
    assert release["BUILD_DATE"].startswith("20")


def test_cloud_init_starts_after_containerd(provisioned):
    root = provisioned
    units = root / "usr/lib/systemd/system"
    for unit in ("cloud-config", "cloud-final"):
        assert (units / f"{unit}.service").exists() or (root / f"lib/systemd/system/{unit}.service").exists()
        dropin = configparser.ConfigParser(strict=False)
        dropin.read(root / f"etc/systemd/system/{unit}.service.d/boot-order.conf")
        assert dropin["Unit"]["After"].split() == ["containerd.service"], unit
        assert dropin["Unit"]["Wants"].split() == ["containerd.service"], unit
    # the VMware datasource pin stays
    assert (root / "etc/cloud/cloud.cfg.d/99_vmware-datasource.cfg").exists()


def test_node_baseline(provisioned):
    root = provisioned
    for package in ("auditd", "jq", "sysstat", "nftables", "python3-pip", "socat", "conntrack"):
        assert installed_version(root, package), package
    assert systemd_enabled(root, "auditd.service")
    sysctl = (root / "etc/sysctl.d/99-kubernetes.conf").read_text()
    assert "net.ipv4.tcp_congestion_control = bbr" in sysctl
    assert "rp_filter" not in sysctl  # Ubuntu only; this root is Debian
    rule = (root / "etc/udev/rules.d/90-etcd-tuning.rules").read_text()
    assert 'RUN+="/usr/local/bin/etcd-network-tuning.sh $name"' in rule
    script = root / "usr/local/bin/etcd-network-tuning.sh"
    assert script.stat().st_mode & 0o111
    out = subprocess.run(["chroot", str(root), "sh", "-n", "/usr/local/bin/etcd-network-tuning.sh"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not (root / "etc/audit/rules.d/containerd.rules").exists()
    assert not (root / "usr/libexec/kubernetes/kubelet-resource-sizing.sh").exists()


def test_os_upgraded_then_every_package_held(provisioned):
    root = provisioned
    assert installed_version(root, UPGRADE_PROBE) == "2"
    held = subprocess.run(["chroot", str(root), "apt-mark", "showhold"], capture_output=True,
                          text=True).stdout.split()
    installed = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}\n"],
                               capture_output=True, text=True).stdout.split()
    assert len(installed) > 100 and set(installed) <= set(held)
    assert {"auditd", "cloud-init", UPGRADE_PROBE} <= set(held)


def test_upgrade_can_be_turned_off(customized):
    assert installed_version(customized, UPGRADE_PROBE) == "1"


def test_node_customized(customized):
    root = customized
    rules = (root / "etc/audit/rules.d/containerd.rules").read_text()
    for watched in ("/etc/containerd/", "/usr/local/bin/containerd", "/usr/local/sbin/runc",
                    "/var/lib/containerd/"):
        assert f"-w {watched} -p rwxa -k containerd" in rules
    assert (root / "root/imagebuilder-probe-tmpdir").read_text() == "/var/tmp/imagebuilder-node"
    assert (root / "root/imagebuilder-probe-pythonpath").read_text() == PROBE_PYTHONPATH
    assert (root / "etc/pip.conf").read_text().startswith("[global]")


def test_automatic_resource_sizing(customized):
    root = customized
    dropin = (root / "usr/lib/systemd/system/kubelet.service.d/11-resource-sizing.conf").read_text()
    assert "ExecStartPre=/usr/libexec/kubernetes/kubelet-resource-sizing.sh" in dropin
    assert "--config-dir=/var/lib/kubelet/kubelet.conf.d" in dropin
    out = subprocess.run(["chroot", str(root), "/usr/libexec/kubernetes/kubelet-resource-sizing.sh"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    written = root / "var/lib/kubelet/kubelet.conf.d/50-imagebuilder-resource-sizing.conf"
    reserved = json.loads(written.read_text())["systemReserved"]
    mem_mib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:"))) // 1024
    assert reserved["memory"].endswith("Mi") and 255 <= int(reserved["memory"][:-2]) < mem_mib
    assert reserved["cpu"] == f"{expected_cpu_millicores(os.cpu_count() or 1)}m"
    # a systemReserved of the user's wins: the script then leaves none of its own
    (root / "var/lib/kubelet/config.yaml").write_text("systemReserved:\n  cpu: 500m\n")
    subprocess.run(["chroot", str(root), "/usr/libexec/kubernetes/kubelet-resource-sizing.sh"],
                   check=True)
    assert not written.exists()


def expected_cpu_millicores(cores: int) -> int:
    tenths = sum(600 if i == 0 else 100 if i == 1 else 50 if i < 4 else 25 for i in range(cores))
    return -(-tenths // 10)


def test_sysprep_resets_identity(provisioned):
    root = provisioned
    for gone in ("lib/netplan/00-installer-config.yaml", "etc/netplan/50-cloud-init.yaml",
                 "run/netplan/90-runtime.yaml", "etc/udev/rules.d/70-persistent-net.rules",
                 "root/anaconda-ks.cfg", "var/log/anaconda", "etc/cloud/cloud-init.disabled"):
        assert not (root / gone).exists(), gone
    ifcfg = (root / "etc/sysconfig/network-scripts/ifcfg-ens192").read_text()
    assert "HWADDR" not in ifcfg and "UUID" not in ifcfg and "DEVICE=ens192" in ifcfg
    nm = (root / "etc/NetworkManager/system-connections/ens192.nmconnection").read_text()
    assert "uuid=" not in nm and "id=ens192" in nm
    hosts = (root / "etc/hosts").read_text()
    assert "build-vm-1234" not in hosts and "127.0.0.1" in hosts and "localhost" in hosts
    assert (root / "etc/hostname").read_text() == ""
    assert not (root / "etc/pip.conf").exists()
