"""The RHEL, Photon and Flatcar paths of the node content, which cannot boot here:
their task files run for real against a debootstrapped root through the chroot
connection with the OS family forced (``ib_os``), the package tools they call
replaced by stand-ins that record their arguments. Each test asserts the file
the OS path writes: Flatcar's first_boot flag, Photon's opened ip4save/ip6save,
the dnf/tdnf package excludes, RHEL's transparent huge pages setting."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from helpers.chroot import (
    as_installed_os,
    chroot_unavailable,
    make_debian_root,
    mount_proc,
    run_playbook,
    serving,
    unmount_all,
)
from helpers.common import REPO

pytestmark = [pytest.mark.chroot, pytest.mark.slow,
              pytest.mark.skipif(chroot_unavailable() is not None,
                                 reason=chroot_unavailable() or "")]

PLAYBOOKS = REPO / "packer" / "ansible"
CALLS = "root/standin-calls"
#: What the stand-in rpm lists as installed.
RPMS = ["bash", "kernel", "open-vm-tools", "kubelet"]
#: Photon's shipped /etc/systemd/scripts/ip4save (ip6save has the same policies).
PHOTON_IPSAVE = """\
# init
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""


def _standin(root: Path, name: str, output: str = "") -> None:
    tool = root / "usr/local/bin" / name
    tool.write_text(f"#!/bin/sh\necho \"{name} $*\" >> /{CALLS}\nprintf '%b' '{output}'\n")
    tool.chmod(0o755)


@pytest.fixture(scope="module")
def os_root(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("os-paths") / "root"
    make_debian_root(root)
    try:
        mount_proc(root)
        as_installed_os(root)
        for name in ("dnf", "tdnf", "grubby"):
            _standin(root, name)
        _standin(root, "rpm", "\\n".join(RPMS) + "\\n")
        yield root
    finally:
        unmount_all(root)


def run_role(root: Path, tmp_path: Path, os_family: str, role: str, tasks_from: str = "main",
             extra: dict[str, str] | None = None):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: true\n  become: true\n"
        f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n"
        "  tasks:\n    - name: The role's tasks\n"
        f"      ansible.builtin.include_role:\n        name: {role}\n"
        f"        tasks_from: {tasks_from}\n")
    run = run_playbook(playbook, root, {"ib_os": os_family, **(extra or {})}, tmp_path)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return run


def calls(root: Path) -> list[str]:
    path = root / CALLS
    return path.read_text().splitlines() if path.exists() else []


def test_flatcar_sysprep_makes_the_clone_run_ignition(os_root, tmp_path):
    root = os_root
    (root / "boot/flatcar").mkdir(parents=True, exist_ok=True)
    for ign in ("usr/share/oem/config.ign", "oem/config.ign"):
        (root / ign).parent.mkdir(parents=True, exist_ok=True)
        (root / ign).write_text('{"ignition": {"version": "3.4.0"}}')
    run_role(root, tmp_path, "flatcar", "sysprep", "flatcar")
    assert (root / "boot/flatcar/first_boot").is_file()
    assert not (root / "usr/share/oem/config.ign").exists()
    assert not (root / "oem/config.ign").exists()


def test_photon_setup_opens_the_saved_firewall(os_root, tmp_path):
    root = os_root
    scripts = root / "etc/systemd/scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    for name in ("ip4save", "ip6save"):
        (scripts / name).write_text(PHOTON_IPSAVE)
    repos = root / "etc/yum.repos.d"
    repos.mkdir(parents=True, exist_ok=True)
    for name in ("photon.repo", "site.repo"):
        (repos / name).write_text(f"[{name}]\n")
    (root / CALLS).unlink(missing_ok=True)
    run_role(root, tmp_path, "photon", "setup", "photon",
             {"disable_public_repos": "true", "extra_repos": "/srv/site.repo",
              "extra_rpms": "jq tar"})
    for name in ("ip4save", "ip6save"):
        text = (scripts / name).read_text()
        assert ":INPUT ACCEPT [0:0]" in text and "INPUT DROP" not in text, name
        assert ":FORWARD DROP [0:0]" in text  # only the input policy changes, as upstream
    assert sorted(p.name for p in repos.iterdir()) == ["photon.repo.disabled", "site.repo"]
    assert calls(root) == ["tdnf distro-sync -y --refresh", "tdnf install -y jq tar"]


