"""Windows Server targets: what planning a build of one does beyond a Linux build.

Upstream builds Windows node images from ``packer/ova/packer-windows.json``
with its own common var files (``COMMON_WINDOWS_VAR_FILES`` of the Makefile),
for ``local`` and ``vsphere`` only. Here that is ``packer/windows.json`` and
``packer/config/windows/``. This module holds the differences ``plan_build``
asks for: the layering, the variables the other template declares, the checks
(the Administrator password, the install media), the downloads and their
checksums, the per-build values, and the template copy a build runs.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from imagebuilder.config.catalog import Target, is_windows_os
from imagebuilder.config.checkout import Checkout
from imagebuilder.config.template import declared_variables
from imagebuilder.planning import unattend
from imagebuilder.planning.downloads import Download, Resolution

#: Upstream's COMMON_WINDOWS_VAR_FILES, in its order (paths under packer/config/).
COMMON_WINDOWS_VAR_FILES = (
    "kubernetes.json", "windows/kubernetes.json", "containerd.json", "windows/containerd.json",
    "windows/ansible-args-windows.json", "common.json", "windows/common.json",
    "windows/cloudbase-init.json", "goss-args.json", "additional_components.json",
    "ecr_credential_provider.json",
)
TEMPLATE = "windows.json"
#: Where the answer file template and its scripts live, under packer/.
SOURCES = "windows"
#: Names of the Windows template a user may set that do nothing on Windows
#: images (upstream's Windows roles read none of them): accepted, with a warning.
NO_EFFECT_ON_WINDOWS = {
    "ecr_credential_provider": "upstream's Windows roles install no ECR credential provider",
    "kubernetes_http_package_url": "declared by upstream's Windows template but read by nothing",
}
#: Upstream's Windows files carry these for Linux-only uses (boot_command and
#: debug_tools are Windows settings, hence not in this list).
_BINS = ("kubeadm", "kubectl", "kubelet", "kube-log-runner")
_DATASTORE_PATH = re.compile(r"^\[[^\]]+\] \S")
_CHECKSUM = re.compile(r"^(sha256:)?([0-9a-fA-F]{64}|(https?|file)://\S+)$")


def _checksum_ok(text: str) -> bool:
    """A sha256 digest, or the URL of a checksum file (as the Linux roles take them)."""
    return bool(_CHECKSUM.match(text))


def is_windows(target: Target) -> bool:
    """Whether ``target`` builds a Windows image."""
    return is_windows_os(target.os_name)


def template_path(checkout: Checkout, target: Target) -> Path:
    """The source template of ``target``: packer/windows.json or packer/node.json."""
    return checkout.packer_dir / TEMPLATE if is_windows(target) else checkout.node_template


def common_var_files(checkout: Checkout, target: Target) -> list[Path]:
    """The common var files of ``target``, in upstream's order for its OS family."""
    if not is_windows(target):
        return checkout.common_var_files()
    return [checkout.config_dir / name for name in COMMON_WINDOWS_VAR_FILES]


def other_family_names(checkout: Checkout, target: Target) -> set[str]:
    """Names only the other family's template declares. Upstream's Packer ignores
    them, so a var file shared by Linux and Windows builds works there; here they
    are accepted and warned about (``family_warnings``), never silently."""
    other = checkout.node_template if is_windows(target) else checkout.packer_dir / TEMPLATE
    if not other.is_file():
        return set()
    return set(declared_variables(other)) - set(declared_variables(template_path(checkout,
                                                                                  target)))


def family_warnings(checkout: Checkout, target: Target, origin: Mapping[str, str],
                    values: Mapping[str, str], user_files: list[str]) -> list[str]:
    """One line for the names a user's var file or -var sets that do nothing on
    this target's OS family."""
    by_user = _set_by_user(checkout, origin, values, user_files)
    family = "Windows" if is_windows(target) else "Linux"
    idle = sorted(set(by_user) & other_family_names(checkout, target))
    lines = []
    if idle:
        lines.append(f"{target.task_name('build')}: {', '.join(idle)}: no effect on {family} "
                     "targets (only the other OS family's template reads them)")
    if is_windows(target):
        for name, why in NO_EFFECT_ON_WINDOWS.items():
            if name in by_user and values.get(name, "").strip() not in ("", "false"):
                lines.append(f"{by_user[name]}: {name}: has no effect on Windows builds: {why}")
    return lines


def _set_by_user(checkout: Checkout, origin: Mapping[str, str], values: Mapping[str, str],
                 user_files: list[str]) -> dict[str, str]:
    """Each name a user's file (or -var) gives a value, and that file. Site files (ova/vsphere.json,
    vmx.json) are layered for every target, and the files imagebuilder writes itself (the
    simulator's, under output/.work) are not the user's: their names are left out."""
    site = {k for name in ("vsphere.json", "vmx.json")
            for k in json.loads((checkout.ova_dir / name).read_text())}
    users = {f for f in user_files if not _under(Path(f), checkout.work_root)}
    users.add("PACKER_FLAGS -var")
    return {k: o for k, o in origin.items() if o in users and values.get(k) and k not in site}


