"""``ova-verify`` on good and damaged OVAs: every defect is named precisely."""

from __future__ import annotations

import hashlib
import os
import tarfile

import pytest
from helpers.ova import MiB, make_vmdk, rewrite_tar, run_cli

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova import assemble, plan_from_vmdks, verify_ova
from imagebuilder.ova.ovf import parse_ovf

STEM = "ubuntu-2204-kube-v1.37.1"
OVF, MF, DISK0 = f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}-disk-0.vmdk"


@pytest.fixture
def ova(checkout, tmp_path, monkeypatch):
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES"):
        monkeypatch.delenv(knob, raising=False)
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(2 * MiB))])
    return assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "out")).ova


def problems(path, **kwargs) -> list[str]:
    with pytest.raises(BuildError) as err:
        verify_ova(path, **kwargs)
    return err.value.problems


def member(path, name) -> tarfile.TarInfo:
    with tarfile.open(path) as tar:
        return tar.getmember(name)


def test_good_ova(ova):
    result = verify_ova(ova)
    assert [m.name for m in result.members] == [OVF, MF, DISK0]
    assert result.sha256 == hashlib.sha256(ova.read_bytes()).hexdigest()
    assert result.digests[DISK0] == hashlib.sha256(
        ova.read_bytes()[member(ova, DISK0).offset_data:][:member(ova, DISK0).size]).hexdigest()


def test_flipped_byte_in_the_disk(ova, tmp_path):
    bad = tmp_path / "flipped.ova"
    data = bytearray(ova.read_bytes())
    data[member(ova, DISK0).offset_data + 700_000] ^= 0xFF
    bad.write_bytes(bytes(data))
    found = problems(bad)
    assert len(found) == 1
    assert found[0].startswith(f"{DISK0}: its SHA256 digest is ")
    assert found[0].endswith("the file is corrupt")
    result = run_cli("ova", "verify", str(bad))
    assert result.returncode == 1
    assert f"{DISK0}: its SHA256 digest is" in result.stderr


def test_wrong_member_order(ova, tmp_path):
    bad = rewrite_tar(ova, tmp_path / "order.ova", order=[DISK0, OVF, MF])
    found = problems(bad)
    assert f"the first member is {DISK0}, not the OVF descriptor; the descriptor must come " \
           "first" in found
    assert f"the manifest {MF} is member 3; it must come right after the descriptor " \
           "(or at the very end)" not in found  # at the very end is allowed
    bad = rewrite_tar(ova, tmp_path / "order2.ova", order=[OVF, DISK0, MF, "extra.txt"],
                      replace={"extra.txt": b"x"})
    found = problems(bad)
    assert f"the manifest {MF} is member 3; it must come right after the descriptor " \
           "(or at the very end)" in found
    assert f"member extra.txt is not referenced by {OVF}" in found


def test_missing_manifest(ova, tmp_path):
    bad = rewrite_tar(ova, tmp_path / "nomf.ova", drop=(MF,))
    assert problems(bad) == [f"no manifest: {MF} is missing, so nothing proves the files are "
                             "intact"]


def test_manifest_gaps_and_extras(ova, tmp_path):
    text = ova_member(ova, MF).decode()
    lines = text.splitlines()
    bad = rewrite_tar(ova, tmp_path / "gaps.ova", replace={
        MF: (lines[0] + "\nSHA256(ghost.vmdk)= " + "0" * 64 + "\nnot a line\n").encode()})
    found = problems(bad)
    assert f"{MF} has no digest for {DISK0}" in found
    assert f"{MF} lists ghost.vmdk, which is not in the archive" in found
    assert f"{MF} line 3: 'not a line' is not 'SHA256(<file>)= <hex>'" in found


def ova_member(path, name) -> bytes:
    with tarfile.open(path) as tar:
        return tar.extractfile(name).read()


def rehash_manifest(ovf: bytes, disk: bytes) -> bytes:
    return (f"SHA256({OVF})= {hashlib.sha256(ovf).hexdigest()}\n"
            f"SHA256({DISK0})= {hashlib.sha256(disk).hexdigest()}\n").encode()


def test_descriptor_size_and_capacity_must_match(ova, tmp_path):
    ovf = ova_member(ova, OVF)
    disk = ova_member(ova, DISK0)
    size = str(len(disk)).encode()
    wrong = ovf.replace(b'ovf:size="' + size, b'ovf:size="' + str(len(disk) + 1).encode())
    wrong = wrong.replace(b'ovf:capacity="67108864"', b'ovf:capacity="21474836480"')
    bad = rewrite_tar(ova, tmp_path / "sizes.ova",
                      replace={OVF: wrong, MF: rehash_manifest(wrong, disk)})
    found = problems(bad)
    assert f"{OVF} gives {DISK0} a size of {len(disk) + 1} bytes; the member has {len(disk)}" \
        in found
    assert f"Disk vmdisk1: the descriptor says a capacity of 21474836480 bytes; the VMDK " \
           f"{DISK0} holds 67108864" in found


