"""Var files shaped like upstream image-builder's work here unchanged, with upstream's meaning.

``tests/data/upstream_shaped/`` holds var files written from upstream's documented
names and value formats: its shared config files (``config/``), per-OS files and
packer-common (``os/``) and the customizations its documentation shows (``docs/``).
Each is accepted by a dry run of every matching target, and ``render`` shows each
value where upstream's template puts it: a builder field, a provisioner's
arguments or environment, a post-processor, the playbooks' variables, a download.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from helpers.common import REPO, VSPHERE, write_json
from helpers.planning import plan_for

from imagebuilder import api
from imagebuilder.config.catalog import HYPERVISORS
from imagebuilder.config.knobs import Knobs
from imagebuilder.errors import InputError
from imagebuilder.planning.inspect import render_target

CORPUS = REPO / "tests" / "data" / "upstream_shaped"
CONFIG = sorted((CORPUS / "config").glob("*.json"))
DOCS = sorted((CORPUS / "docs").glob("*.json"))
OS_FILES = sorted(p for p in (CORPUS / "os").glob("*.json") if p.stem != "packer-common")
ENV = {"RHSM_USER": "someone", "RHSM_PASS": "rhsm-Secret-42"}


def site_files(tmp_path: Path) -> list[Path]:
    """What every site adds: its vCenter, and the VM local-vmx builds start from."""
    vmx = tmp_path / "base.vmx"
    vmx.write_text("")
    return [write_json(tmp_path / "site-vsphere.json", VSPHERE),
            write_json(tmp_path / "site-vmx.json", {"source_path": str(vmx)})]


def knobs(files: list[Path], **env: str) -> Knobs:
    return Knobs.from_env({**ENV, "PACKER_VAR_FILES": " ".join(map(str, files)), **env})


def plan(checkout, name: str, files: list[Path], **env: str):
    return plan_for(checkout, name, {**ENV, **env}, var_files=files)


def rendered(checkout, tmp_path: Path, name: str, files: list[Path], **env: str) -> dict:
    out = tmp_path / f"render-{name}"
    render_target(name, out, checkout=checkout, knobs=knobs(files, **env))
    loaded = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    loaded["dir"] = out
    return loaded


def test_corpus_covers_the_documented_shapes():
    assert {p.stem for p in CONFIG} == {
        "kubernetes", "cni", "containerd", "wasm-shims", "ansible-args", "goss-args", "common",
        "additional_components", "ecr_credential_provider"}
    assert len(DOCS) >= 15 and len(OS_FILES) >= 5


def test_everything_layered_passes_a_dry_run_of_every_target(checkout, tmp_path):
    """Upstream's config files and every documented customization at once."""
    # Windows targets (8 of the 86) need their ISOs and an Administrator password
    isos = [tmp_path / "windows.iso", tmp_path / "vmtools.iso"]
    for iso in isos:
        iso.write_bytes(b"stand-in")
    files = CONFIG + DOCS + site_files(tmp_path) + [write_json(
        tmp_path / "site-windows.json",
        {"os_iso_url": isos[0].as_uri(), "vmtools_iso_url": isos[1].as_uri()})]
    targets = api.targets_of(checkout=checkout)
    assert len(targets) == 86
    out = io.StringIO()
    api.run(targets, "build", dry_run=True, out=out, checkout=checkout,
            knobs=knobs(files, WINDOWS_ADMIN_PASSWORD="Windows-Secret-77"))
    text = out.getvalue()
    assert text.count("# build-node-ova-") == 86 and "NOT RUNNABLE" not in text
    for secret in ("Esx-Secret-99", "S3_SECRET_KEY", "S3_ACCESS_KEY", "rhsm-Secret-42",
                   VSPHERE["password"], "Windows-Secret-77"):
        assert secret not in text
    # amazon_ssm_agent_rpm is quoted by upstream's ansible-args.json but set nowhere: no warning
    assert "amazon_ssm_agent_rpm" not in text