def _under(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def env_secrets(admin_password: str | None, target: Target) -> dict[str, str]:
    """WINDOWS_ADMIN_PASSWORD wins over var files, as upstream's windows-unattend.py
    reads it: it travels in the build's 0600 flag-secrets file, which Packer reads last."""
    if admin_password and is_windows(target):
        return {"windows_admin_password": admin_password}
    return {}


def problems(target: Target, values: Mapping[str, str], where: Callable[[str, str], str],
             action: str) -> list[str]:
    """What a Windows build needs: an Administrator password Setup accepts, a time
    zone id, a Windows version the answer file knows, and its install media."""
    if not is_windows(target):
        return []
    password = values.get("windows_admin_password", "")
    found = []
    # validate runs and simulator builds (no guest) need none; a given one must work
    if (action == "build" and values.get("communicator") != "none") or password:
        shown = where("windows_admin_password", "environment")
        found += unattend.password_problems(password, f"{shown}: windows_admin_password")
    found += unattend.timezone_problems(values.get("unattend_timezone", ""),
                                        f"{where('unattend_timezone', 'packer/windows.json')}: "
                                        "unattend_timezone")
    found += unattend.edition_problems(values.get("distro_version", ""),
                                       where("distro_version", f"ova/{target.os_name}.json"))
    if values.get("communicator") != "none":  # the simulator: no guest, no install media
        found += _media_problems(target, values, where, action)
    return found


def _media_problems(target: Target, values: Mapping[str, str],
                    where: Callable[[str, str], str], action: str) -> list[str]:
    """Install media: vSphere builds mount datastore paths, local ones attach files."""
    found = []
    os_file = f"ova/{target.os_name}.json"
    if target.hypervisor.vsphere:
        for key in ("os_iso_path", "vmtools_iso_path"):
            if not _DATASTORE_PATH.match(values.get(key, "")):
                found.append(f"{where(key, os_file)}: {key}: {values.get(key, '')!r} is not a "
                             "datastore path such as '[datastore1] ISO/windows.iso'")
        return found
    if action != "build":
        return found
    for key, what in (("os_iso_url", "Windows Server"), ("vmtools_iso_url", "VMware Tools")):
        path = local_file(values.get(key, ""))
        if path is None and key == "vmtools_iso_url":
            found.append(f"{where(key, os_file)}: {key}: local builds attach the VMware Tools "
                         "ISO from a file; give its path or file: URL")
        elif path is not None and not path.is_file():
            found.append(f"{where(key, os_file)}: {key}: {path} does not exist; point {key} "
                         f"at your {what} ISO")
    return found


def local_file(url: str) -> Path | None:
    """The path a ``file:`` URL (upstream writes ``file:/path/x.iso``) or a plain
    absolute path names, or None for other URLs."""
    url = url.strip()
    if url.startswith("/"):
        return Path(url)
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        return Path(unquote(parsed.path))
    return None


def _cloudbase_url(values: Mapping[str, str], user_set: Callable[[str], bool]) -> str:
    """Upstream's default (a Packer expression our resolver does not evaluate), worked out."""
    if user_set("cloudbase_init_url"):
        return values.get("cloudbase_init_url", "")
    version = values.get("cloudbase_init_version", "")
    return ("https://github.com/cloudbase/cloudbase-init/releases/download/"
            f"{version}/CloudbaseInitSetup_{version.replace('.', '_')}_x64.msi")


def _checked(name: str, version: str, url: str, sha256: str, var: str, origin: str,
             problems: list[str]) -> Download | None:
    """A download whose checksum comes from ``var`` only (no file is published)."""
    if not sha256:
        problems.append(f"{origin}: {var}: is empty, but {url} has no published checksum; "
                        f"set {var} (the sha256, or the URL of a checksum file)")
        return None
    if not _checksum_ok(sha256):
        problems.append(f"{origin}: {var}: neither a sha256 digest (64 hex digits) nor the "
                        "URL of a checksum file")
        return None
    return Download(name, version, url, f"sha256:{sha256}", f"{var} from {origin}")


def _containerd(values: Mapping[str, str], origin: Callable[[str], str], found: list[Download],
                out: dict[str, str], problems: list[str]) -> None:
    """The containerd archive: containerd_sha256_windows, else the release's .sha256sum."""
    version = values.get("containerd_version", "").strip()
    release = ("https://github.com/containerd/containerd/releases/download/"
               f"v{version}/containerd-{version}-windows-amd64.tar.gz")
    url = values.get("containerd_url", "").strip() or release
    given = values.get("containerd_sha256_windows", "").strip()
    if given:
        if _checksum_ok(given):
            found.append(Download("containerd", version, url, f"sha256:{given}",
                                  f"containerd_sha256_windows from "
                                  f"{origin('containerd_sha256_windows')}"))
        else:
            problems.append(f"{origin('containerd_sha256_windows')}: containerd_sha256_windows: "
                            "neither a sha256 digest nor the URL of a checksum file")
    elif url == release:
        out["containerd_sha256_windows"] = f"{url}.sha256sum"
        found.append(Download("containerd", version, url, f"sha256:{url}.sha256sum",
                              "the checksum file published with the release"))
    else:
        problems.append(f"{origin('containerd_url')}: containerd_url: {url} is not containerd's "
                        f"Windows release for {version} and imagebuilder knows no checksum "
                        "for it; set containerd_sha256_windows")


def _cloudbase(values: Mapping[str, str], origin: Callable[[str], str],
               user_set: Callable[[str], bool], found: list[Download], problems: list[str]) -> None:
    """Cloudbase-Init's MSI: cloudbase_init_sha256 when set, its Authenticode signature always."""
    cloudbase = _cloudbase_url(values, user_set)
    if cloudbase:
        sha = values.get("cloudbase_init_sha256", "").strip()
        check = f"sha256:{sha}" if sha else "Authenticode signature of Cloudbase Solutions"
        found.append(Download("cloudbase-init", values.get("cloudbase_init_version", ""),
                              cloudbase, check,
                              f"cloudbase_init_sha256 from {origin('cloudbase_init_sha256')}"
                              if sha else "checked on the guest (no checksum is published)"))
        if sha and not _checksum_ok(sha):
            problems.append(f"{origin('cloudbase_init_sha256')}: cloudbase_init_sha256: neither "
                            "a sha256 digest nor the URL of a checksum file")


def resolve_downloads(values: dict[str, str], origin: Callable[[str], str],
                      user_set: Callable[[str], bool]) -> Resolution:
    """Every download of the Windows roles, each with its check, before anything runs."""
    found: list[Download] = []
    out: dict[str, str] = {}
    problems: list[str] = []
    _containerd(values, origin, found, out, problems)
    base = values.get("kubernetes_base_url", "").rstrip("/")
    found += [Download(f"kubernetes {b}.exe", values.get("kubernetes_semver", ""),
                       f"{base}/{b}.exe", f"sha256:{base}/{b}.exe.sha256",
                       "the checksum file published with the release") for b in _BINS]
    _cloudbase(values, origin, user_set, found, problems)
    optional = (("nssm", values.get("windows_service_manager") == "nssm", "nssm_url",
                 "nssm_sha256"),
                ("openssh", bool(values.get("ssh_source_url", "").strip()), "ssh_source_url",
                 "ssh_source_sha256"),
                ("gmsa-keyvault-plugin", bool(values.get("gmsa_keyvault_url", "").strip()),
                 "gmsa_keyvault_url", "gmsa_keyvault_sha256"))
    for name, wanted, url_var, sha_var in optional:
        if wanted:
            item = _checked(name, "", values.get(url_var, ""), values.get(sha_var, "").strip(),
                            sha_var, origin(sha_var) if user_set(sha_var) else
                            origin(url_var), problems)
            if item:
                found.append(item)
    return Resolution(found, out, problems)


def generated(work_dir: Path, values: Mapping[str, str]) -> dict[str, str]:
    """Per-build values of a Windows build: where its floppy files are, the local
    path of the VMware Tools ISO (local builds attach it as a second CD)."""
    tools = local_file(values.get("vmtools_iso_url", ""))
    return {"floppy_directory": str(work_dir / "floppy"),
            "vmtools_iso_file": str(tools) if tools else ""}


def build_template(checkout: Checkout, values: Mapping[str, str],
                   goss_plugin: Path | None) -> dict:
    """The template a Windows build runs, written into its work directory: without
    provisioners when there is no communicator (the simulator: nothing reaches a
    guest), with the goss provisioner for Windows when the plugin is installed."""
    data = json.loads((checkout.packer_dir / TEMPLATE).read_text())
    if values.get("communicator") == "none":
        data["provisioners"] = []
        return data
    if goss_plugin:
        provisioner = json.loads((checkout.packer_dir / "goss" /
                                  "windows-provisioner.json").read_text())
        provisioner.pop("_comment", None)
        after = next(i for i, p in enumerate(data["provisioners"])
                     if p.get("type") == "windows-restart")
        data["provisioners"].insert(after + 1, copy.deepcopy(provisioner))
    return data


def write_files(checkout: Checkout, work_dir: Path, template: Path, values: dict[str, str],
                goss_plugin: Path | None) -> list[Path]:
    """Write what a Windows build generates: its template copy and its floppy files."""
    from imagebuilder.files import write_private_json
    write_private_json(template, build_template(checkout, values, goss_plugin))
    if not values.get("windows_admin_password"):
        # validate runs and simulator builds (the plan requires one for any other):
        # no guest reads it; a fresh one all the same, never a fixed one
        values = {**values, "windows_admin_password": f"Ib-{secrets.token_urlsafe(18)}-1a"}
    return unattend.write_floppy(checkout.packer_dir / SOURCES, work_dir / "floppy", values)