def test_descriptor_references_a_missing_file(ova, tmp_path):
    ovf = ova_member(ova, OVF).replace(DISK0.encode(), b"elsewhere.vmdk")
    disk = ova_member(ova, DISK0)
    bad = rewrite_tar(ova, tmp_path / "refs.ova",
                      replace={OVF: ovf, MF: rehash_manifest(ovf, disk)})
    found = problems(bad)
    assert f"{OVF} references elsewhere.vmdk (File file1), which is not in the archive" in found
    assert f"member {DISK0} is not referenced by {OVF}" in found


def test_a_disk_that_is_not_stream_optimized(ova, tmp_path):
    sparse = make_vmdk(tmp_path / "m.vmdk", "monolithicSparse").read_bytes()
    ovf = ova_member(ova, OVF)
    old = str(member(ova, DISK0).size).encode()
    ovf = ovf.replace(b'ovf:size="' + old, b'ovf:size="' + str(len(sparse)).encode())
    bad = rewrite_tar(ova, tmp_path / "sparse.ova",
                      replace={OVF: ovf, DISK0: sparse, MF: rehash_manifest(ovf, sparse)})
    assert problems(bad) == [f"{DISK0}: the VMDK is monolithicSparse, not streamOptimized "
                             "(compressed grains with markers, as vSphere imports them)"]


def test_not_a_tar_truncated_and_absent(ova, tmp_path):
    junk = tmp_path / "junk.ova"
    junk.write_bytes(b"\x01" * 4096)
    with pytest.raises(BuildError, match="junk.ova: not a readable tar archive"):
        verify_ova(junk)
    short = tmp_path / "short.ova"
    short.write_bytes(ova.read_bytes()[:member(ova, DISK0).offset_data + 1000])
    with pytest.raises(BuildError, match="short.ova: truncated: the archive ends inside"):
        verify_ova(short)
    with pytest.raises(InputError, match="absent.ova: no such OVA file"):
        verify_ova(tmp_path / "absent.ova")
    assert run_cli("ova", "verify", str(tmp_path / "absent.ova")).returncode == 2


def test_missing_end_of_archive_blocks_without_a_sidecar(ova, tmp_path):
    disk = member(ova, DISK0)
    end = disk.offset_data + disk.size + (-disk.size % 512)
    cut = tmp_path / "cut.ova"
    cut.write_bytes(ova.read_bytes()[:end])   # every member whole, the two zero blocks gone
    assert not cut.with_name(cut.name + ".sha256").exists()
    with tarfile.open(cut) as tar:            # Python's tarfile alone does not notice
        assert [m.name for m in tar.getmembers()] == [OVF, MF, DISK0]
    with pytest.raises(BuildError, match=f"cut.ova: truncated: the two zero blocks that end a "
                                         f"tar archive are missing after byte {end}"):
        verify_ova(cut)
    result = run_cli("ova", "verify", str(cut))
    assert result.returncode == 1 and "truncated" in result.stderr
    one = tmp_path / "one.ova"                # a single zero block is not enough either
    one.write_bytes(ova.read_bytes()[:end + 512])
    with pytest.raises(BuildError, match="one.ova: truncated"):
        verify_ova(one)
    junk = tmp_path / "tail.ova"
    junk.write_bytes(ova.read_bytes()[:end] + bytes(512) + b"x" * 512)
    with pytest.raises(BuildError, match="tail.ova: damaged: the bytes after the last member"):
        verify_ova(junk)


def test_sidecar_checksum(ova):
    sidecar = ova.with_name(ova.name + ".sha256")
    assert sidecar.read_text().split()[0] == verify_ova(ova).sha256
    sidecar.write_text("0" * 64 + "  " + ova.name + "\n")
    assert problems(ova) == [f"{sidecar.name} records {'0' * 64}, the OVA's SHA-256 is "
                             f"{hashlib.sha256(ova.read_bytes()).hexdigest()}"]
    assert verify_ova(ova, check_sidecar=False)


def test_descriptor_that_is_not_xml(ova, tmp_path):
    disk = ova_member(ova, DISK0)
    bad = rewrite_tar(ova, tmp_path / "xml.ova",
                      replace={OVF: b"<Envelope>", MF: rehash_manifest(b"<Envelope>", disk)})
    with pytest.raises(BuildError, match="the OVF descriptor is not well-formed XML"):
        verify_ova(bad)


def test_directories_and_paths_are_refused(ova, tmp_path):
    bad = tmp_path / "dirs.ova"
    with tarfile.open(ova) as src, tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m))
        d = tarfile.TarInfo("sub")
        d.type = tarfile.DIRTYPE
        out.addfile(d)
    found = problems(bad)
    assert "member 4 (sub) is a directory, not a regular file; an OVA holds only files" in found


def test_verified_descriptor_is_the_one_inside(ova):
    result = verify_ova(ova)
    assert parse_ovf(result.ovf_bytes, "x").name == STEM
