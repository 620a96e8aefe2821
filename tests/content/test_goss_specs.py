"""The goss specs (packer/goss/): rendered as goss renders them, for every OS's
variables with the optional content off and on, parsed and checked against goss's
resource schema; and every file or unit a role puts into the image has a goss check.

goss itself is not installed here; tests/gossrender is Go's text/template with the
functions our specs use, built once per session.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers.common import REPO
from helpers.planning import plan_for

from imagebuilder.config.checkout import Checkout

GOSS = REPO / "packer" / "goss"
ANSIBLE = REPO / "packer" / "ansible"
PROVISIONER = json.loads((GOSS / "provisioner.json").read_text())
#: The Linux specs (Windows' own: tests/content/test_windows_goss.py)
OSES = sorted(p.stem for p in (REPO / "ova").glob("*.json")
              if p.stem not in ("vsphere", "vmx") and not p.stem.startswith("windows-"))

#: Every optional feature on, as a user would turn them on (custom roles included).
ALL_ON = {
    "load_additional_components": "true", "additional_executables": "true",
    "additional_executables_list": "https://example.com/a/tool-a,https://example.com/b/tool-b",
    "additional_executables_destination_path": "/opt/extra/bin",
    "additional_registry_images": "true",
    "additional_registry_images_list": "registry.example/one:1.0,registry.example/two:2.0",
    "additional_s3": "true", "additional_s3_destination_path": "/opt/extra/from-s3",
    "ecr_credential_provider": "true", "block_nouveau_loading": "true",
    "node_custom_roles_pre": "gpu", "custom_role_names": "security multipathd",
    "containerd_gvisor_runtime": "true", "containerd_wasm_shims_runtimes": "spin",
    "containerd_image_pull_progress_timeout": "5m", "containerd_enable_limit_no_file": "true",
    "enable_containerd_audit": "true",
}

_SCALAR = {"type": ["string", "number", "boolean"]}
_MATCHERS = {"type": "array", "items": {"type": ["string", "object"]}}


def _resource(**props) -> dict:
    # null: a file whose every entry is conditional (goss reads it as an empty map)
    return {"type": ["object", "null"], "additionalProperties": {
        "type": "object", "additionalProperties": False,
        "properties": {"skip": {"type": "boolean"}, "title": {"type": "string"},
                       "meta": {"type": "object"}, **props}}}


#: goss's resource types and the attributes our specs may use (goss rejects others).
GOSS_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "gossfile": {"type": "object", "additionalProperties": {"type": "object"}},
        "file": _resource(exists={"type": "boolean"},
                          filetype={"enum": ["file", "directory", "symlink"]},
                          mode={"type": "string", "pattern": "^0[0-7]{3,4}$"},
                          size={"type": "integer", "minimum": 0},
                          owner={"type": "string"}, group={"type": "string"},
                          contents=_MATCHERS, contains=_MATCHERS,
                          sha256={"type": "string"}, **{"linked-to": {"type": "string"}}),
        "command": _resource(**{"exit-status": {"type": "integer"}}, stdout=_MATCHERS,
                             stderr=_MATCHERS, timeout={"type": "integer"},
                             exec={"type": "string"}),
        "service": _resource(enabled={"type": "boolean"}, running={"type": "boolean"}),
        "package": _resource(installed={"type": "boolean"},
                             versions={"type": ["array", "object"]}),
        "kernel-param": _resource(value={"type": "string"}),
        "user": _resource(exists={"type": "boolean"}, uid=_SCALAR, gid=_SCALAR,
                          groups={"type": "array"}, home={"type": "string"},
                          shell={"type": "string"}),
    },
}


def goss_vars(os_name: str, overrides: dict[str, str] | None = None) -> dict:
    """goss-vars.yaml with vars_inline over it, as the goss provisioner passes them
    for a local build of ``os_name`` (``overrides`` as a user's var file would set them)."""
    plan = plan_for(Checkout(REPO), f"node-ova-local-{os_name}",
                    {"RHSM_USER": "user", "RHSM_PASS": "stand-in"})  # RHEL needs them
    merged = plan.merged.resolved({})
    values = {**merged, **(overrides or {})}
    inline = {k: re.sub(r"\{\{user `(\w+)`\}\}", lambda m: values.get(m.group(1), ""), v)
              for k, v in PROVISIONER["vars_inline"].items()}
    base = yaml.safe_load((GOSS / "goss-vars.yaml").read_text())
    # variables the template does not declare yet reach goss from a user's var file only
    undeclared = {k: v for k, v in (overrides or {}).items() if k in base and k not in merged}
    return {**base, **undeclared, **inline}


def render(gossrender: Path, spec: Path, variables: dict) -> dict:
    run = subprocess.run([str(gossrender), str(spec)], input=json.dumps(variables),
                         capture_output=True, text=True)
    assert run.returncode == 0, f"{spec.name}: {run.stderr}"
    return yaml.safe_load(run.stdout) or {}


def render_all(gossrender: Path, variables: dict) -> dict[str, dict]:
    """Every spec goss.yaml includes, rendered: {file name: parsed spec}."""
    top = render(gossrender, GOSS / "goss.yaml", variables)
    out = {"goss.yaml": top}
    for name in top["gossfile"]:
        out[name] = render(gossrender, GOSS / name, variables)
    return out


def merged_keys(specs: dict[str, dict]) -> dict[str, dict]:
    """resource type -> {key: attributes} over all files, as goss merges them."""
    merged: dict[str, dict] = {}
    for spec in specs.values():
        for kind, resources in spec.items():
            if kind != "gossfile":
                for key, attrs in (resources or {}).items():
                    assert key not in merged.get(kind, {}), f"{kind} {key} defined twice"
                    merged.setdefault(kind, {})[key] = attrs
    return merged


@pytest.mark.parametrize("features", ["defaults", "all-on"])
@pytest.mark.parametrize("os_name", OSES)
def test_specs_render_and_match_the_schema(gossrender, os_name, features):
    variables = goss_vars(os_name, ALL_ON if features == "all-on" else None)
    specs = render_all(gossrender, variables)
    assert sorted(specs) == sorted(["goss.yaml", *sorted(p.name for p in GOSS.glob("goss-*.yaml")
                                                          if p.name != "goss-vars.yaml")])
    for name, spec in specs.items():
        jsonschema.validate(spec, GOSS_SCHEMA)
        for kind in ("file", "command"):
            for key, attrs in (spec.get(kind) or {}).items():
                assert "<no value>" not in key and "None" not in key, (name, key)
                for pattern in attrs.get("contents", []) + attrs.get("stdout", []):
                    if isinstance(pattern, str) and re.fullmatch(r"!?/.*/", pattern):
                        re.compile(pattern.lstrip("!")[1:-1])
    merged = merged_keys(specs)
    assert merged["service"]["containerd"] == {"enabled": True, "running": True}
    assert merged["service"]["kubelet"]["enabled"] is True
    assert merged["file"]["/etc/machine-id"] == {"exists": True, "size": 0}
    assert merged["kernel-param"]["net.ipv4.ip_forward"] == {"value": "1"}
    kube = variables["kubernetes_version"]
    assert kube.startswith("v1.") and merged["file"]["/etc/kubernetes-version"]["contents"] == [kube]


def test_upstream_checks_for_an_ova_node(gossrender):
    """What upstream's specs check on an Ubuntu OVA node, with the build's values."""
    variables = goss_vars("ubuntu-2404")
    merged = merged_keys(render_all(gossrender, variables))
    services = merged["service"]
    assert services["auditd"] == {"enabled": True, "running": True}
    assert services["chrony"] == {"enabled": True, "running": True}
    assert services["conntrackd"] == {"enabled": False, "running": False}
    assert merged["package"]["ntp"] == {"installed": False}
    version = variables["kubernetes_deb_version"]
    assert version
    for name in ("kubeadm", "kubelet", "kubectl"):
        assert merged["package"][name]["versions"] == {
            "contain-element": {"match-regexp": f"^{version}"}}
    images = merged["command"]["/usr/local/bin/ctr --namespace=k8s.io images ls -q"]["stdout"]
    assert f"registry.k8s.io/kube-apiserver:{variables['kubernetes_version']}" in images
    assert variables["pause_image"] in images
    commands = merged["command"]
    assert commands["ls /etc/ssh/ssh_host_*_key"] == {"exit-status": 2}
    assert any(k.startswith("du -sm /var/log") for k in commands)
    assert any("/var/lib/cloud/instance" in k for k in commands)
    config = merged["file"]["/etc/containerd/config.toml"]["contents"]
    assert 'imports = ["/etc/containerd/conf.d/*.toml"]' in config
    assert 'config_path = "/etc/containerd/certs.d"' in config
    assert merged["file"]["/etc/systemd/system/containerd.service.d/http-proxy.conf"] == \
        {"exists": False}
    for unit in ("cloud-config", "cloud-final"):
        dropin = merged["file"][f"/etc/systemd/system/{unit}.service.d/boot-order.conf"]
        assert dropin["contents"] == ["After=containerd.service"]
    # the optional content is not checked when it is off
    for path in ("/etc/multipath.conf", "/etc/modprobe.d/blocklist-nouveau.conf",
                 "/opt/bin/ecr-credential-provider"):
        assert path not in merged["file"]


@pytest.mark.parametrize("load_additional", ["false", "true"])
def test_http_installs_check_the_release_images(gossrender, load_additional):
    """An "http" install loads the release's image archives instead of pulling: the
    four control plane images under the names it gives them, and pause, coredns and
    etcd only with kubernetes_load_additional_imgs."""
    variables = goss_vars("ubuntu-2404", {"kubernetes_source_type": "http",
                                          "kubernetes_load_additional_imgs": load_additional})
    merged = merged_keys(render_all(gossrender, variables))
    images = merged["command"]["/usr/local/bin/ctr --namespace=k8s.io images ls -q"]["stdout"]
    version = variables["kubernetes_version"]
    expected = [f"registry.k8s.io/{name}:{version}" for name in
                ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")]
    assert images == expected + (["/pause:", "/coredns:", "/etcd:"]
                                 if load_additional == "true" else [])
    flatcar = merged_keys(render_all(gossrender, goss_vars("flatcar")))  # "http", and pulls
    assert goss_vars("flatcar")["pause_image"] in \
        flatcar["command"]["/opt/bin/ctr --namespace=k8s.io images ls -q"]["stdout"]


def test_optional_content_is_checked_when_on(gossrender):
    merged = merged_keys(render_all(gossrender, goss_vars("ubuntu-2404", ALL_ON)))
    files = merged["file"]
    assert files["/opt/extra/bin/tool-a"] == {"exists": True, "filetype": "file", "mode": "0711"}
    assert "/opt/extra/bin/tool-b" in files
    assert files["/opt/extra/from-s3"] == {"exists": True}
    assert files["/opt/bin/ecr-credential-provider"]["mode"] == "0755"
    # upstream's ecr_credential_provider.json sets "" for these: goss falls back to the role defaults
    empty = goss_vars("ubuntu-2404", {**ALL_ON, "ecr_credential_provider_install_dir": "",
                                      "ecr_credential_provider_binary_filename": ""})
    assert "/opt/bin/ecr-credential-provider" in merged_keys(render_all(gossrender, empty))["file"]
    assert "--image-credential-provider-bin-dir" not in str(files["/etc/default/kubelet"])
    assert files["/etc/modprobe.d/blocklist-nouveau.conf"]["contents"][-1] == \
        "install nouveau /bin/false"
    assert "/etc/audit/rules.d/60-imagebuilder-security.rules" in files
    assert "/etc/multipath.conf" in files
    assert files["/etc/systemd/system/containerd.service.d/limit-nofile.conf"]["contents"] == \
        ["LimitNOFILE=1048576"]
    images = merged["command"]["/usr/local/bin/ctr --namespace=k8s.io images ls -q | sort -u"]
    assert images["stdout"] == ["registry.example/one:1.0", "registry.example/two:2.0"]
    assert "/usr/local/bin/runsc --version" in merged["command"]
    # RHEL keeps the kubelet's environment elsewhere; Flatcar has no nouveau blocklist
    rhel = merged_keys(render_all(gossrender, goss_vars("rhel-9", ALL_ON)))["file"]
    assert "/etc/sysconfig/kubelet" in rhel and "/etc/default/kubelet" not in rhel
    flatcar = merged_keys(render_all(gossrender, goss_vars("flatcar", ALL_ON)))["file"]
    assert "/etc/modprobe.d/blocklist-nouveau.conf" not in flatcar
    assert "/boot/flatcar/first_boot" in flatcar


def test_every_spec_variable_is_given():
    """goss renders with missingkey=error: each .Vars name comes from goss-vars.yaml or
    the provisioner's vars_inline; every vars_inline value is a declared Packer variable."""
    base = yaml.safe_load((GOSS / "goss-vars.yaml").read_text())
    used = set()
    for spec in GOSS.glob("goss*.yaml"):
        used |= set(re.findall(r"\.Vars\.(\w+)", spec.read_text()))
    assert used - set(base) - set(PROVISIONER["vars_inline"]) == set()
    declared = set(json.loads((REPO / "packer" / "node.json").read_text())["variables"])
    referenced = set(re.findall(r"\{\{user `(\w+)`\}\}", json.dumps(PROVISIONER)))
    assert referenced <= declared


# --- every file or unit a role puts into the image has a goss check -------------

#: What a role writes (role, module, destination as written in the task) and the goss
#: resource key that checks it in some OS's rendered spec (all features on).
COVERED = {
    ("containerd", "template", "/etc/containerd/config.toml"): "/etc/containerd/config.toml",
    ("containerd", "template", "/etc/crictl.yaml"): "/etc/crictl.yaml",
    ("containerd", "template", "{{ containerd_unit_dir }}/containerd.service"): "containerd",
    # containerd_service_url's unit, and its ExecStart drop-in: the running service checks them
    ("containerd", "download", "{{ containerd_unit_dir }}/containerd.service"): "containerd",
    ("containerd", "copy", "/etc/systemd/system/containerd.service.d/10-imagebuilder-bin-dir.conf"):
        "containerd",
    ("containerd", "unit", "containerd"): "containerd",
    ("containerd", "unarchive", "{{ containerd_bin_dir }}"): "/usr/local/bin/containerd",
    ("containerd", "unarchive", "{{ containerd_bin_dir | dirname }}"): "/usr/local/bin/containerd",
    ("containerd", "download", "{{ containerd_runc_path }}"): "/usr/local/sbin/runc",
    ("containerd", "file", "{{ item }}"): "/etc/containerd/certs.d",
    ("containerd", "copy", "/etc/systemd/system/containerd.service.d/limit-nofile.conf"):
        "/etc/systemd/system/containerd.service.d/limit-nofile.conf",
    ("containerd", "download", "{{ containerd_extra_bin_dir }}/{{ item }}"):
        "/usr/local/bin/runsc --version",
    ("containerd", "unarchive", "{{ containerd_extra_bin_dir }}"):
        "grep -E 'io\\.containerd\\.(lunatic|slight|spin|wws)\\.v' /etc/containerd/config.toml",
    ("kubernetes", "download", "{{ kubernetes_bin_dir }}/{{ item }}"): "/usr/bin/kubelet --version",
    ("kubernetes", "template", "{{ kubernetes_unit_dir }}/kubelet.service"): "kubelet",
    ("kubernetes", "template", "{{ kubernetes_unit_dir }}/kubelet.service.d/10-kubeadm.conf"):
        "kubelet",
    ("kubernetes", "unit", "kubelet"): "kubelet",
    ("kubernetes", "copy", "{{ kubernetes_env_file }}"): "/etc/default/kubelet",
    ("kubernetes", "copy", "/etc/kubernetes-version"): "/etc/kubernetes-version",
    ("node", "copy", "{{ node_modules_file }}"): "/etc/modules-load.d/kubernetes.conf",
    ("node", "template", "{{ node_sysctl_file }}"): "/etc/sysctl.d/99-kubernetes.conf",
    ("node", "unit", "{{ node_time_service[ib_os] }}"): "chrony",
    ("node", "unit", "{{ node_audit_service }}"): "auditd",
    ("node", "template", "/etc/audit/rules.d/containerd.rules"): "/etc/audit/rules.d/containerd.rules",
    ("node", "template", "/etc/image-builder-release"): "/etc/image-builder-release",
    ("node", "template", "/etc/udev/rules.d/90-etcd-tuning.rules"):
        "/etc/udev/rules.d/90-etcd-tuning.rules",
    ("node", "template", "{{ node_etcd_tuning_script }}"): "/usr/local/bin/etcd-network-tuning.sh",
    ("providers", "copy", "{{ providers_cloud_init_config }}"):
        "/etc/cloud/cloud.cfg.d/99_vmware-datasource.cfg",
    ("providers", "unit", "{{ providers_vmtools_service[ib_os] }}"): "open-vm-tools",
    ("providers", "copy", "/etc/systemd/system/{{ item }}.service.d/boot-order.conf"):
        "/etc/systemd/system/cloud-final.service.d/boot-order.conf",
    ("setup", "replace", "{{ item }}"): "/etc/systemd/scripts/ip4save",
    ("sysprep", "copy", "/etc/machine-id"): "/etc/machine-id",
    ("sysprep", "copy", "/boot/flatcar/first_boot"): "/boot/flatcar/first_boot",
    ("sysprep", "template", "{{ sysprep_remove_unit }}"): "imagebuilder-remove-build-user",
    ("sysprep", "unit", "{{ sysprep_remove_unit | basename }}"): "imagebuilder-remove-build-user",
    ("sysprep", "template", "{{ sysprep_remove_script }}"): "imagebuilder-remove-build-user",
    ("load_additional_components", "get_url",
     "{{ additional_executables_destination_path }}/{{ item | urlsplit('path') | basename }}"):
        "/opt/extra/bin/tool-a",
    ("load_additional_components", "s3_download", "{{ additional_s3_destination_path }}"):
        "/opt/extra/from-s3",
    ("ecr_credential_provider", "get_url",
     "{{ ecr_credential_provider_install_dir }}/{{ ecr_credential_provider_binary_filename }}"):
        "/opt/bin/ecr-credential-provider",
    ("ecr_credential_provider", "template", "{{ ecr_credential_provider_config }}"):
        "/var/usr/ecr-credential-provider/ecr-credential-provider-config",
    ("ecr_credential_provider", "lineinfile", "{{ ecr_credential_provider_kubelet_env }}"):
        "/etc/default/kubelet",
    ("gpu", "template", "/etc/modprobe.d/blocklist-nouveau.conf"):
        "/etc/modprobe.d/blocklist-nouveau.conf",
    ("security", "template", "{{ security_audit_rules_file }}"):
        "/etc/audit/rules.d/60-imagebuilder-security.rules",
    ("security", "unit", "auditd"): "auditd",
    ("multipathd", "copy", "/etc/multipath.conf"): "/etc/multipath.conf",
}

#: Written but deliberately without a goss check, and why.
UNCHECKED = {
    "build only": [
        ("containerd", "download", "/var/cache/imagebuilder/{{ containerd_url | basename }}"),
        ("containerd", "download", "/var/cache/imagebuilder/{{ crictl_url | basename }}"),
        ("containerd", "download", "/var/cache/imagebuilder/wasm-shim-{{ item }}.tar.gz"),
        ("containerd", "template", "/etc/systemd/system/containerd.service.d/http-proxy.conf"),
        ("kubernetes", "download", "/var/cache/imagebuilder/cni-plugins.tgz"),
        ("load_additional_components", "get_url",
         "{{ load_additional_components_tmp.path }}/{{ item | hash('sha1') }}.tar"),
        ("gpu", "download", "{{ gpu_nvidia_tmp.path }}/NVIDIA-Linux.run"),
        ("gpu", "s3_download", "{{ gpu_nvidia_tmp.path }}/NVIDIA-Linux.run"),
        ("security", "download", "{{ security_trivy_tmp.path }}/trivy.tar.gz"),
        ("security", "download", "{{ security_falco_tmp.path }}/falco.tar.gz"),
        ("setup", "file", "{{ node_ansible_tmpdir }}"),
        ("setup", "template", "/etc/apt/apt.conf.d/90imagebuilder-proxy"),
        ("providers", "get_url", "/tmp/cloud-init-vmware.sh"),  # run, then removed
        # the pull's kubeadm configuration; only Flatcar keeps it, as upstream
        ("kubernetes", "template", "/etc/kubeadm.yml"),
        # the release's image archives, imported into containerd (checked there), then removed
        ("kubernetes", "download", "{{ kubernetes_images_tmp.path }}/{{ item }}"),
    ],
    "written on the controller (Packer's machine), not into the image": [
        ("package_inventory", "copy", "{{ ib_package_inventory }}"),
    ],
    "the generic roles: their callers' destinations are listed": [
        ("download", "get_url", "{{ download_dest }}"),
    ],
    "directories of checked files": [
        ("kubernetes", "file", "{{ item }}"), ("kubernetes", "file", "/opt/cni/bin"),
        ("kubernetes", "file", "/etc/apt/keyrings"),
        ("node", "file", "/etc/udev/rules.d"), ("node", "file", "{{ node_etcd_tuning_script | dirname }}"),
        ("node", "file", "/etc/systemd/network/{{ item }}.d"),
        ("node", "file", "/etc/systemd/resolved.conf.d"),
        ("providers", "file", "/etc/systemd/system/{{ item }}.service.d"),
        ("sysprep", "file", "{{ sysprep_remove_script | dirname }}"),
        ("load_additional_components", "file", "{{ additional_executables_destination_path }}"),
        ("load_additional_components", "file",
         "{{ additional_s3_destination_path if additional_s3_destination_path is match('.*/$') "
         "else additional_s3_destination_path | dirname }}"),
        ("ecr_credential_provider", "file", "{{ item }}"),
        ("gpu", "file", "/etc/modprobe.d"), ("gpu", "file", "/etc/nvidia/ClientConfigToken"),
        ("gpu", "file", "/opt/extensions/nvidia-runtime"),
        ("security", "file", "{{ security_audit_rules_file | dirname }}"),
    ],
    "package sources and package-manager settings (checked through the packages they install)": [
        ("kubernetes", "copy", "/etc/apt/sources.list.d/kubernetes.list"),
        ("kubernetes", "get_url", "/etc/apt/keyrings/kubernetes.asc"),
        ("kubernetes", "unarchive", "/opt/cni/bin"),
        ("setup", "copy", "/etc/apt/sources.list"),
        ("setup", "copy", "{{ ('/etc/yum.repos.d/' if ib_os in ['redhat', 'photon'] else "
                          "'/etc/apt/sources.list.d/') ~ (item | basename) }}"),
        ("setup", "lineinfile", "/etc/tdnf/tdnf.conf"),
        ("setup", "lineinfile", "{{ '/etc/dnf/dnf.conf' if ansible_distribution_major_version | int >= 8 "
                                "else '/etc/yum.conf' }}"),
        ("setup", "template", "/etc/apt/sources.list.d/ubuntu.sources"),
        ("setup", "copy", "/etc/pip.conf"),
        ("sysprep", "lineinfile", "/etc/dnf/dnf.conf"), ("sysprep", "lineinfile", "/etc/tdnf/tdnf.conf"),
        ("sysprep", "lineinfile", "{{ sysprep_freeze_file }}"),
        ("sysprep", "lineinfile", "{{ item.path }}"), ("sysprep", "lineinfile", "{{ item.0.path }}"),
    ],
    "boot loader, network and guest settings a running system only shows indirectly": [
        ("node", "copy", "/etc/default/grub.d/90-imagebuilder.cfg"),
        ("node", "lineinfile", "/etc/default/grub"),
        ("node", "lineinfile", "/boot/photon.cfg"), ("node", "lineinfile", "/oem/grub.cfg"),
        ("node", "replace", "/etc/fstab"),
        ("node", "copy", "/etc/sysctl.d/98-photon-tcp.conf"),
        ("node", "copy", "/etc/systemd/network/{{ item }}.d/50-leak-local-to-dns.conf"),
        ("node", "copy", "/etc/systemd/resolved.conf.d/50-leak-local-to-dns.conf"),
        ("providers", "copy", "/etc/cloud/ds-identify.cfg"),
        ("providers", "copy", "/etc/vmware-tools/tools.conf"),
        ("sysprep", "copy", "/etc/hostname"), ("sysprep", "copy", "/etc/hosts"),
        ("sysprep", "copy", "{{ item.path }}"),
    ],
    "optional vendor content whose presence depends on values goss does not get": [
        ("gpu", "template", "/etc/nvidia/gridd.conf"),
        ("gpu", "s3_download", "/etc/nvidia/ClientConfigToken/client_configuration_token.tok"),
        ("gpu", "copy", "/etc/flatcar/enabled-sysext.conf"),
        ("gpu", "download", "/opt/extensions/nvidia-runtime/{{ gpu_flatcar_nvidia_runtime_filename }}"),
        ("gpu", "file", "/etc/extensions/nvidia-runtime.raw"),
        ("security", "unarchive", "{{ security_trivy_install_dir }}"),
        ("security", "unarchive", "/"),
        ("security", "template", "/etc/systemd/system/falco-modern-bpf.service"),
        ("security", "unit", "falco-modern-bpf"),
        ("kubernetes", "template", "{{ kubernetes_dropin_dir }}/11-resource-sizing.conf"),
        ("kubernetes", "template", "{{ kubernetes_resource_sizing_script }}"),
    ],
}

_WRITERS = {"template": "dest", "copy": "dest", "get_url": "dest", "unarchive": "dest",
            "lineinfile": "path", "blockinfile": "path", "replace": "path"}


def _writes(node, role: str, out: set) -> None:
    if isinstance(node, list):
        for item in node:
            _writes(item, role, out)
        return
    if not isinstance(node, dict):
        return
    for module, args in node.items():
        short = module.rsplit(".", 1)[-1]
        if not isinstance(args, dict):
            continue
        if short in _WRITERS:
            out.add((role, short, args[_WRITERS[short]]))
        elif short == "file" and args.get("state") in ("directory", "touch", "link"):
            out.add((role, short, args.get("path") or args.get("dest")))
        elif short == "systemd_service" and args.get("enabled") in (True, "true"):
            out.add((role, "unit", args["name"]))
        elif short == "include_role" and args.get("name") in ("download", "s3_download"):
            v = node.get("vars", {})
            out.add((role, args["name"], v.get("download_dest") or v.get("s3_download_dest")))
    for key in ("block", "rescue", "always"):
        _writes(node.get(key), role, out)


def role_writes() -> set[tuple[str, str, str]]:
    """(role, module, destination) of every task that puts a file or unit in place."""
    out: set = set()
    for path in sorted((ANSIBLE / "roles").glob("*/tasks/*.yml")):
        _writes(yaml.safe_load(path.read_text()) or [], path.parts[-3], out)
    return out


def test_every_file_and_unit_a_role_writes_is_checked_by_goss(gossrender):
    writes = role_writes()
    unchecked = {w for group in UNCHECKED.values() for w in group}
    missing = sorted(w for w in writes if w not in COVERED and w not in unchecked)
    assert not missing, ("written by a role but neither checked by goss (COVERED) nor "
                         f"listed with a reason (UNCHECKED): {missing}")
    keys: set[str] = set()
    for os_name in ("ubuntu-2404", "rhel-9", "photon-5", "flatcar"):
        for kind, resources in merged_keys(render_all(gossrender,
                                                      goss_vars(os_name, ALL_ON))).items():
            keys |= set(resources)
    for write in sorted(w for w in writes if w in COVERED):
        assert COVERED[write] in keys, f"{write}: no goss check {COVERED[write]!r}"
    assert len(writes) > 50  # the scan did find the roles' tasks
