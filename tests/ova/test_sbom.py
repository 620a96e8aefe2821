"""The SBOM: the package inventory collected for real (chroot) and from recorded lists,
and the CycloneDX 1.6 document the post-processor puts in and beside the OVA."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from helpers.chroot import PLAYBOOKS, chroot_unavailable, make_debian_root, run_playbook
from helpers.ova import (
    member_bytes,
    packer_build_with_record,
    run_cli,
)

from imagebuilder.errors import InputError
from imagebuilder.ova.build_record import (
    INVENTORY_NAME,
)
from imagebuilder.ova.ovf import parse_ovf
from imagebuilder.ova.sbom import parse_inventory, read_inventory, sbom_bytes, sbom_document

STEM = "ubuntu-2204-kube-v1.37.1"
#: ``rpm -qa --qf`` as the redhat task file asks it, recorded on a Rocky Linux 9 image.
RPM_LINES = ["bash\t5.1.8-9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm",
             "openssl-libs\t1:3.0.7-27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm",
             "gpg-pubkey\t5a6340b3-6229229e\t(none)\t(none)"]
#: Flatcar's package database as the flatcar task file lists it.
FLATCAR_LINES = ["sys-apps/systemd-255.8-r2", "app-containers/containerd-1.7.23",
                 "sys-kernel/coreos-kernel-6.6.60"]


def schema_errors(data: bytes) -> object:
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())


def test_the_validator_does_reject_a_broken_document():
    inventory = parse_inventory(json.dumps({"manager": "dpkg", "packages": [
        "bash\t5.2\tamd64\tbash"]}).encode(), "x")
    document = sbom_document(STEM, "kube-v1.37.1", 1700000000, inventory, [])
    assert schema_errors(sbom_bytes(document)) is None
    document["components"][0]["type"] = "not-a-type"
    assert schema_errors(sbom_bytes(document)) is not None


@pytest.mark.parametrize("manager,lines,purl", [
    ("rpm", RPM_LINES, "pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1"),
    ("flatcar", FLATCAR_LINES, "pkg:generic/flatcar/sys-apps/systemd@255.8-r2"),
])
def test_recorded_package_lists(manager, lines, purl):
    inventory = parse_inventory(json.dumps({"manager": manager, "distro": "Rocky",
                                            "packages": lines}).encode(), "recorded")
    assert len(inventory.packages) == 3
    data = sbom_bytes(sbom_document(STEM, "kube-v1.37.1", 1700000000, inventory, None))
    assert schema_errors(data) is None
    document = json.loads(data)
    assert purl in {c["purl"] for c in document["components"]}
    assert document["compositions"][0]["aggregate"] == "incomplete"  # no build record


def test_not_an_inventory():
    with pytest.raises(InputError, match="not one of dpkg, rpm, flatcar"):
        parse_inventory(b'{"manager": "apk", "packages": ["x\\t1"]}', "inv.json")
    with pytest.raises(InputError, match="not a package inventory"):
        parse_inventory(b"[1, 2]", "inv.json")


@pytest.fixture
def build(checkout, tmp_path, monkeypatch):
    return packer_build_with_record(checkout, tmp_path / "output", monkeypatch)


def test_the_post_processor_puts_the_sbom_in_and_beside_the_ova(build):
    (build / INVENTORY_NAME).write_text(json.dumps({
        "manager": "dpkg", "distro": "ubuntu",
        "packages": ["bash\t5.1-6ubuntu1.1\tamd64\tbash", "libc6\t2.35-0ubuntu3.8\tamd64\tglibc"]}))
    result = run_cli("ova", "assemble", "--from-packer", str(build))
    assert result.returncode == 0, result.stderr
    assert re.search(r"SBOM: 2 dpkg packages, \d+ downloads", result.stderr)
    ova = build / f"{STEM}.ova"
    with tarfile.open(ova) as tar:
        assert tar.getnames() == [f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}-disk-0.vmdk",
                                  f"{STEM}.cdx.json"]
    sbom = member_bytes(ova, f"{STEM}.cdx.json")
    assert (build / f"{STEM}.cdx.json").read_bytes() == sbom
    assert schema_errors(sbom) is None
    assert f"SHA256({STEM}.cdx.json)= " in member_bytes(ova, f"{STEM}.mf").decode()
    refs = parse_ovf(member_bytes(ova, f"{STEM}.ovf"), "ovf").files
    assert [f.href for f in refs] == [f"{STEM}-disk-0.vmdk", f"{STEM}.cdx.json"]
    components = {c["name"]: c for c in json.loads(sbom)["components"]}
    assert components["containerd"]["hashes"] == [
        {"alg": "SHA-256", "content": "d65eda6a188aac1006848d8060099be88ba9c4bcddbfd9a23a961194710d0dd4"}]
    assert components["libc6"]["purl"] == "pkg:deb/ubuntu/libc6@2.35-0ubuntu3.8?arch=amd64"
    assert run_cli("ova", "verify", str(ova)).returncode == 0


def test_without_an_inventory_the_build_works_and_says_so(build):
    result = run_cli("ova", "assemble", "--from-packer", str(build))
    assert result.returncode == 0, result.stderr
    assert "no SBOM: the build left no package inventory" in result.stderr
    assert "communicator none" in result.stderr
    assert not (build / f"{STEM}.cdx.json").exists()


def test_an_inventory_older_than_the_build_is_not_used(build, checkout, tmp_path):
    inventory = build / INVENTORY_NAME
    inventory.write_text('{"manager": "dpkg", "packages": ["bash\\t5\\tamd64\\tbash"]}')
    os.utime(inventory, (1, 1))
    result = run_cli("ova", "assemble", "--from-packer", str(build))
    assert result.returncode == 0, result.stderr
    assert "lists an earlier build's packages" in result.stderr
    assert not (build / f"{STEM}.cdx.json").exists()


@pytest.mark.chroot
@pytest.mark.slow
@pytest.mark.skipif(chroot_unavailable() is not None, reason=chroot_unavailable() or "")
def test_inventory_of_a_real_debian_root(tmp_path):
    """The package_inventory role through Ansible's chroot connection, against a
    debootstrapped Debian: every package dpkg knows, with its version."""
    root = make_debian_root(tmp_path / "root")
    playbook = tmp_path / "inventory.yml"
    playbook.write_text(f"""
- hosts: all
  gather_facts: true
  vars_files: [{PLAYBOOKS / 'vars' / 'main.yml'}]
  tasks:
    - ansible.builtin.include_role:
        name: package_inventory
""")
    target = tmp_path / "out" / INVENTORY_NAME
    target.parent.mkdir()
    run = run_playbook(playbook, root, {"ib_package_inventory": str(target)}, tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    inventory = read_inventory(target)
    assert inventory.manager == "dpkg" and inventory.distro == "debian"
    listed = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f=${Package} ${Version}\n"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    expected = {tuple(line.split(" ", 1)) for line in listed if line}
    assert {(p.name, p.version) for p in inventory.packages} == expected
    assert not (root / "tmp" / INVENTORY_NAME).exists()
    data = sbom_bytes(sbom_document(STEM, "kube-v1.37.1", 1700000000, inventory, []))
    assert schema_errors(data) is None
