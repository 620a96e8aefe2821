"""The unattended install files, rendered for every OS of the catalog, checked by the
formats' own validators: Canonical's autoinstall schema, pykickstart's ksvalidator,
the Ignition 3.4 schema, and the Photon installer's own rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers.common import REPO
from helpers.planning import plan_for

from imagebuilder.config.checkout import find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.planning.inspect import render_target
from imagebuilder.planning.install_files import render_install_files

VALIDATORS = Path(os.environ.get("IB_VALIDATORS_DIR") or REPO.parent / "shared" / "validators")


def validator_schema(name: str) -> dict:
    """A format's own schema from the team's shared/validators (beside the checkout)."""
    path = VALIDATORS / name
    assert path.is_file(), (f"{path}: missing; the team's shared/ must sit beside the checkout "
                            "(or set IB_VALIDATORS_DIR)")
    return json.loads(path.read_text())
OS_NAMES = find_checkout().os_names()
KSVALIDATOR = Path(sys.executable).parent / "ksvalidator"
ENV = {"RHSM_USER": "someone", "RHSM_PASS": "rhsm-Secret-42"}

#: Keys the Photon installer accepts: Photon 4's installer (photon_installer/
#: installer.py, Installer.known_keys). It refuses a ks.json with any other key
#: ("Unknown install_config keys"), and later installers only add keys.
PHOTON_KNOWN_KEYS = {
    "additional_files", "additional_packages", "additional_rpms_path", "arch", "autopartition",
    "bootmode", "disk", "eject_cdrom", "hostname", "install_linux_esx", "live", "log_level",
    "ostree", "packages", "packagelist_file", "partition_type", "partitions", "network",
    "password", "postinstall", "postinstallscripts", "public_key", "search_path",
    "setup_grub_script", "shadow_password", "type", "ui"}
PHOTON_KERNEL_FLAVORS = {"linux", "linux-esx", "linux-rt", "linux-aws", "linux-secure"}


def os_of(distro: str) -> list[str]:
    data = {n: json.loads((REPO / "ova" / f"{n}.json").read_text()) for n in OS_NAMES}
    return [n for n in OS_NAMES if data[n]["distro_name"] in distro.split("|")]


def render(checkout, os_name: str, tmp_path: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Render ``os_name``'s install files as a local build would; returns them by name."""
    plan = plan_for(checkout, f"node-ova-local-{os_name}", ENV, strict=False)
    files = render_install_files(plan)
    values = plan.merged.resolved(plan.knobs.packer_env(ENV))
    return {p.name: p for p in files}, values


@pytest.mark.parametrize("os_name", os_of("ubuntu"))
def test_ubuntu_autoinstall_validates(checkout, tmp_path, os_name):
    files, values = render(checkout, os_name, tmp_path)
    assert set(files) == {"user-data", "meta-data"}
    assert all(p.parent.name == "cidata" for p in files.values())  # the CD, not HTTP
    text = files["user-data"].read_text()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    schema = validator_schema("subiquity-autoinstall-schema.json")
    jsonschema.validate(data["autoinstall"], schema,
                        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    identity = data["autoinstall"]["identity"]
    assert identity["username"] == "builder"
    assert identity["password"].startswith("$6$") and len(identity["password"]) > 60
    assert values["ssh_password"] not in text
    auto = data["autoinstall"]
    assert {"open-vm-tools", "openssh-server"} <= set(auto["packages"])
    assert auto["ssh"]["install-server"] is True
    assert any("/target/etc/sudoers.d/builder" in c for c in auto["late-commands"])
    meta = yaml.safe_load(files["meta-data"].read_text())
    assert meta["local-hostname"] == values["build_name"]


def test_autoinstall_schema_rejects_a_broken_file():
    """Negative control: the schema really checks (identity needs a password)."""
    schema = validator_schema("subiquity-autoinstall-schema.json")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "identity": {"username": "u", "hostname": "h"}},
                            schema)


def ksvalidate(path: Path, version: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KSVALIDATOR), "-v", version, str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("os_name", os_of("rhel|rockylinux|almalinux"))
def test_kickstart_passes_ksvalidator(checkout, tmp_path, os_name):
    files, values = render(checkout, os_name, tmp_path)
    ks = files["ks.cfg"]
    assert ks.parent.name == "http"
    version = f"RHEL{values['distro_version'].split('.')[0]}"
    run = ksvalidate(ks, version)
    assert run.returncode == 0, run.stdout + run.stderr
    text = ks.read_text()
    assert "--iscrypted --password=$6$" in text and values["ssh_password"] not in text
    if values["firmware"] == "efi":
        assert "part /boot/efi --fstype=efi" in text and "--disklabel=gpt" in text
    else:
        assert "/boot/efi" not in text and "--location=mbr" in text


def test_ksvalidator_rejects_a_broken_file(tmp_path):
    """Negative control: ksvalidator really checks what it is given."""
    bad = tmp_path / "bad.cfg"
    bad.write_text("text\nautopart --no-such-option\n")
    assert ksvalidate(bad, "RHEL9").returncode != 0


def test_kickstart_for_bios_and_efi(checkout, tmp_path):
    """Both firmwares validate for both RHEL versions (the catalog has one of each)."""
    from imagebuilder.planning.install_files import _environment
    env = _environment(REPO / "packer" / "install")
    for version in ("8", "9"):
        for firmware in ("bios", "efi"):
            text = env.get_template("kickstart/ks.cfg.j2").render(
                os_display_name=f"RHEL {version}", firmware=firmware, distro_version=version,
                build_name="t", ssh_username="builder", ssh_password_hash="$6$s$h",
                ssh_public_key="", disk_controller_type="pvscsi")
            path = tmp_path / f"ks-{version}-{firmware}.cfg"
            path.write_text(text)
            run = ksvalidate(path, f"RHEL{version}")
            assert run.returncode == 0, (version, firmware, run.stdout)


