"""Versions decide the downloads: URL from the version, a checksum to match, or an input error."""

from __future__ import annotations

import pytest
from helpers.common import write_json
from helpers.planning import plan_for

from imagebuilder.errors import InputError
from imagebuilder.planning.downloads import KNOWN_SHA256

GH = "https://github.com"


def plan(checkout, tmp_path, values: dict, target: str = "build-node-ova-local-ubuntu-2404"):
    return plan_for(checkout, target, var_files=[write_json(tmp_path / "versions.json", values)])


def problems(checkout, tmp_path, values: dict) -> list[str]:
    with pytest.raises(InputError) as info:
        plan(checkout, tmp_path, values)
    assert info.value.exit_code == 2
    return info.value.problems


def by_name(result) -> dict:
    return {d.name: d for d in result.downloads}


def test_shipped_versions_use_the_checksums_we_keep(checkout, tmp_path):
    result = plan(checkout, tmp_path, {})
    got = by_name(result)
    assert got["containerd"].url == (f"{GH}/containerd/containerd/releases/download/v2.4.1/"
                                     "containerd-2.4.1-linux-amd64.tar.gz")
    assert got["containerd"].checksum == "sha256:" + KNOWN_SHA256[("containerd", "2.4.1", "amd64")]
    assert result.merged.get("containerd_sha256") == KNOWN_SHA256[("containerd", "2.4.1", "amd64")]
    assert result.merged.get("runc_url") == f"{GH}/opencontainers/runc/releases/download/v1.5.1/runc.amd64"
    assert result.merged.get("kubernetes_cni_http_checksum") == \
        "sha256:" + KNOWN_SHA256[("cni", "v1.9.1", "amd64")]


def test_changing_only_versions_changes_urls_and_checksums(checkout, tmp_path):
    result = plan(checkout, tmp_path, {"containerd_version": "2.3.2", "runc_version": "1.4.3",
                                       "crictl_version": "1.36.0", "kubernetes_cni_semver": "v1.2.0"})
    m = result.merged
    containerd = f"{GH}/containerd/containerd/releases/download/v2.3.2/containerd-2.3.2-linux-amd64.tar.gz"
    assert m.get("containerd_url") == containerd
    assert m.get("containerd_sha256") == containerd + ".sha256sum"  # get_url reads the file
    assert m.get("runc_url") == f"{GH}/opencontainers/runc/releases/download/v1.4.3/runc.amd64"
    assert m.get("runc_sha256") == f"{GH}/opencontainers/runc/releases/download/v1.4.3/runc.sha256sum"
    crictl = f"{GH}/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz"
    assert m.get("crictl_url") == crictl and m.get("crictl_sha256") == crictl + ".sha256"
    assert m.get("kubernetes_cni_http_checksum") == (
        f"sha256:{GH}/containernetworking/plugins/releases/download/v1.2.0/"
        "cni-plugins-linux-amd64-v1.2.0.tgz.sha256")
    assert "2.4.1" not in m.get("containerd_url") + m.get("containerd_sha256")


def test_a_given_checksum_is_used(checkout, tmp_path):
    digest = "ab" * 32
    result = plan(checkout, tmp_path, {"containerd_version": "2.3.2", "containerd_sha256": digest})
    assert by_name(result)["containerd"].checksum == f"sha256:{digest}"
    assert "containerd_sha256" not in result.generated  # the var file's value reaches Packer


def test_a_mirror_with_a_known_file_uses_the_kept_checksum(checkout, tmp_path):
    url = "https://mirror.corp/containerd-2.4.1-linux-amd64.tar.gz"
    result = plan(checkout, tmp_path, {"containerd_url": url})
    assert by_name(result)["containerd"].url == url
    assert result.merged.get("containerd_sha256") == KNOWN_SHA256[("containerd", "2.4.1", "amd64")]


