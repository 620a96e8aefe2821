"""What the roles download, worked out from the versions before anything runs.

``containerd_version``, ``runc_version``, ``crictl_version`` and
``kubernetes_cni_semver`` decide the URLs (as upstream's roles build them),
and every URL gets a sha256 from, in this order:

1. the ``*_sha256`` variable (``kubernetes_cni_http_checksum`` for the CNI
   plugins) when a var file or ``-var`` sets it: a digest, or the URL of a
   checksum file;
2. ``KNOWN_SHA256``, the digests we keep for the versions we ship and test;
3. the checksum file the project publishes next to each release (what
   upstream's roles use), fetched and checked by Ansible's ``get_url``.

A URL that is not the project's release URL (a mirror) and has no known
digest must come with its checksum: that is an input error, reported before
any VM starts. Changing only a version therefore changes the URL and its
checksum together; it never installs the old version.

A vendor's build (``v2.0.4+vmware.1``, ``v1.31.2-eks-1-31-9``) comes with its own URL
and sha256: when a var file gives both (the CNI: ``kubernetes_cni_http_source`` and
``kubernetes_cni_http_checksum``), the version is a label, any string of letters,
digits and ``. + _ ~ -``; only without them must it be the project's release form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: sha256 digests of release artifacts we know: (component, version, arch) -> digest.
KNOWN_SHA256: dict[tuple[str, str, str], str] = {
    ("containerd", "2.4.1", "amd64"):
        "d65eda6a188aac1006848d8060099be88ba9c4bcddbfd9a23a961194710d0dd4",
    ("runc", "1.5.1", "amd64"):
        "177df879d50c913eb205e898d5c1c05a18f574053c0ce5524c471208eaf06f6f",
    ("crictl", "1.37.0", "amd64"):
        "67c983ee8a6bbce73d39a186e633c5fe4f8a70e62171ac3bd92a9c1b2c601670",
    ("cni", "v1.9.1", "amd64"):
        "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303",
}

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_URL = re.compile(r"^(https?|file)://")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$")
#: A vendor's version label: it names files and URL paths, so no "/", space or quote.
_LABEL = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_~-]{0,127}$")


@dataclass(frozen=True)
class Component:
    """One release artifact a role downloads, and the variables that describe it."""

    name: str
    version_var: str
    url_var: str | None          # None: the role builds the URL itself (CNI)
    checksum_var: str
    checksum_prefix: str         # what the role puts before the value: "sha256:" or ""
    v_prefixed: bool             # the version is written "v1.2.3" (CNI) or "1.2.3"
    release_url: Callable[[str, str, dict[str, str]], str]
    checksum_file: Callable[[str, str, str], str]


def _gh(repo: str) -> str:
    return f"https://github.com/{repo}/releases/download"


#: The CNI plugins' project: packer/config/cni.json's kubernetes_cni_http_source is its
#: release URL, not a vendor's.
CNI_PLUGINS = "containernetworking/plugins"


COMPONENTS = (
    Component("containerd", "containerd_version", "containerd_url", "containerd_sha256", "", False,
              lambda v, a, _: (f"{_gh('containerd/containerd')}/v{v}/"
                               f"containerd-{v}-linux-{a}.tar.gz"),
              lambda url, v, a: f"{url}.sha256sum"),
    Component("runc", "runc_version", "runc_url", "runc_sha256", "", False,
              lambda v, a, _: f"{_gh('opencontainers/runc')}/v{v}/runc.{a}",
              lambda url, v, a: f"{_gh('opencontainers/runc')}/v{v}/runc.sha256sum"),
    Component("crictl", "crictl_version", "crictl_url", "crictl_sha256", "", False,
              lambda v, a, _: (f"{_gh('kubernetes-sigs/cri-tools')}/v{v}/"
                               f"crictl-v{v}-linux-{a}.tar.gz"),
              lambda url, v, a: f"{url}.sha256"),
    Component("cni", "kubernetes_cni_semver", None, "kubernetes_cni_http_checksum", "sha256:",
              True,
              lambda v, a, values: (f"{values.get('kubernetes_cni_http_source', '').rstrip('/')}"
                                    f"/{v}/cni-plugins-linux-{a}-{v}.tgz"),
              lambda url, v, a: f"{url}.sha256"),
)


@dataclass(frozen=True)
class Download:
    """A resolved download: what, which version, from where, checked how."""

    name: str
    version: str
    url: str
    checksum: str   # "sha256:<digest>" or "sha256:<URL of a checksum file>"
    source: str     # where the checksum comes from, in words

    def line(self) -> str:
        """One line for the dry run: what, which version, from where, checked how."""
        return f"{self.name} {self.version}: {self.url} ({self.checksum}; {self.source})"


@dataclass
class Resolution:
    """The downloads, the values the template must receive, and the problems found."""

    downloads: list[Download]
    values: dict[str, str]
    problems: list[str]


def resolve(values: dict[str, str], origin: Callable[[str], str],
            user_set: Callable[[str], bool]) -> Resolution:
    """Work out every component's URL and checksum from the resolved ``values``.

    ``origin(name)`` names the file that set a variable (for messages);
    ``user_set(name)`` tells whether a var file or flag set it (as opposed to
    the template default). Returned ``values`` are what to hand Packer for
    the variables nobody set (URL and checksum variables).
    """
    arch = values.get("kubernetes_goarch") or values.get("distro_arch") or "amd64"
    result = Resolution([], {}, [])
    for comp in COMPONENTS:
        found = _component(comp, values, arch, origin, user_set)
        if isinstance(found, str):
            result.problems.append(found)
            continue
        result.downloads.append(found)
        if comp.url_var and not user_set(comp.url_var):
            result.values[comp.url_var] = found.url
        if not values.get(comp.checksum_var, "").strip():
            result.values[comp.checksum_var] = \
                comp.checksum_prefix + found.checksum[len("sha256:"):]
    unit = _containerd_service(values, origin, user_set)
    if isinstance(unit, Download):
        result.downloads.append(unit)
    elif unit:
        result.problems.append(unit)
    result.downloads += _kubernetes(values, arch)
    return result


def _component(comp: Component, values: dict[str, str], arch: str,
               origin: Callable[[str], str], user_set: Callable[[str], bool]) -> Download | str:
    """One component's download, or the problem line that stops it."""
    version = values.get(comp.version_var, "").strip()
    bare = version[1:] if comp.v_prefixed and version.startswith("v") else version
    if not _VERSION.match(bare) or (comp.v_prefixed and not version.startswith("v")):
        return _vendor_build(comp, values, version, arch, origin, user_set)
    standard = comp.release_url(bare if not comp.v_prefixed else version, arch, values)
    url = standard
    if comp.url_var and user_set(comp.url_var) and values.get(comp.url_var):
        url = values[comp.url_var]
    given = values.get(comp.checksum_var, "").strip()
    if user_set(comp.checksum_var) and not given:
        return (f"{origin(comp.checksum_var)}: {comp.checksum_var}: is empty here, which "
                f"hides the checksum of {comp.name} {version}; remove the field or set the "
                "sha256")
    known = KNOWN_SHA256.get((comp.name, version, arch))
    if given:
        checksum = _given_checksum(given)
        if not _checksum_ok(checksum):
            return (f"{origin(comp.checksum_var)}: {comp.checksum_var}: {given!r} is neither "
                    "a sha256 digest (64 hex digits) nor the URL of a checksum file")
        source = f"{comp.checksum_var} from {origin(comp.checksum_var)}"
    elif known and url.rsplit("/", 1)[-1] == standard.rsplit("/", 1)[-1]:
        checksum, source = f"sha256:{known}", "the checksum imagebuilder keeps for this version"
    elif url == standard or comp.url_var is None:
        checksum = f"sha256:{comp.checksum_file(url, bare, arch)}"
        source = "the checksum file published with the release"
    else:
        return (f"{origin(comp.url_var)}: {comp.url_var}: {url} is not {comp.name}'s release "
                f"URL for {version} and imagebuilder knows no checksum for it; set "
                f"{comp.checksum_var} (the sha256, or the URL of a checksum file)")
    return Download(comp.name, version, url, checksum, source)