@pytest.mark.parametrize("os_file", OS_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("hv", list(HYPERVISORS))
def test_upstream_os_file_passes_its_targets(checkout, tmp_path, os_file, hv):
    files = CONFIG + [os_file] + site_files(tmp_path)
    result = plan(checkout, f"build-node-ova-{hv}-{os_file.stem}", files)
    assert result.merged.get("build_name") == os_file.stem


@pytest.mark.parametrize("hv", list(HYPERVISORS))
def test_upstream_packer_common(checkout, tmp_path, hv):
    """Upstream's packer-common.json works as it is for OSes that take its vmx_version 15;
    for those needing 18 the clash is named (upstream layers it below the OS file)."""
    files = [CORPUS / "os" / "packer-common.json"] + site_files(tmp_path)
    result = plan(checkout, f"build-node-ova-{hv}-ubuntu-2404", files)
    assert result.merged.get("ssh_handshake_attempts") == "100"
    with pytest.raises(InputError) as info:
        plan(checkout, f"build-node-ova-{hv}-rockylinux-9", files)
    expected = (f"{CORPUS / 'os' / 'packer-common.json'}: vmx_version: 15 is below the minimum "
                "18 that rockylinux-9 needs; set vmx_version to 18 or more")
    assert info.value.problems == [expected]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.stem)
def test_each_documented_customization_alone(checkout, tmp_path, doc):
    for name in ("build-node-ova-local-ubuntu-2404", "build-node-ova-vsphere-rockylinux-9",
                 "build-node-ova-vsphere-clone-photon-5", "build-node-ova-local-vmx-flatcar"):
        result = plan(checkout, name, [doc] + site_files(tmp_path))
        data = json.loads(doc.read_text())
        for key, value in data.items():
            if value is not None and key not in result.generated:
                assert result.merged.get(key) == value.strip('"'), (doc.name, key)


def test_a_typo_still_gets_did_you_mean(checkout, tmp_path):
    typo = write_json(tmp_path / "typo.json", {"vcenter_sever": "vc", "http_ipp": "10.0.0.1"})
    with pytest.raises(InputError) as info:
        plan(checkout, "build-node-ova-vsphere-ubuntu-2204",
             CONFIG + DOCS + site_files(tmp_path) + [typo])
    assert f"{typo}: vcenter_sever: unknown variable; did you mean 'vcenter_server'?" \
        in info.value.problems
    assert f"{typo}: http_ipp: unknown variable; did you mean 'http_ip'?" in info.value.problems


def test_builder_fields_of_vsphere_iso(checkout, tmp_path):
    files = [CORPUS / "os" / "ubuntu-2204.json", CORPUS / "docs" / "builder_network.json",
             *site_files(tmp_path)]
    out = rendered(checkout, tmp_path, "node-ova-vsphere-ubuntu-2204", files)
    [builder] = out["packer-blocks"]["builders"]
    assert builder["type"] == "vsphere-iso"
    expected = {"http_ip": "10.0.0.5", "http_port_min": "8100", "http_port_max": "8200",
                "ip_settle_timeout": "30s", "ip_wait_timeout": "45m",
                "ssh_handshake_attempts": "200", "cdrom_type": "sata", "cd_label": "CIDATA"}
    assert {k: builder[k] for k in expected} == expected
    assert "ipv6.disable=1 ---" in builder["boot_command"][0]
    # upstream's stock cd_content_location means the rendered install files: on the CD
    assert (out["dir"] / "cidata" / "user-data").is_file()


def test_builder_fields_of_vmware_iso_on_a_remote_esxi(checkout, tmp_path):
    files = [CORPUS / "docs" / "remote_esxi.json", CORPUS / "docs" / "builder_network.json"]
    out = rendered(checkout, tmp_path, "node-ova-local-ubuntu-2404", files)
    [builder] = out["packer-blocks"]["builders"]
    assert builder["type"] == "vmware-iso"
    expected = {"remote_type": "esx5", "remote_host": "esxi.corp.com",
                "remote_datastore": "datastore2", "remote_username": "root",
                "remote_password": "<sensitive>", "format": "ova", "cdrom_adapter_type": "sata",
                "http_port_min": "8100", "http_port_max": "8200", "floppy_dirs": ""}
    assert {k: builder[k] for k in expected} == expected
    assert "http_ip" not in builder  # Packer 1.6.6's vmware-iso has no such field...
    result = plan(checkout, "build-node-ova-local-ubuntu-2404", files)
    warning = next(w for w in result.warnings if "no effect on this target" in w)
    assert "http_ip" in warning and "ip_settle_timeout" in warning  # ...and we say so
    everything = "".join(p.read_text() for p in out["dir"].rglob("*") if p.is_file())
    assert "Esx-Secret-99" not in everything