def test_a_mirror_without_a_checksum_is_an_input_error(checkout, tmp_path):
    url = "https://mirror.corp/containerd-2.3.2-linux-amd64.tar.gz"
    [problem] = problems(checkout, tmp_path, {"containerd_version": "2.3.2", "containerd_url": url})
    assert problem.endswith(f"containerd_url: {url} is not containerd's release URL for 2.3.2 and "
                            "imagebuilder knows no checksum for it; set containerd_sha256 (the "
                            "sha256, or the URL of a checksum file)")


@pytest.mark.parametrize("values,expected", [
    ({"containerd_version": "v2.3.2"},
     "containerd_version: 'v2.3.2' is not a containerd release version; write it as '1.2.3'"),
    ({"kubernetes_cni_semver": "1.2.0"},
     "kubernetes_cni_semver: '1.2.0' is not a cni release version; write it as 'v1.2.3'"),
    ({"runc_sha256": ""}, ("runc_sha256: is empty here, which hides the checksum of runc 1.5.1; "
                           "remove the field or set the sha256")),
    ({"crictl_sha256": "md5:abc"}, ("crictl_sha256: 'md5:abc' is neither a sha256 digest "
                                    "(64 hex digits) nor the URL of a checksum file")),
    ({"kubernetes_semver": "v1.36.1", "kubernetes_deb_version": "1.36.1-1.1"},
     "kubernetes_series: v1.37 does not match kubernetes_semver v1.36.1"),
])
def test_bad_versions_and_checksums(checkout, tmp_path, values, expected):
    assert any(expected in p for p in problems(checkout, tmp_path, values)), expected


def test_kubernetes_series_drives_the_repositories(checkout, tmp_path):
    result = plan(checkout, tmp_path, {"kubernetes_semver": "v1.36.1", "kubernetes_series": "v1.36",
                                       "kubernetes_deb_version": "1.36.1-1.1"})
    repo = by_name(result)["kubernetes packages"]
    assert repo.url == "https://pkgs.k8s.io/core:/stable:/v1.36/deb/"
    assert repo.checksum == "signed: https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release.key"


def test_changing_only_the_kubernetes_version_is_refused_not_ignored(checkout, tmp_path):
    found = problems(checkout, tmp_path, {"kubernetes_semver": "v1.36.1"})
    assert any("kubernetes_deb_version: 1.37.1-1.1 is not a package of kubernetes_semver v1.36.1"
               in p for p in found)


def test_a_cni_mirror_uses_the_checksum_file_beside_it(checkout, tmp_path):
    result = plan(checkout, tmp_path, {"kubernetes_cni_http_source": "https://mirror.corp/cni",
                                       "kubernetes_cni_semver": "v1.3.0"})
    cni = by_name(result)["cni"]
    assert cni.url == "https://mirror.corp/cni/v1.3.0/cni-plugins-linux-amd64-v1.3.0.tgz"
    assert cni.checksum == f"sha256:{cni.url}.sha256"


def test_containerd_service_url_of_the_version_is_the_roles_own_unit(checkout, tmp_path):
    """The default (containerd's unit at the version's tag) downloads nothing: the role
    writes that unit itself. Another URL is a download, and needs its checksum."""
    assert "containerd.service" not in by_name(plan(checkout, tmp_path, {"containerd_version": "2.3.2"}))
    url = "https://mirror.corp/units/containerd.service"
    [problem] = problems(checkout, tmp_path, {"containerd_service_url": url})
    assert problem.endswith(f"containerd_service_url: {url} is not containerd's unit for 2.4.1 and "
                            "imagebuilder knows no checksum for it; set containerd_service_sha256 "
                            "(the sha256, or the URL of a checksum file)")
    result = plan(checkout, tmp_path, {"containerd_service_url": url,
                                       "containerd_service_sha256": "cd" * 32})
    unit = by_name(result)["containerd.service"]
    assert (unit.url, unit.checksum) == (url, "sha256:" + "cd" * 32)