def _vendor_build(comp: Component, values: dict[str, str], version: str, arch: str,
                  origin: Callable[[str], str], user_set: Callable[[str], bool]) -> Download | str:
    """A version not in the project's release form: a vendor's build, whose URL and checksum
    a var file gives (the version is then a label), or the problem line that stops it."""
    url_var = comp.url_var or "kubernetes_cni_http_source"
    url = values.get(url_var, "").strip()
    given = values.get(comp.checksum_var, "").strip()
    own_url = user_set(url_var) and url and url.rstrip("/") != _gh(CNI_PLUGINS)
    if not (own_url and given):
        form = "v1.2.3" if comp.v_prefixed else "1.2.3"
        return (f"{origin(comp.version_var)}: {comp.version_var}: {version!r} is not a "
                f"{comp.name} release version; write it as {form!r}, or give {url_var} and "
                f"{comp.checksum_var} (a vendor's build: its version is then a label)")
    if not _LABEL.match(version):
        return (f"{origin(comp.version_var)}: {comp.version_var}: {version!r} is not a "
                "version label; use letters, digits and . + _ ~ - (at most 128)")
    checksum = _given_checksum(given)
    if not _checksum_ok(checksum):
        return (f"{origin(comp.checksum_var)}: {comp.checksum_var}: {given!r} is neither "
                "a sha256 digest (64 hex digits) nor the URL of a checksum file")
    url = values[comp.url_var] if comp.url_var else comp.release_url(version, arch, values)
    return Download(comp.name, version, url, checksum,
                    f"{comp.checksum_var} from {origin(comp.checksum_var)}; the version is a "
                    "label")


