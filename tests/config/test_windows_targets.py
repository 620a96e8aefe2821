"""Windows Server targets: the catalog, upstream's layering, upstream-shaped var files,
the Administrator password as a secret, and the checks made before anything runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers.common import BIN, REPO, VSPHERE, invoke, write_json

from imagebuilder import api
from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.errors import InputError
from imagebuilder.planning.plan import plan_build, write_build_files

WINDOWS = ("windows-2019", "windows-2019-efi", "windows-2022", "windows-2022-efi")
CORPUS = REPO / "tests" / "data" / "upstream_shaped" / "windows"
PASSWORD = "Test-Admin-Pass-9"
UPSTREAM_ORDER = [  # images/capi/Makefile: COMMON_WINDOWS_VAR_FILES
    "packer/config/kubernetes.json", "packer/config/windows/kubernetes.json",
    "packer/config/containerd.json", "packer/config/windows/containerd.json",
    "packer/config/windows/ansible-args-windows.json", "packer/config/common.json",
    "packer/config/windows/common.json", "packer/config/windows/cloudbase-init.json",
    "packer/config/goss-args.json", "packer/config/additional_components.json",
    "packer/config/ecr_credential_provider.json"]


def isos(tmp_path: Path) -> Path:
    """A var file pointing local builds at ISO files that exist."""
    paths = []
    for name in ("windows.iso", "vmtools.iso"):
        (tmp_path / name).write_bytes(b"stand-in ISO")
        paths.append((tmp_path / name).as_uri())
    return write_json(tmp_path / "isos.json", {"os_iso_url": paths[0], "vmtools_iso_url": paths[1]})


def plan(checkout, name: str, files: list[Path] = (), action: str = "build", **env: str):
    knobs = Knobs.from_env({"PACKER_VAR_FILES": " ".join(map(str, files)), **env})
    return plan_build(checkout, parse_target(name, checkout.os_names()), knobs, action)


def problems_of(checkout, name: str, files: list[Path] = (), **env: str) -> list[str]:
    with pytest.raises(InputError) as err:
        plan(checkout, name, files, **env)
    return err.value.problems


def test_local_and_vsphere_only(checkout):
    targets = [t.name for t in api.targets_of(checkout=checkout)]
    for os_name in WINDOWS:
        assert f"node-ova-local-{os_name}" in targets
        assert f"node-ova-vsphere-{os_name}" in targets
        for hv in ("local-base", "local-vmx", "vsphere-base", "vsphere-clone"):
            assert f"node-ova-{hv}-{os_name}" not in targets
            with pytest.raises(InputError) as err:
                parse_target(f"build-node-ova-{hv}-{os_name}", checkout.os_names())
            assert str(err.value) == (
                f"'build-node-ova-{hv}-{os_name}': Windows images are built from the ISO only; "
                f"use build-node-ova-local-{os_name} or build-node-ova-vsphere-{os_name}")
    vsphere_all = [t.name for t in api.targets_of("vsphere", checkout)]
    assert {f"node-ova-vsphere-{o}" for o in WINDOWS} <= set(vsphere_all)
    assert not [t for t in api.targets_of("vsphere-clone", checkout) if "windows" in t.name]


def test_invoke_refuses_the_others_with_one_line(checkout):
    run = invoke("build-node-ova-vsphere-clone-windows-2022")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "error: 'build-node-ova-vsphere-clone-windows-2022': Windows images are built from the "
        "ISO only; use build-node-ova-local-windows-2022 or build-node-ova-vsphere-windows-2022")


def test_layering_is_upstreams(checkout, tmp_path):
    user = isos(tmp_path)
    p = plan(checkout, "node-ova-local-windows-2022", [user], WINDOWS_ADMIN_PASSWORD=PASSWORD)
    files = [a.split("=", 1)[1] for a in p.argv() if a.startswith("-var-file=")]
    shown = [str(Path(f).relative_to(checkout.root)) for f in files
             if Path(f).is_relative_to(checkout.root) and not Path(f).is_relative_to(
                 checkout.work_root)]
    assert shown == UPSTREAM_ORDER + ["packer/packer-common.json", "ova/windows-2022.json"]
    assert files[len(shown)] == str(p.generated_file)
    assert files[len(shown) + 1:] == [str(user), str(p.flag_secrets_file)]
    assert p.argv()[-1] == str(p.work_dir / "windows.json")
    assert "-only=vmware-iso" in p.argv()
    v = plan(checkout, "node-ova-vsphere-windows-2019-efi", [write_json(tmp_path / "vc.json",
                                                                        VSPHERE)], "validate")
    assert "-only=vsphere-iso" in v.argv() and f"-var-file={checkout.ova_dir / 'vsphere.json'}" \
        in v.argv()


def test_upstream_shaped_var_files_are_accepted_unchanged(checkout, tmp_path):
    files = [write_json(tmp_path / "vc.json", VSPHERE), CORPUS / "windows-settings.json",
             CORPUS / "windows-vsphere-site.json"]
    p = plan(checkout, "node-ova-vsphere-windows-2022", files)
    values = p.merged.resolved({})
    assert values["windows_admin_password"] == "Corpus-Admin-2024!"
    assert values["containerd_url"].endswith("/v1.7.27/containerd-1.7.27-windows-amd64.tar.gz")
    assert values["kubernetes_base_url"] == "https://dl.k8s.io/release/v1.31.4/bin/windows/amd64"
    assert p.warnings == []
    common = values["ansible_common_vars"]
    for pair in ('windows_updates_kbs="KB4580390 KB4471332"', "disable_hypervisor=true",
                 "kubernetes_install_path=c:\\k", "containerd_version=1.7.27",
                 'custom_role_names="my-windows-role"', "prepull=false"):
        assert pair in common, pair
    lines = [d.line() for d in p.downloads]
    assert any("containerd-1.7.27-windows-amd64.tar.gz.sha256sum" in line for line in lines)
    assert any("CloudbaseInitSetup_1_1_6_x64.msi" in line for line in lines)
    # upstream's own OS file layered last (placeholder datastore, 2019-style ids) is accepted too
    p = plan(checkout, "node-ova-vsphere-windows-2022", files + [CORPUS / "windows-2022.json"])
    assert p.merged.get("vsphere_guest_os_type") == "windows2019srvNext_64Guest"


def test_password_from_the_environment_is_a_secret_that_wins(checkout, tmp_path):
    files = [write_json(tmp_path / "vc.json", VSPHERE), CORPUS / "windows-vsphere-site.json"]
    env_password = "Env-Admin-Pass-42"
    p = plan(checkout, "node-ova-vsphere-windows-2022", files, WINDOWS_ADMIN_PASSWORD=env_password)
    assert p.merged.get("windows_admin_password") == env_password
    assert p.flag_secrets == {"windows_admin_password": env_password}
    assert env_password in p.secret_values
    out = io.StringIO()
    api.run([p.target], "build", dry_run=True, out=out, checkout=checkout,
            knobs=Knobs.from_env({"PACKER_VAR_FILES": " ".join(map(str, files)),
                                  "WINDOWS_ADMIN_PASSWORD": env_password}))
    text = out.getvalue()
    assert env_password not in text and "Corpus-Admin-2024!" not in text
    assert env_password not in " ".join(p.argv())
    write_build_files(p)
    assert json.loads(p.flag_secrets_file.read_text()) == {"windows_admin_password": env_password}
    assert p.flag_secrets_file.stat().st_mode & 0o777 == 0o600
    unattend = (p.work_dir / "floppy" / "autounattend.xml").read_text()
    assert env_password in unattend and "Corpus-Admin-2024!" not in unattend
    # as a -var in PACKER_FLAGS it moves to the 0600 file as well
    p = plan(checkout, "node-ova-vsphere-windows-2022", files,
             PACKER_FLAGS=f"-var windows_admin_password={env_password}")
    assert env_password not in " ".join(p.argv())
    assert p.flag_secrets == {"windows_admin_password": env_password}


@pytest.mark.parametrize("password, why", [
    ("", "is empty; the Administrator password is required: export WINDOWS_ADMIN_PASSWORD"),
    ("S3cr3t0!", "is upstream's example password; choose your own"),
    ("short1A", None),
    ("alllowercase1", "does not meet Windows' default password policy"),
    ("Administrator-1x", "does not meet Windows' default password policy"),
])
def test_the_administrator_password_is_checked(checkout, tmp_path, password, why):
    files = [isos(tmp_path)]
    if why is None:
        assert plan(checkout, "node-ova-local-windows-2019", files,
                    WINDOWS_ADMIN_PASSWORD=password).merged.get("windows_admin_password")
        return
    problems = problems_of(checkout, "node-ova-local-windows-2019", files,
                           WINDOWS_ADMIN_PASSWORD=password)
    [line] = [p for p in problems if "windows_admin_password" in p]
    assert why in line
    if password:
        assert password not in line


def test_install_media_are_checked_before_anything_runs(checkout, tmp_path):
    problems = problems_of(checkout, "node-ova-local-windows-2022-efi",
                           WINDOWS_ADMIN_PASSWORD=PASSWORD)
    assert problems == [
        "ova/windows-2022-efi.json: os_iso_url: /path/en-us_windows_server_2022_x64_dvd_620d7eac"
        ".iso does not exist; point os_iso_url at your Windows Server ISO",
        "ova/windows-2022-efi.json: vmtools_iso_url: /path/VMware-tools-windows-12.5.1-24649672"
        ".iso does not exist; point vmtools_iso_url at your VMware Tools ISO"]
    bad = write_json(tmp_path / "bad.json", {**VSPHERE, "os_iso_path": "ISO/windows.iso",
                                             "unattend_timezone": "Mars/Olympus<Mons>"})
    problems = problems_of(checkout, "node-ova-vsphere-windows-2022", [bad],
                           WINDOWS_ADMIN_PASSWORD=PASSWORD)
    assert f"{bad}: os_iso_path: 'ISO/windows.iso' is not a datastore path such as " \
        "'[datastore1] ISO/windows.iso'" in problems
    assert any(p.startswith(f"{bad}: unattend_timezone: 'Mars/Olympus<Mons>' is not a Windows "
                            "time zone id") for p in problems)


def test_downloads_without_a_published_checksum_need_one(checkout, tmp_path):
    files = [isos(tmp_path), write_json(tmp_path / "win.json", {
        "windows_service_manager": "nssm",
        "ssh_source_url": "https://github.com/PowerShell/Win32-OpenSSH/releases/download/"
                          "V8.6.0.0p1-Beta/OpenSSH-Win64.zip",
        "containerd_url": "https://mirror.example.com/containerd-windows.tar.gz"})]
    problems = problems_of(checkout, "node-ova-local-windows-2022", files,
                           WINDOWS_ADMIN_PASSWORD=PASSWORD)
    assert any("nssm_sha256: is empty, but https://upstreamartifacts.azureedge.net/nssm/nssm.exe"
               " has no published checksum" in p for p in problems)
    assert any("ssh_source_sha256: is empty" in p for p in problems)
    assert any("containerd_url: https://mirror.example.com/containerd-windows.tar.gz is not "
               "containerd's Windows release" in p for p in problems)
    digest = "ab" * 32
    fixed = write_json(tmp_path / "sums.json", {"nssm_sha256": digest, "ssh_source_sha256": digest,
                                                "containerd_sha256_windows": digest})
    p = plan(checkout, "node-ova-local-windows-2022", files + [fixed],
             WINDOWS_ADMIN_PASSWORD=PASSWORD)
    checks = {d.name: d.checksum for d in p.downloads}
    assert checks["nssm"] == checks["openssh"] == checks["containerd"] == f"sha256:{digest}"
    assert f"nssm_sha256={digest}" in p.merged.resolved({})["ib_ansible_vars"]


def test_a_shared_var_file_works_for_both_families_with_a_warning(checkout, tmp_path):
    """Upstream's Packer ignores the other template's names; here they are accepted with one
    line saying they do nothing, and a typo is still an error."""
    shared = write_json(tmp_path / "shared.json", {"extra_debs": "nfs-common",
                                                   "windows_updates_kbs": "KB4580390"})
    files = [isos(tmp_path), shared]
    w = plan(checkout, "node-ova-local-windows-2022", files, WINDOWS_ADMIN_PASSWORD=PASSWORD)
    assert w.warnings == ["build-node-ova-local-windows-2022: extra_debs: no effect on Windows "
                          "targets (only the other OS family's template reads them)"]
    linux = plan(checkout, "node-ova-local-ubuntu-2204", files)
    assert any("os_iso_url, vmtools_iso_url, windows_updates_kbs: no effect on Linux targets"
               in line for line in linux.warnings)
    typo = write_json(tmp_path / "typo.json", {"windows_update_kbs": "KB1"})
    assert any("windows_update_kbs: unknown variable; did you mean 'windows_updates_kbs'?" in p
               for p in problems_of(checkout, "node-ova-local-windows-2022", files + [typo],
                                    WINDOWS_ADMIN_PASSWORD=PASSWORD))


def test_python_cli_dry_run_names_no_secret(checkout, tmp_path):
    import subprocess
    import sys
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "IB_ROOT": str(checkout.root),
           "PACKER_VAR_FILES": str(isos(tmp_path)), "WINDOWS_ADMIN_PASSWORD": PASSWORD,
           "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "imagebuilder", "build",
                          "node-ova-local-windows-2019-efi", "--dry-run"],
                         capture_output=True, text=True, env=env, cwd=checkout.root)
    assert run.returncode == 0, run.stderr
    assert PASSWORD not in run.stdout + run.stderr
    assert "flag-secrets.json" in run.stdout and "windows.json" in run.stdout


def test_every_declared_variable_has_an_effect():
    """As tests/config/test_variables_reach.py for node.json: each variable windows.json
    declares reaches a builder, provisioner or post-processor (the goss provisioner
    included), or the planner reads it (names, the answer file, the checks)."""
    from imagebuilder.config.template import reach
    from imagebuilder.config.upstream import PLANNER_INPUTS
    from imagebuilder.planning.windows import COMMON_WINDOWS_VAR_FILES, NO_EFFECT_ON_WINDOWS
    template = json.loads((REPO / "packer" / "windows.json").read_text())
    template["provisioners"].insert(2, json.loads(
        (REPO / "packer" / "goss" / "windows-provisioner.json").read_text()))
    values = dict(template["variables"])
    for name in COMMON_WINDOWS_VAR_FILES:
        values.update(json.loads((REPO / "packer" / "config" / name).read_text()))
    reached = reach(template, values)
    read_by_planner = {"kubernetes_series", "unattend_timezone", "vmtools_iso_url"}
    idle = sorted(n for n in template["variables"] if not reached.get(n)
                  and n not in PLANNER_INPUTS | read_by_planner | set(NO_EFFECT_ON_WINDOWS))
    assert idle == []
