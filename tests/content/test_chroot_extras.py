"""A real run of node.yml with every optional role of the node content turned on:
additional components (executables and image archives from the stand-in HTTP server,
registry images, an object from an S3-compatible server on 127.0.0.1), the ECR
credential provider, and the custom roles gpu, security and multipathd.

Registry pulls and archive imports go to a stand-in ctr that records its calls (there
is no containerd running in a chroot, nor a registry to reach).
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from helpers.chroot import (
    CTR_RECORD_DIR,
    KUBERNETES_IMAGES,
    PLAYBOOKS,
    LocalS3,
    StandInReleases,
    as_installed_os,
    chroot_unavailable,
    make_debian_root,
    mount_proc,
    node_vars,
    run_playbook,
    standin_extras,
    unmount_all,
)
from helpers.common import REPO

from imagebuilder.config.checkout import Checkout

pytestmark = [pytest.mark.chroot, pytest.mark.slow,
              pytest.mark.skipif(chroot_unavailable() is not None,
                                 reason=chroot_unavailable() or "")]

S3_OBJECT = b"#!/bin/sh\necho 'from the bucket'\n"
#: Declared by packer/node.json: these go through the var-file layering like a user's file.
PACKER_DECLARED = ("load_additional_components", "additional_executables",
                   "additional_executables_list", "additional_executables_destination_path",
                   "additional_registry_images", "additional_registry_images_list",
                   "additional_url_images", "additional_url_images_list")


@pytest.fixture(scope="module")
def s3() -> Iterator[LocalS3]:
    with LocalS3() as server:
        server.put("tools/from-s3.sh", S3_OBJECT)
        yield server


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Iterator[tuple[StandInReleases, dict]]:
    with StandInReleases(tmp_path_factory.mktemp("releases"), containerd="2.4.1",
                         runc="1.5.1", crictl="1.37.0", kubernetes="v1.37.1",
                         cni="v1.9.1") as served:
        extras = standin_extras(served)  # before packer_vars: it replaces the containerd archive
        yield served, extras


@pytest.fixture(scope="module")
def extras_run(releases, s3, tmp_path_factory):
    """A fresh Debian root after firstboot.yml and node.yml with every option on; the
    S3 keys reach ansible-playbook through its environment, as Packer's ansible_env_vars do."""
    served, extras = releases
    tmp = tmp_path_factory.mktemp("extras")
    root = tmp / "root"
    make_debian_root(root)
    try:
        mount_proc(root)
        as_installed_os(root)
        packer = {k: v for k, v in extras.items() if k in PACKER_DECLARED}
        packer |= {"node_custom_roles_pre": "gpu", "custom_role_names": "security multipathd",
                   "kubernetes_load_additional_imgs": "true"}
        variables = node_vars(Checkout(REPO), tmp, {**served.packer_vars(), **packer})
        variables |= {k: v for k, v in extras.items() if k not in PACKER_DECLARED}
        variables |= {"additional_s3": "true", "additional_s3_endpoint": s3.url,
                      "additional_s3_bucket": s3.bucket, "additional_s3_object": "tools/from-s3.sh",
                      "additional_s3_destination_path": "/opt/extra/bin/from-s3.sh"}
        env = {"ADDITIONAL_S3_ACCESS": s3.access_key, "ADDITIONAL_S3_SECRET": s3.secret_key,
               "ANSIBLE_LOG_PATH": str(tmp / "ansible.log"), "ANSIBLE_VERBOSITY": "3"}
        runs = []
        with environment(env):
            for playbook in ("firstboot.yml", "node.yml"):
                run = run_playbook(PLAYBOOKS / playbook, root, variables, tmp)
                assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
                runs.append(run)
        yield root, runs, (tmp / "ansible.log").read_text()
    finally:
        unmount_all(root)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment (run_playbook passes it on) for a while."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def chroot(root: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True)


def test_additional_executables(extras_run):
    root = extras_run[0]
    tool = root / "opt/extra/bin/node-tool"
    assert tool.stat().st_mode & 0o777 == 0o711
    assert "node-tool v0.1.0" in chroot(root, "/opt/extra/bin/node-tool").stdout


def test_s3_object(extras_run):
    root = extras_run[0]
    fetched = root / "opt/extra/bin/from-s3.sh"
    assert fetched.read_bytes() == S3_OBJECT


def test_s3_keys_never_in_the_output_or_log(extras_run, s3):
    _, runs, log = extras_run
    assert "Fetch s3://components/tools/from-s3.sh" in runs[1].stdout  # -vvv output is there
    for text in [log] + [r.stdout + r.stderr for r in runs]:
        assert s3.access_key not in text
        assert s3.secret_key not in text


def test_images_into_the_k8s_io_namespace(extras_run):
    root = extras_run[0]
    calls = (root / CTR_RECORD_DIR / "ctr.calls").read_text().splitlines()
    address = "--address=/var/run/containerd/containerd.sock --namespace=k8s.io"
    assert f"{address} images pull registry.example/one:1.0" in calls
    assert f"{address} images pull registry.example/two:2.0" in calls
    imports = [c for c in calls if c.startswith(f"{address} images import --no-unpack /")]
    assert len(imports) == 2
    imported = sorted((root / CTR_RECORD_DIR / Path(c.split()[-1]).name).read_bytes()
                      for c in imports)
    assert imported == [b"another stand-in image archive\n", b"stand-in image archive\n"]
    for call in imports:  # the downloaded archives are gone
        assert not (root / call.split()[-1].lstrip("/")).exists()