def test_photon_kubernetes_packages_from_the_rpm_repository(os_root, tmp_path):
    """Photon's pkg install: the Kubernetes repository (no dnf-style excludes) and
    tdnf installing the versions asked for."""
    root = os_root
    (root / CALLS).unlink(missing_ok=True)
    (root / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    run_role(root, tmp_path, "photon", "kubernetes", "photon",
             {"kubernetes_rpm_version": "1.37.1", "kubernetes_cni_from_release": "false",
              "kubernetes_cni_rpm_version": "1.9.0", "crictl_source_type": "pkg",
              "kubernetes_rpm_repo": "https://pkgs.example/rpm/"})
    repo = (root / "etc/yum.repos.d/kubernetes.repo").read_text()
    assert "baseurl = https://pkgs.example/rpm/" in repo and "exclude" not in repo
    assert calls(root) == ["tdnf install -y kubelet-1.37.1 kubeadm-1.37.1 kubectl-1.37.1 "
                           "kubernetes-cni-1.9.0 cri-tools"]


def test_photon_sysprep_freezes_packages_and_locks_root(os_root, tmp_path):
    root = os_root
    (root / "etc/tdnf").mkdir(parents=True, exist_ok=True)
    (root / "etc/tdnf/tdnf.conf").write_text("[main]\ngpgcheck=1\nproxy=http://build-proxy:3128\n")
    run_role(root, tmp_path, "photon", "sysprep", "photon")
    conf = (root / "etc/tdnf/tdnf.conf").read_text().splitlines()
    assert f"excludepkgs={' '.join(sorted(RPMS))}" in conf
    assert not any(line.startswith("proxy=") for line in conf)
    assert "tdnf clean all" in calls(root)
    shadow = {line.split(":")[0]: line.split(":")[1]
              for line in (root / "etc/shadow").read_text().splitlines()}
    assert shadow["root"].startswith("!")


def test_redhat_sysprep_excludes_packages_from_dnf(os_root, tmp_path):
    root = os_root
    (root / "etc/dnf").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/dnf.conf").write_text("[main]\ngpgcheck=1\nexclude=old\n")
    run_role(root, tmp_path, "redhat", "sysprep", "redhat")
    conf = (root / "etc/dnf/dnf.conf").read_text().splitlines()
    assert conf[0] == "[main]"
    assert f"exclude={' '.join(sorted(RPMS))}" in conf and "exclude=old" not in conf
    assert "dnf clean all" in calls(root)


def test_redhat_transparent_huge_pages_madvise(os_root, tmp_path):
    root = os_root
    grub = root / "etc/default/grub"
    grub.write_text('GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="crashkernel=auto rhgb quiet"\n')
    run_role(root, tmp_path, "redhat", "node", "redhat")
    run_role(root, tmp_path, "redhat", "node", "redhat")  # a second run adds nothing
    assert 'GRUB_CMDLINE_LINUX="crashkernel=auto rhgb quiet transparent_hugepage=madvise"' \
        in grub.read_text().splitlines()
    assert "grubby --update-kernel=ALL --args=transparent_hugepage=madvise" in calls(root)



def test_flatcar_gpu_enables_the_nvidia_extension(os_root, tmp_path):
    """gpu_vendor nvidia on Flatcar: the driver's system extension, no nouveau blocklist
    and no installer (the role's main dispatching to flatcar.yml)."""
    root = os_root
    (root / "etc/flatcar").mkdir(parents=True, exist_ok=True)
    run_role(root, tmp_path, "flatcar", "gpu", "main",
             {"gpu_vendor": "nvidia", "gpu_flatcar_nvidia_sysext_name": "nvidia-drivers-999"})
    assert (root / "etc/flatcar/enabled-sysext.conf").read_text() == "nvidia-drivers-999\n"
    assert not (root / "etc/modprobe.d/blocklist-nouveau.conf").exists()
    assert not list((root / "tmp").glob("nvidia.*"))

# --- the guestinfo datasource for a cloud-init older than 21.3 (RHEL family) ---

#: Stands in for cloud-init-vmware-guestinfo's install.sh: records the variables the
#: role must pass it, where the test can read them.
GUESTINFO_INSTALL = """#!/bin/sh
mkdir -p /var/lib/imagebuilder-standin
printf 'REPO_SLUG=%s\\nGIT_REF=%s\\n' "$REPO_SLUG" "$GIT_REF" > /var/lib/imagebuilder-standin/guestinfo.env
"""


@pytest.fixture()
def guestinfo_served(tmp_path) -> Iterator[tuple[str, list[str]]]:
    """The stand-in install.sh served on 127.0.0.1 under upstream's <slug>/<ref>/ layout;
    yields the slug URL and the list of paths requested."""
    site = tmp_path / "site"
    (site / "vmware/guestinfo/v9.9.9").mkdir(parents=True)
    (site / "vmware/guestinfo/v9.9.9/install.sh").write_text(GUESTINFO_INSTALL)
    with serving(site) as (url, requested):
        yield f"{url}/vmware/guestinfo", requested


def _cloud_init_rpm(root: Path, version: str) -> None:
    """The stand-in rpm reports cloud-init ``version`` when queried for it."""
    _standin(root, "rpm", "\\n".join(RPMS) + "\\n")
    tool = root / "usr/local/bin/rpm"
    tool.write_text(tool.read_text().replace(
        "printf", f"case \"$*\" in *' cloud-init') printf '{version}'; exit 0;; esac\nprintf", 1))


@pytest.mark.parametrize("version", ["20.3", "23.4"])
def test_redhat_guestinfo_datasource_only_for_old_cloud_init(os_root, tmp_path, guestinfo_served,
                                                             version):
    root = os_root
    slug, requested = guestinfo_served
    record = root / "var/lib/imagebuilder-standin/guestinfo.env"
    record.unlink(missing_ok=True)
    _cloud_init_rpm(root, version)
    try:
        extra = {"guestinfo_datasource_slug": slug, "guestinfo_datasource_ref": "v9.9.9",
                 "guestinfo_datasource_script": f"{slug}/v9.9.9/install.sh"}
        playbook = tmp_path / "play.yml"
        playbook.write_text(
            "- hosts: all\n  gather_facts: false\n  become: true\n"
            f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n  tasks:\n"
            + "".join(f"    - name: providers {name}\n      ansible.builtin.include_role:\n"
                      f"        name: providers\n        tasks_from: {name}\n"
                      for name in ("guestinfo", "cloud_init")))
        run = run_playbook(playbook, root, {"ib_os": "redhat", **extra}, tmp_path)
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    finally:
        _standin(root, "rpm", "\\n".join(RPMS) + "\\n")
    pinned = (root / "etc/cloud/cloud.cfg.d/99_vmware-datasource.cfg").read_text()
    if version == "20.3":
        assert requested == ["/vmware/guestinfo/v9.9.9/install.sh"]
        assert record.read_text().splitlines() == [f"REPO_SLUG={slug}", "GIT_REF=v9.9.9"]
        assert not (root / "tmp/cloud-init-vmware.sh").exists()
        assert 'datasource_list: ["VMwareGuestInfo"]' in pinned
    else:
        assert requested == []
        assert not record.exists()
        assert 'datasource_list: ["VMware"]' in pinned


# --- enable_disk_packing: zeros over the free space (upstream's optimize-disk.sh) ---

MARKER = b"IMAGEBUILDER-DELETED-DATA-"


@pytest.fixture()
def small_disk(os_root, tmp_path) -> Iterator[tuple[Path, str]]:
    """A 32 MiB ext4 file system loop-mounted in the chroot, holding the blocks of a
    deleted 8 MiB file full of MARKER (what an install leaves on a disk)."""
    image = tmp_path / "disk.img"
    with image.open("wb") as out:
        out.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-E", "nodiscard", str(image)], check=True)
    inside = "/mnt/imagebuilder-packing"
    mnt = os_root / inside.lstrip("/")
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop,nodiscard", str(image), str(mnt)], check=True)
    try:
        (mnt / "deleted.bin").write_bytes(MARKER * ((8 << 20) // len(MARKER)))
        os.sync()
        (mnt / "deleted.bin").unlink()
        os.sync()
        yield image, inside
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_disk_packing_zeroes_the_deleted_blocks(os_root, tmp_path, small_disk, enabled):
    image, inside = small_disk
    extra = {"enable_disk_packing": enabled,
             "sysprep_disk_packing_paths": [inside, "/", "/nonexistent"]}
    run = run_role(os_root, tmp_path, "debian", "sysprep", "disk_packing", extra)
    subprocess.run(["umount", str(os_root / inside.lstrip("/"))], check=True)
    data = image.read_bytes()
    recap = run.stdout.splitlines()[-2]
    if enabled == "true":
        assert "changed=1" in recap
        assert MARKER not in data
        assert "skipped /: the host's file system (chroot)" in run.stdout  # never filled
    else:
        assert "changed=0" in recap
        assert data.count(MARKER) > 1000  # the deleted file's blocks are still there
def test_python_path_is_pythonpath_only_when_set(os_root, tmp_path, monkeypatch):
    """node.yml's environment (ib_node_env) exports python_path as PYTHONPATH, as
    upstream's node.yml does; empty, it exports no PYTHONPATH at all."""
    root = os_root
    # ansible-playbook passes its own environment on: the PYTHONPATH a developer runs
    # the tests with must not stand in for the one the play sets.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    playbook = tmp_path / "env.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  become: true\n"
        f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n"
        "  environment: \"{{ ib_node_env }}\"\n"
        "  tasks:\n    - name: Record PYTHONPATH\n"
        "      ansible.builtin.shell: printf '%s' \"${PYTHONPATH-unset}\" > /root/pythonpath\n"
        "      changed_when: true\n")
    for value, seen in (("/opt/bin/builder-env/site-packages", "/opt/bin/builder-env/site-packages"),
                        ("", "unset")):
        run = run_playbook(playbook, root, {"python_path": value}, tmp_path)
        assert run.returncode == 0, run.stdout[-3000:]
        assert (root / "root/pythonpath").read_text() == seen


#: A stand-in kubeadm: records its arguments and the --config file it was handed.
KUBEADM = """#!/bin/sh
echo "kubeadm $*" >> /root/standin-calls
cp /etc/kubeadm.yml /root/kubeadm-config-seen
"""


@pytest.mark.parametrize("os_family", ["debian", "flatcar"])
def test_kubeadm_template_configures_the_image_pull(os_root, tmp_path, os_family):
    """kubeadm_template is rendered to /etc/kubeadm.yml and the pull reads it
    (--config), as upstream's kubeadmpull.yml; only Flatcar keeps the file."""
    root = os_root
    bindir = root / "opt/standin-kubeadm"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "kubeadm").write_text(KUBEADM)
    (bindir / "kubeadm").chmod(0o755)
    (root / CALLS).unlink(missing_ok=True)
    base = {"ib_live": "true", "kubernetes_bin_dir": "/opt/standin-kubeadm",
            "kubernetes_semver": "v1.37.1", "kubernetes_container_registry": "registry.example:5000"}
    run_role(root, tmp_path, os_family, "kubernetes", "kubeadm_pull", base)
    assert calls(root) == ["kubeadm config images pull --config /etc/kubeadm.yml "
                           "--cri-socket unix:///var/run/containerd/containerd.sock"]
    seen = (root / "root/kubeadm-config-seen").read_text()
    assert "apiVersion: kubeadm.k8s.io/v1beta4" in seen
    assert "kubernetesVersion: v1.37.1" in seen and "imageRepository: registry.example:5000\n" in seen
    assert (root / "etc/kubeadm.yml").exists() == (os_family == "flatcar")

    custom = tmp_path / "kubeadm-custom.yml"  # an absolute path, outside the role
    custom.write_text("kind: ClusterConfiguration\nkubernetesVersion: {{ kubernetes_semver }}-custom\n")
    run_role(root, tmp_path, os_family, "kubernetes", "kubeadm_pull",
             {**base, "kubeadm_template": str(custom)})
    assert (root / "root/kubeadm-config-seen").read_text() == \
        "kind: ClusterConfiguration\nkubernetesVersion: v1.37.1-custom\n"


@pytest.mark.parametrize("target, added", [("virt", ["open-vm-tools"]), ("raw", [])])
def test_build_target_packages_on_photon(os_root, tmp_path, target, added):
    """build_target adds upstream's common_<target>_photon_rpms to the node packages."""
    root = os_root
    (root / CALLS).unlink(missing_ok=True)
    run_role(root, tmp_path, "photon", "node", "packages", {"build_target": target})
    [install] = [c for c in calls(root) if c.startswith("tdnf install -y ")]
    assert install.split()[3:] == PHOTON_BASELINE + added


#: node_packages.photon of the node role, in its order.
PHOTON_BASELINE = yaml.safe_load(
    (PLAYBOOKS / "roles/node/defaults/main.yml").read_text())["node_packages"]["photon"]


#: A play running the node role's target_packages tasks.
TARGET_PACKAGES_PLAY = (
    "- hosts: all\n  gather_facts: true\n  become: true\n"
    f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n"
    "  tasks:\n    - name: The role's tasks\n"
    "      ansible.builtin.include_role:\n        name: node\n"
    "        tasks_from: target_packages\n")


@pytest.mark.parametrize("distribution, os_family, target, added", [
    ("Ubuntu", "debian", "virt", ["linux-cloud-tools-virtual", "linux-tools-virtual", "open-vm-tools"]),
    ("Ubuntu", "debian", "raw", ["linux-cloud-tools-generic", "linux-tools-generic"]),
    ("Rocky", "redhat", "virt", ["open-vm-tools"]),
    ("Rocky", "redhat", "raw", []),
])
def test_build_target_packages(os_root, tmp_path, distribution, os_family, target, added):
    """The packages the role adds for build_target on Ubuntu and the RHEL family
    (their installs run apt and dnf, which cannot be stood in for here)."""
    root = os_root
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        TARGET_PACKAGES_PLAY +
        "    - name: Record them\n      ansible.builtin.copy:\n"
        "        content: \"{{ node_target_packages | to_json }}\"\n"
        "        dest: /root/target-packages.json\n        mode: '0644'\n")
    run = run_playbook(playbook, root, {"ib_os": os_family, "ansible_distribution": distribution,
                                        "build_target": target}, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    assert json.loads((root / "root/target-packages.json").read_text()) == added


def test_build_target_unknown_is_refused(os_root, tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(TARGET_PACKAGES_PLAY)
    run = run_playbook(playbook, os_root, {"ib_os": "debian", "build_target": "metal"}, tmp_path)
    assert run.returncode != 0
    assert "build_target must be one of virt, raw (is metal)" in run.stdout