def test_remote_password_never_on_argv(checkout, tmp_path):
    result = plan(checkout, "build-node-ova-local-ubuntu-2404", [],
                  PACKER_FLAGS="-var remote_password=Esx-Secret-99 -var remote_host=esx1")
    assert "Esx-Secret-99" not in " ".join(result.argv())
    assert result.flag_secrets == {"remote_password": "Esx-Secret-99"}
    assert result.merged.get("remote_host") == "esx1"
    template = json.loads(checkout.node_template.read_text())
    assert {"remote_password", "additional_s3_access", "additional_s3_secret"} <= \
        set(template["sensitive-variables"])


def test_playbook_variables_in_upstream_forms(checkout, tmp_path):
    files = CONFIG + [CORPUS / "docs" / n for n in (
        "extra_rpms.json", "custom_roles.json", "ansible_user_vars.json", "proxy.json",
        "additional_components.json", "containerd_settings.json", "ecr_credential_provider.json",
        "wasm.json", "node_extras.json", "mirror_repos.json")]
    out = rendered(checkout, tmp_path, "node-ova-vsphere-rockylinux-9", files + site_files(tmp_path))
    ansible = out["ansible-vars"]
    assert ansible["extra_rpms"] == "nfs-utils net-tools"
    assert ansible["var1"] == "value1" and ansible["var2"] == "value2"
    assert ansible["node_custom_roles_post"] == "role1 role2"
    assert ansible["custom_role_names"] == "role2 role3"
    assert ansible["firstboot_custom_roles_pre"] == "setupRole"
    assert ansible["http_proxy"] == "http://proxy.corp.com"
    assert ansible["additional_s3_bucket"] == "some-bucket" and ansible["additional_s3"] == "true"
    assert ansible["additional_registry_images_list"] == "plndr/kube-vip:0.3.4,plndr/kube-vip:0.3.3"
    settings = json.loads((CORPUS / "docs" / "containerd_settings.json").read_text())
    assert ansible["containerd_additional_settings"] == settings["containerd_additional_settings"]
    assert "config_path" in base64.b64decode(ansible["containerd_additional_settings"]).decode()
    assert ansible["containerd_image_pull_progress_timeout"] == "5m"
    assert ansible["ecr_credential_provider"] == "true"
    assert ansible["ecr_credential_provider_version"] == "v1.30.0"
    assert ansible["ecr_credential_provider_aws_profile"] == "builder"
    assert ansible["containerd_wasm_shims_runtimes"] == "spin,slight"
    assert ansible["gpu_block_nouveau_loading"] == "false"
    assert ansible["extra_kernel_boot_params"] == "console=ttyS0 mitigations=off"
    assert ansible["node_ansible_tmpdir"] == "/var/tmp/ansible"
    assert ansible["disable_public_repos"] == "true"
    assert ansible["extra_repos"] == "/home/someone/mirror.repo"
    # upstream's ecr file leaves the details empty, meaning the role's defaults:
    # empty names of our own carrier are not handed over
    assert "ecr_credential_provider_os" not in ansible
    # the S3 keys are secrets: in the playbooks' environment, never their arguments
    assert "additional_s3_access" not in ansible and "additional_s3_secret" not in ansible
    node = next(p for p in out["packer-blocks"]["provisioners"]
                if str(p.get("playbook_file", "")).endswith("node.yml"))
    assert "ADDITIONAL_S3_ACCESS=<sensitive>" in node["ansible_env_vars"]
    assert "ADDITIONAL_S3_SECRET=<sensitive>" in node["ansible_env_vars"]
    everything = "".join(p.read_text() for p in out["dir"].rglob("*") if p.is_file())
    assert "S3_SECRET_KEY" not in everything and "S3_ACCESS_KEY" not in everything


def test_ansible_ssh_args_as_upstream_builds_them(checkout, tmp_path, monkeypatch):
    monkeypatch.setenv("ANSIBLE_SSH_ARGS", "-o ServerAliveInterval=30")
    out = rendered(checkout, tmp_path, "node-ova-local-ubuntu-2204", [])
    node = out["packer-blocks"]["provisioners"][0]
    [ssh] = [e for e in node["ansible_env_vars"] if e.startswith("ANSIBLE_SSH_ARGS=")]
    assert "-o ServerAliveInterval=30 -o IdentitiesOnly=yes" in ssh