def containerd_service_release_url(version: str) -> str:
    """Containerd's own unit at the version's tag: upstream's containerd_service_url default."""
    return ("https://raw.githubusercontent.com/containerd/containerd/refs/tags/"
            f"v{version}/containerd.service")


def _containerd_service(values: dict[str, str], origin: Callable[[str], str],
                        user_set: Callable[[str], bool]) -> Download | str | None:
    """containerd_service_url: containerd's own unit for the version (or empty) is the
    one the containerd role writes itself; any other URL is downloaded, and needs
    containerd_service_sha256 (upstream has no checksum for it)."""
    version = values.get("containerd_version", "").strip()
    url = values.get("containerd_service_url", "").strip()
    if not url or url == containerd_service_release_url(version):
        return None
    given = values.get("containerd_service_sha256", "").strip()
    if not given:
        where = origin("containerd_service_url") if user_set("containerd_service_url") \
            else "node.json"
        return (f"{where}: containerd_service_url: {url} is not containerd's unit for "
                f"{version} and imagebuilder knows no checksum for it; set "
                "containerd_service_sha256 (the sha256, or the URL of a checksum file)")
    checksum = _given_checksum(given)
    if not _checksum_ok(checksum):
        return (f"{origin('containerd_service_sha256')}: containerd_service_sha256: {given!r} is "
                "neither a sha256 digest (64 hex digits) nor the URL of a checksum file")
    return Download("containerd.service", version, url, checksum,
                    f"containerd_service_sha256 from {origin('containerd_service_sha256')}")


def _given_checksum(text: str) -> str:
    return text if text.startswith("sha256:") else f"sha256:{text}"


def _checksum_ok(checksum: str) -> bool:
    value = checksum[len("sha256:"):]
    return bool(_HEX64.match(value) or _URL.match(value))


def _kubernetes(values: dict[str, str], arch: str) -> list[Download]:
    """Where Kubernetes itself comes from: release binaries, or the package repository."""
    semver = values.get("kubernetes_semver", "")
    if values.get("kubernetes_source_type") == "http":
        base = f"{values.get('kubernetes_http_source', '').rstrip('/')}/{semver}/bin/linux/{arch}"
        return [Download(f"kubernetes {b}", semver, f"{base}/{b}", f"sha256:{base}/{b}.sha256",
                         "the checksum file published with the release")
                for b in ("kubeadm", "kubelet", "kubectl")]
    deb = values.get("distro_name") in ("ubuntu", "debian")
    repo = values.get("kubernetes_deb_repo" if deb else "kubernetes_rpm_repo", "")
    key = values.get("kubernetes_deb_gpg_key" if deb else "kubernetes_rpm_gpg_key", "")
    return [Download("kubernetes packages", semver, repo, f"signed: {key}",
                     "the repository's signing key")]
