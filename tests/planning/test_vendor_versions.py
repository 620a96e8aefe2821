"""Vendor builds: ``v2.0.4+vmware.1``, ``v1.31.2-eks-1-31-9``. Given with their own URL and
sha256, any version is a label; the names keep upstream's form (``...-kube-v1.33.1+vmware.1``),
only what vSphere would store escaped (``/``, ``\\``, ``%``) or a file name cannot hold
becomes ``-``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from helpers.common import REPO, write_json
from helpers.planning import plan_for

from imagebuilder.config import naming
from imagebuilder.errors import InputError

SHA = {c: c * 64 for c in "0123"}
VENDOR = {
    "containerd_version": "v2.0.4+vmware.1", "containerd_sha256": SHA["0"],
    "containerd_url": "https://vendor.example.com/containerd-v2.0.4+vmware.1-linux-amd64.tar.gz",
    "runc_version": "v1.1.13-eks-1-31-9", "runc_sha256": SHA["1"],
    "runc_url": "https://vendor.example.com/runc",
    "crictl_version": "v1.31.2-eks-1-31-9", "crictl_sha256": SHA["2"],
    "crictl_url": "https://vendor.example.com/crictl.tar.gz",
    "kubernetes_cni_semver": "v1.5.1+vmware.1", "kubernetes_cni_http_checksum": SHA["3"],
    "kubernetes_cni_http_source": "https://vendor.example.com/cni",
    "kubernetes_semver": "v1.33.1+vmware.1", "kubernetes_series": "v1.33",
    "kubernetes_source_type": "http", "kubernetes_http_source": "https://vendor.example.com/k8s",
}
TARGET = "build-node-ova-local-ubuntu-2204"


def plan(checkout, tmp_path, values, target=TARGET):
    return plan_for(checkout, target, var_files=[write_json(tmp_path / "vendor.json", values)])


def test_vendor_versions_with_their_urls_and_checksums_are_labels(checkout, tmp_path):
    result = plan(checkout, tmp_path, VENDOR)
    got = {d.name: d for d in result.downloads}
    assert got["containerd"].url == VENDOR["containerd_url"]
    assert got["containerd"].checksum == f"sha256:{SHA['0']}"
    assert got["runc"].version == "v1.1.13-eks-1-31-9" and got["runc"].url == VENDOR["runc_url"]
    assert got["crictl"].checksum == f"sha256:{SHA['2']}"
    assert got["cni"].url == ("https://vendor.example.com/cni/v1.5.1+vmware.1/"
                              "cni-plugins-linux-amd64-v1.5.1+vmware.1.tgz")
    assert all("the version is a label" in got[c].source for c in ("containerd", "runc", "crictl"))
    assert got["cni"].source.startswith("kubernetes_cni_http_checksum from")  # v1.2.3+x: a release
    # upstream's names, + included
    assert result.merged.get("vm_name") == "ubuntu-2204-kube-v1.33.1+vmware.1"
    assert result.artifact_dir == checkout.output_dir / "ubuntu-2204-kube-v1.33.1+vmware.1"


@pytest.mark.parametrize("values, expected", [
    ({"containerd_version": "v2.0.4+vmware.1"},
     "containerd_version: 'v2.0.4+vmware.1' is not a containerd release version; write it as "
     "'1.2.3', or give containerd_url and containerd_sha256 (a vendor's build: its version is "
     "then a label)"),
    ({"runc_version": "v1.1.13-eks", "runc_url": "https://vendor.example.com/runc"},
     "give runc_url and runc_sha256"),
    ({"kubernetes_cni_semver": "cni-1.5.1", "kubernetes_cni_http_checksum": SHA["3"],
      "kubernetes_cni_http_source": "https://github.com/containernetworking/plugins/releases/"
      "download/"}, "give kubernetes_cni_http_source and kubernetes_cni_http_checksum"),
    ({"kubernetes_cni_semver": "1.5.1-vendor", "kubernetes_cni_http_checksum": SHA["3"]},
     "give kubernetes_cni_http_source and kubernetes_cni_http_checksum"),
    ({"crictl_version": "v1.31 beta/2", "crictl_url": "https://vendor.example.com/crictl",
      "crictl_sha256": SHA["2"]},
     "crictl_version: 'v1.31 beta/2' is not a version label; use letters, digits and "
     ". + _ ~ - (at most 128)"),
])
def test_without_url_and_checksum_a_version_must_be_a_release(checkout, tmp_path, values,
                                                               expected):
    with pytest.raises(InputError) as info:
        plan(checkout, tmp_path, values)
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("semver, name", [
    ("v1.33.1+vmware.1", "ubuntu-2204-kube-v1.33.1+vmware.1"),
    ("v1.31.2-eks-1-31-9", "ubuntu-2204-kube-v1.31.2-eks-1-31-9"),
    ("v1.31.2+a/b%c\\d e", "ubuntu-2204-kube-v1.31.2+a-b-c-d-e"),
])
def test_names_keep_upstreams_form(semver, name):
    assert naming.node_vm_name("ubuntu-2204", semver) == name


def render_containerd_config(version: str, tmp_path: Path) -> dict:
    """config.toml.j2 rendered by Ansible's template module on localhost."""
    variables = write_json(tmp_path / "vars.json", {
        "containerd_version": version, "containerd_cri_socket": "/run/containerd.sock",
        "pause_image": "registry.k8s.io/pause:3.10.1", "containerd_runc_path": "/usr/bin/runc",
        "containerd_image_pull_progress_timeout": "", "containerd_wasm_shims": [],
        "containerd_wasm_versions": {}, "containerd_gvisor_runtime": "false",
        "containerd_extra_toml": ""})
    out = tmp_path / "config.toml"
    template = REPO / "packer/ansible/roles/containerd/templates/config.toml.j2"
    run = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-c",
                          "local", "-i", "localhost,", "-m", "ansible.builtin.template", "-e",
                          f"@{variables}", "-a", f"src={template} dest={out}"],
                         capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    return tomllib.loads(out.read_text())


@pytest.mark.parametrize("version, layout", [("v2.0.4+vmware.1", 3), ("2.4.1", 3),
                                             ("v1.7.22-eks-1-31-9", 2), ("1.7.22", 2)])
def test_the_containerd_role_reads_the_numbers_of_a_label(tmp_path, version, layout):
    assert render_containerd_config(version, tmp_path)["version"] == layout