def test_release_images_loaded_with_the_additional_ones(extras_run, releases):
    """kubernetes_load_additional_imgs: the "http" install imports pause, coredns and etcd
    after the four control plane archives, each checked and then named as kubeadm
    names it (the release's names carry the architecture)."""
    root = extras_run[0]
    version = releases[0].versions["kubernetes"]
    calls = (root / CTR_RECORD_DIR / "ctr.calls").read_text().splitlines()
    address = "--address=/var/run/containerd/containerd.sock --namespace=k8s.io"
    imports = [c.split()[-1] for c in calls if c.startswith(f"{address} images import /")]
    assert [Path(p).name for p in imports] == list(KUBERNETES_IMAGES)
    for image in KUBERNETES_IMAGES:  # what was imported is what the release serves
        served = releases[0].root / f"release/{version}/bin/linux/amd64/{image}"
        assert (root / CTR_RECORD_DIR / image).read_bytes() == served.read_bytes()
    assert not any((root / p.lstrip("/")).exists() for p in imports)  # removed after
    tags = [c for c in calls if c.startswith(f"{address} images tag --force ")]
    assert tags == [f"{address} images tag --force registry.k8s.io/{i[:-4]}-amd64:{version} "
                    f"registry.k8s.io/{i[:-4]}:{version}" for i in KUBERNETES_IMAGES]


def test_ecr_credential_provider(extras_run):
    root = extras_run[0]
    binary = root / "opt/bin/ecr-credential-provider"
    assert "ecr-credential-provider v1.31.0" in chroot(root, "/opt/bin/ecr-credential-provider").stdout
    assert binary.stat().st_mode & 0o777 == 0o755
    config = yaml.safe_load(
        (root / "var/usr/ecr-credential-provider/ecr-credential-provider-config").read_text())
    assert config["kind"] == "CredentialProviderConfig"
    provider = config["providers"][0]
    assert provider["name"] == "ecr-credential-provider"
    assert provider["matchImages"] == ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"]
    assert provider["env"] == [{"name": "AWS_PROFILE", "value": "default"}]
    kubelet = (root / "etc/default/kubelet").read_text()
    line = next(x for x in kubelet.splitlines() if x.startswith("KUBELET_EXTRA_ARGS="))
    assert line.split("=", 1)[1].split() == [
        "--node-labels=imagebuilder.test/chroot=yes",
        "--image-credential-provider-config=/var/usr/ecr-credential-provider/ecr-credential-provider-config",
        "--image-credential-provider-bin-dir=/opt/bin"]


def test_gpu(extras_run):
    root = extras_run[0]
    blocklist = (root / "etc/modprobe.d/blocklist-nouveau.conf").read_text().splitlines()
    assert {"blacklist nouveau", "options nouveau modeset=0", "install nouveau /bin/false"} \
        <= set(blocklist)
    assert (root / "var/lib/imagebuilder-standin/nvidia.args").read_text().split() == \
        ["-s", "--dkms", "--no-cc-version-check"]
    assert "NVIDIA-SMI stand-in" in chroot(root, "/usr/bin/nvidia-smi").stdout
    assert not list((root / "tmp").glob("nvidia.*"))  # the installer is removed


def test_security(extras_run):
    root = extras_run[0]
    rules = (root / "etc/audit/rules.d/60-imagebuilder-security.rules").read_text()
    assert "-w /etc/kubernetes/ -p wa -k kubernetes" in rules
    assert chroot(root, "systemctl", "is-enabled", "auditd").stdout.strip() == "enabled"
    assert "Version: 0.58.1" in chroot(root, "/usr/local/bin/trivy").stdout
    assert not (root / "usr/local/bin/README.md").exists()  # only the binary is unpacked
    assert "falco version 0.39.2" in chroot(root, "/usr/bin/falco").stdout
    assert (root / "etc/falco/falco.yaml").is_file()
    assert chroot(root, "systemctl", "is-enabled", "falco-modern-bpf").stdout.strip() == "enabled"


def test_multipathd(extras_run):
    root = extras_run[0]
    assert "user_friendly_names yes" in (root / "etc/multipath.conf").read_text()


def test_wrong_s3_secret_fails_without_showing_the_keys(extras_run, s3, tmp_path):
    """Keys given as extra vars (upstream's way) and a wrong secret: the role stops with
    S3's error code and neither key is printed, even with -vvv."""
    root = extras_run[0]
    playbook = tmp_path / "s3.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: true\n  become: true\n"
        f"  vars_files: [{PLAYBOOKS / 'vars/main.yml'}]\n"
        "  roles: [load_additional_components]\n")
    wrong = "W" * 40
    variables = {"additional_s3": "true", "additional_s3_endpoint": s3.url,
                 "additional_s3_bucket": s3.bucket, "additional_s3_object": "tools/from-s3.sh",
                 "additional_s3_destination_path": "/opt/extra/wrong.sh",
                 "additional_s3_access": s3.access_key, "additional_s3_secret": wrong}
    with environment({"ANSIBLE_VERBOSITY": "3"}):
        run = run_playbook(playbook, root, variables, tmp_path)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "HTTP 403 (SignatureDoesNotMatch)" in out, run.stdout[-3000:]
    assert "additional_s3_* (packer/config/additional_components.json)" in out
    assert s3.access_key not in out and wrong not in out
    assert not (root / "opt/extra/wrong.sh").exists()