def test_flatcar_ignition_validates(checkout, tmp_path):
    files, values = render(checkout, "flatcar", tmp_path)
    ign = files["ignition.json"]
    assert ign.parent.name == "http"  # served by Packer, fetched by the boot command
    data = json.loads(ign.read_text())
    schema = validator_schema("ignition-v3_4-schema.json")
    jsonschema.validate(data, schema)
    assert data["ignition"]["version"] == "3.4.0"
    [user] = data["passwd"]["users"]
    assert user["name"] == "builder" and user["passwordHash"].startswith("$6$")
    assert "config" not in data["ignition"]  # nothing merged or fetched from elsewhere
    boot = json.loads((REPO / "ova" / "flatcar.json").read_text())
    assert "{{ .HTTPIP }}:{{ .HTTPPort }}/ignition.json" in boot["boot_command_prefix"]
    assert "-i /tmp/ignition.json" in boot["boot_command_prefix"]  # all of it, as upstream


@pytest.mark.parametrize("os_name", os_of("photon"))
def test_photon_ks_json_has_what_the_installer_requires(checkout, tmp_path, os_name):
    """What Photon's installer checks (installer.py _add_defaults/_check_install_config):

    - no key outside its known_keys: it refuses the whole file otherwise;
    - "disk": required ("No disk configured");
    - "packages" (or "packagelist_file"): the only source of what gets installed,
      with exactly one kernel flavour, else newer installers stop with "Attempting
      to install more than one linux flavor";
    - "partitions", when given: exactly one "/" and at most one size-0 partition;
    - "bootmode" one of bios/efi/dualboot; "password" with "crypted" and "text".
    Not required but needed by the build: "postinstall" creates the build user
    (the installer only sets root's password) with sudo, and enables sshd.
    """
    files, values = render(checkout, os_name, tmp_path)
    ks = files["ks.json"]
    assert ks.parent.name == "http"
    data = json.loads(ks.read_text())
    assert set(data) <= PHOTON_KNOWN_KEYS, set(data) - PHOTON_KNOWN_KEYS
    assert data["disk"].startswith("/dev/")
    assert len(PHOTON_KERNEL_FLAVORS & set(data["packages"])) == 1
    assert {"open-vm-tools", "openssh-server", "sudo", "cloud-init"} <= set(data["packages"])
    roots = [p for p in data["partitions"] if p.get("mountpoint") == "/"]
    assert len(roots) == 1 and sum(p["size"] == 0 for p in data["partitions"]) <= 1
    assert data["bootmode"] == ("efi" if values["firmware"] == "efi" else "bios")
    assert {"crypted", "text"} <= set(data["password"])
    post = "\n".join(data["postinstall"])
    assert data["postinstall"][0] == "#!/bin/sh"
    assert "useradd" in post and "-p '$6$" in post and " builder" in post
    assert "/etc/sudoers.d/builder" in post and "systemctl enable sshd" in post
    assert values["ssh_password"] not in ks.read_text()


def test_every_os_renders(checkout, tmp_path):
    """Every OS of the catalog has install files, rendered without leftovers (Windows'
    answer file: tests/content/test_windows_unattend.py)."""
    for os_name in (o for o in checkout.os_names() if not o.startswith("windows-")):
        files, _ = render(checkout, os_name, tmp_path)
        assert files, os_name
        for path in files.values():
            text = path.read_text()
            assert "{{" not in text.replace("{{ .HTTP", ""), (os_name, path)
            assert path.stat().st_mode & 0o077 == 0


def test_render_command_writes_inspectable_files(checkout, tmp_path, monkeypatch):
    """``python -m imagebuilder render`` writes install files and redacted variables."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "imagebuilder", "render",
                          "node-ova-vsphere-rhel-9", "--output", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (out / "http" / "ks.cfg").is_file()
    variables = json.loads((out / "packer-variables.json").read_text())
    assert variables["distro_name"] == "rhel" and variables["rhsm_pass"] == "<sensitive>"
    assert variables["ssh_password"] == "<sensitive>"
    everything = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "rhsm-Secret-42" not in everything and "rhsm-Secret-42" not in run.stdout
    ansible = json.loads((out / "ansible-vars.json").read_text())
    assert ansible["kubernetes_semver"] == variables["kubernetes_semver"]
    assert ansible["pause_image"] == variables["pause_image"]
    assert ansible["ib_communicator"] == "ssh"
    # nothing was written into the build's own work directory
    assert not (checkout.work_root).exists()


def test_render_target_function(checkout, tmp_path):
    written = render_target("node-ova-local-ubuntu-2204-efi", tmp_path / "o", checkout=checkout,
                            knobs=Knobs.from_env({}))
    names = {p.relative_to(tmp_path / "o").as_posix() for p in written}
    assert names == {"cidata/user-data", "cidata/meta-data", "packer-variables.json",
                     "ansible-vars.json", "packer-blocks.json", "downloads.json"}
    ansible = json.loads((tmp_path / "o" / "ansible-vars.json").read_text())
    assert ansible["extra_debs"] == "" and ansible["containerd_version"]