def test_documented_quoted_lists_reach_packer_unquoted(checkout, tmp_path):
    """The file Packer reads is a copy without the value's own quotes (the carrier quotes)."""
    from imagebuilder.planning.plan import write_build_files
    doc = CORPUS / "docs" / "extra_rpms.json"
    result = plan(checkout, "build-node-ova-local-rockylinux-9", [doc])
    write_build_files(result)
    copy = result.normalised[doc]
    assert json.loads(copy.read_text()) == {"extra_rpms": "nfs-utils net-tools"}
    assert f"-var-file={copy}" in result.argv()


def test_manifest_and_custom_post_processor(checkout, tmp_path):
    files = [CORPUS / "docs" / "output.json", CORPUS / "docs" / "post_processor.json"]
    out = rendered(checkout, tmp_path, "node-ova-local-ubuntu-2204", files)
    posts = {p.get("name"): p for p in out["packer-blocks"]["post-processors"]}
    assert posts["manifest"]["custom_data"]["kubernetes_typed_version"] == "kube-custom"
    custom = posts["custom-post-processor"]
    assert custom["environment_vars"] == ["CUSTOM_POST_PROCESSOR=true"]
    assert custom["inline"][-1] == "echo built > /dev/null"


def test_upstream_output_names(checkout, tmp_path):
    files = [CORPUS / "docs" / "output.json"]
    node = plan(checkout, "build-node-ova-local-ubuntu-2204", files)
    assert node.merged.get("vm_name") == "my-node-image"
    assert node.artifact_dir == checkout.root / "output" / "my-node-image"
    base = plan(checkout, "build-node-ova-local-base-ubuntu-2204", files)
    assert base.merged.get("vm_name") == "my-base"
    assert base.artifact_dir == checkout.root / "output" / "my-base"


def test_image_name_names_a_local_vmx_build(checkout, tmp_path):
    named = write_json(tmp_path / "named.json", {"image_name": "golden"})
    result = plan(checkout, "build-node-ova-local-vmx-ubuntu-2204", [named] + site_files(tmp_path))
    assert result.merged.get("vm_name") == "golden"


def test_cd_content_location_adds_files_to_the_cd(checkout, tmp_path):
    extra = tmp_path / "cd-extra"
    extra.mkdir()
    (extra / "vendor.cfg").write_text("x=1\n")
    files = [write_json(tmp_path / "cd.json", {"cd_content_location": f"{extra}/*"})]
    out = rendered(checkout, tmp_path, "node-ova-local-ubuntu-2204", files)
    assert (out["dir"] / "cidata" / "vendor.cfg").read_text() == "x=1\n"
    assert (out["dir"] / "cidata" / "user-data").is_file()
    missing = write_json(tmp_path / "cd2.json", {"cd_content_location": f"{tmp_path}/nope/*"})
    with pytest.raises(InputError) as info:  # before anything runs
        plan(checkout, "build-node-ova-local-ubuntu-2204", [missing])
    expected = (f"{missing}: cd_content_location: {tmp_path}/nope/*: matches no file; name "
                "files to put on the CD, or remove the field")
    assert info.value.problems == [expected]


def test_upstream_rhel_file_uses_the_rendered_kickstart(checkout, tmp_path):
    """Upstream's rhel-9.json names its own install-file directory and /9/ks.cfg."""
    files = [CORPUS / "os" / "rhel-9.json", *site_files(tmp_path)]
    result = plan(checkout, "build-node-ova-vsphere-rhel-9", files)
    assert f"-var=http_directory={result.http_dir}" in result.argv()
    out = rendered(checkout, tmp_path, "node-ova-vsphere-rhel-9", files)
    assert (out["dir"] / "http" / "9" / "ks.cfg").is_file()
    [builder] = out["packer-blocks"]["builders"]
    assert builder["boot_command"] == ["<up>e <down><down><end><wait> text inst.ks=",
                                       "http://{{ .HTTPIP }}:{{ .HTTPPort }}",
                                       "/9/ks.cfg<enter><wait><leftCtrlOn>x<leftCtrlOff>"]


def test_upstream_photon_file_finds_its_kickstart_on_the_cd(checkout, tmp_path):
    out = rendered(checkout, tmp_path, "node-ova-local-photon-5", [CORPUS / "os" / "photon-5.json"])
    assert (out["dir"] / "cidata" / "5" / "ks.json").is_file()
    [builder] = out["packer-blocks"]["builders"]
    assert builder["boot_command"][1] == "/dev/sr1:/5/ks.json"


