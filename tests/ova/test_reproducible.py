"""SOURCE_DATE_EPOCH: the same disk and inputs give the same bytes."""

from __future__ import annotations

import os
import tarfile

import pytest
from helpers.ova import MiB, SigningCa, make_vmdk, member_bytes, run_cli

from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.ova.assemble import AssembleOptions
from imagebuilder.ova.ovf import parse_ovf

STEM = "ubuntu-2204-kube-v1.37.1"
EPOCH = 1700000000
INVENTORY = ('{"manager": "dpkg", "distro": "debian", "packages": '
             '["bash\\t5.2.15-2+b7\\tamd64\\tbash", "libc6\\t2.36-9+deb12u9\\tamd64\\tglibc"]}')


@pytest.fixture
def disk(checkout, tmp_path, monkeypatch):
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES", "SOURCE_DATE_EPOCH",
                 "IB_SIGNING_KEY", "IB_SIGNING_CERT", "IB_SIGNING_KEY_PASSPHRASE"):
        monkeypatch.delenv(knob, raising=False)
    return make_vmdk(tmp_path / "d.vmdk", "monolithicSparse",
                     data=[(MiB, os.urandom(2 * MiB))])


def make(disk, out, env, now, inventory=None):
    options = AssembleOptions.from_env(env)
    return assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", out, options=options,
                                    now=now, inventory=inventory))


def test_source_date_epoch_gives_the_same_bytes(disk, tmp_path):
    """Two assemblies at different times, converting the disk each time, signed and
    with an SBOM: byte-identical."""
    ca = SigningCa(tmp_path / "ca")
    inventory = tmp_path / "package-inventory.json"
    inventory.write_text(INVENTORY)
    env = ca.env(SOURCE_DATE_EPOCH=str(EPOCH))
    first = make(disk, tmp_path / "a", env, now=1767225600, inventory=inventory)
    second = make(disk, tmp_path / "b", env, now=1767312000, inventory=inventory)
    assert first.ova.read_bytes() == second.ova.read_bytes()
    assert first.sha256 == second.sha256
    assert (tmp_path / "a" / f"{STEM}.cdx.json").read_bytes() == \
        (tmp_path / "b" / f"{STEM}.cdx.json").read_bytes()
    with tarfile.open(first.ova) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}.cert",
                                         f"{STEM}-disk-0.vmdk", f"{STEM}.cdx.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == \
        {(EPOCH, 0, 0, "root", "root", 0o644)}
    props = parse_ovf(member_bytes(first.ova, f"{STEM}.ovf"), "ovf").properties
    assert props["BUILD_TIMESTAMP"] == str(EPOCH)
    assert props["BUILD_DATE"] == "2023-11-14T22:13:20Z"


def test_without_it_nothing_changes(disk, tmp_path):
    first = make(disk, tmp_path / "a", {}, now=1767225600)
    second = make(disk, tmp_path / "b", {}, now=1767312000)
    assert first.ova.read_bytes() != second.ova.read_bytes()
    with tarfile.open(second.ova) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1767312000}
    props = parse_ovf(member_bytes(second.ova, f"{STEM}.ovf"), "ovf").properties
    assert props["BUILD_TIMESTAMP"] == "1767312000"


def test_a_bad_epoch_is_refused_before_any_work(disk, tmp_path):
    out = tmp_path / "out"
    cli = run_cli("ova", "assemble", "--vmdk", str(disk), "--os", "ubuntu-2204",
                  "--kubernetes-version", "v1.37.1", "--output", str(out),
                  env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert cli.returncode == 2
    assert "SOURCE_DATE_EPOCH='yesterday': not a number of seconds" in cli.stderr
    assert not out.exists()