def test_upstream_flatcar_names(checkout, tmp_path):
    files = [CORPUS / "os" / "flatcar.json"]
    result = plan(checkout, "build-node-ova-local-flatcar", files)
    assert f"-var=http_directory={result.http_dir}" in result.argv()  # its "" would serve nothing
    out = rendered(checkout, tmp_path, "node-ova-local-flatcar", files,
                   FLATCAR_CHANNEL="beta", FLATCAR_VERSION="4012.1.0")
    [builder] = out["packer-blocks"]["builders"]
    assert "-C beta -V 4012.1.0" in builder["boot_command"][0]
    ansible = out["ansible-vars"]
    assert ansible["guestinfo_datasource_ref"] == "v1.4.1"
    assert ansible["guestinfo_datasource_script"] == (
        "https://raw.githubusercontent.com/vmware/cloud-init-vmware-guestinfo/v1.4.1/install.sh")


def test_upstream_versions_drive_the_downloads(checkout, tmp_path):
    files = CONFIG + [CORPUS / "docs" / "kubernetes_version.json"]
    out = rendered(checkout, tmp_path, "node-ova-local-ubuntu-2204", files)
    downloads = {d["name"]: d for d in out["downloads"]}
    assert downloads["containerd"]["url"].endswith("/v2.3.2/containerd-2.3.2-linux-amd64.tar.gz")
    assert downloads["runc"]["url"].endswith("/v1.4.3/runc.amd64")
    assert downloads["cni"]["url"].endswith("/v1.2.0/cni-plugins-linux-amd64-v1.2.0.tgz")
    assert downloads["kubernetes packages"]["url"] == "https://pkgs.k8s.io/core:/stable:/v1.35/deb/"
    ansible = out["ansible-vars"]
    assert ansible["containerd_url"] == downloads["containerd"]["url"]
    assert ansible["containerd_sha256"] == downloads["containerd"]["url"] + ".sha256sum"
    assert ansible["kubernetes_deb_repo"] == "https://pkgs.k8s.io/core:/stable:/v1.35/deb/"
    assert ansible["kubernetes_deb_version"] == "1.35.4-1.1"


@pytest.mark.parametrize("os_name", ["ubuntu-2404", "rockylinux-9", "photon-5", "flatcar"])
def test_ssh_username_end_to_end(checkout, tmp_path, os_name):
    """upstream's ssh_username names the build user everywhere: the install file that
    creates it with its sudoers entry, Packer's login, the playbooks' sysprep."""
    user = write_json(tmp_path / "user.json", {"ssh_username": "capv-build"})
    out = rendered(checkout, tmp_path, f"node-ova-local-{os_name}", [user])
    install = "".join(p.read_text() for d in ("http", "cidata") for p in (out["dir"] / d).rglob("*")
                      if p.is_file())
    from urllib.parse import unquote
    install = unquote(install)  # Ignition carries files as data: URLs
    assert "sudoers.d/capv-build" in install
    assert "capv-build ALL=(ALL) NOPASSWD: ALL" in install
    assert not re.search(r"(name|user|username)[=:\s\"]+builder\b|sudoers\.d/builder", install)
    [builder] = out["packer-blocks"]["builders"]
    assert builder["ssh_username"] == "capv-build"
    assert all(p["user"] == "capv-build" for p in out["packer-blocks"]["provisioners"]
               if p["type"] == "ansible")
    assert out["ansible-vars"]["sysprep_build_user"] == "capv-build"


def test_new_fields_are_typed(checkout, tmp_path):
    """Values Packer would refuse late are input errors up front, naming file and field."""
    bad = write_json(tmp_path / "bad.json", {"ip_settle_timeout": "five", "cdrom_type": "floppy",
                                             "destroy": "yes", "http_port_min": "80a"})
    with pytest.raises(InputError) as info:
        plan(checkout, "build-node-ova-vsphere-ubuntu-2204", [bad] + site_files(tmp_path))
    assert sorted(p.split(":")[1].strip() for p in info.value.problems) == [
        "cdrom_type", "destroy", "http_port_min", "ip_settle_timeout"]
    assert all(p.startswith(f"{bad}: ") for p in info.value.problems)
