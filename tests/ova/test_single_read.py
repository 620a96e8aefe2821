"""One read of each disk when its digest is known beforehand (Packer's vSphere
export manifest, or taken while we converted the disk): the OVA and its
``.sha256`` come out of a single pass, a disk that differs from its record
removes the OVA. Real qemu-img disks, real tar."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import tarfile

import pytest
from helpers.ova import (
    MiB,
    assert_no_partial_files,
    install_vdiskmanager,
    make_vmdk,
    run_cli,
    write_manifest,
)

from imagebuilder.errors import BuildError
from imagebuilder.ova import (
    AssembleOptions,
    assemble_from_packer,
    plan_from_packer,
    verify_ova,
)

# the module, not the function the package exports under its name
assemble_module = importlib.import_module("imagebuilder.ova.assemble")

STEM = "ubuntu-2204-kube-v1.37.1"
DISK0 = f"{STEM}-disk-0.vmdk"


class Passes:
    """Records every byte pass the assembly makes: its label and its size."""

    def __init__(self) -> None:
        self.passes: list[tuple[str, int]] = []

    def begin(self, label: str, total: int) -> None:
        self.passes.append((label.split()[0], total))

    def advance(self, count: int) -> None:
        pass

    def end(self) -> None:
        pass


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def export_dir(checkout, monkeypatch):
    """What Packer's vsphere export leaves with ``manifest: sha256``: the
    streamOptimized disk, ``<vm>.ovf`` and ``<vm>.mf``, listed in packer-manifest.json."""
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES"):
        monkeypatch.delenv(knob, raising=False)
    out = checkout.output_dir / STEM
    out.mkdir(parents=True)
    disk = make_vmdk(out / DISK0)
    ovf = out / f"{STEM}.ovf"
    ovf.write_text("<Envelope/>\n")
    write_packer_mf(out, {ovf.name: sha256(ovf), DISK0: sha256(disk)})
    write_manifest(out, [disk, out / f"{STEM}.mf", ovf], {"builder_type": "vsphere-iso"})
    return out


def write_packer_mf(out, digests: dict[str, str], label: str = "SHA256"):
    """The manifest as Packer's export step writes it: disks first, then the descriptor."""
    mf = out / f"{STEM}.mf"
    names = sorted(digests, key=lambda n: n.endswith(".ovf"))
    mf.write_text("".join(f"{label}({n})= {digests[n]}\n" for n in names))
    return mf


def test_recorded_digest_means_one_read_of_the_disk(export_dir):
    plan = plan_from_packer(export_dir)
    disk = export_dir / DISK0
    assert plan.known_digests[disk].hexdigest == sha256(disk)
    assert plan.known_digests[disk].source == export_dir / f"{STEM}.mf"
    passes = Passes()
    logged = []
    result = assemble_from_packer(export_dir, progress=passes, log=logged.append)
    # one pass, writing, over the disk's bytes: no verification pass re-reads the OVA
    assert passes.passes == [("writing", disk.stat().st_size)]
    assert logged[0].startswith("no SBOM: the build left no package inventory")
    assert logged[1:] == [f"writing {STEM}.ova (disk digests from "
                          f"{export_dir / (STEM + '.mf')}: one read of each disk)"]
    assert result.sha256 == sha256(result.ova)
    assert result.checksum.read_text() == f"{sha256(result.ova)}  {STEM}.ova\n"
    assert f"SHA256({DISK0})= {sha256(disk)}" in result.manifest.read_text().splitlines()
    full = verify_ova(result.ova)    # the separate full check agrees
    assert full.sha256 == result.sha256 and full.digests[DISK0] == sha256(disk)
    check = run_cli("ova", "verify", str(result.ova))
    assert check.returncode == 0, check.stderr
    assert_no_partial_files(export_dir)


def test_a_disk_that_is_not_the_recorded_one_removes_the_ova(export_dir):
    disk = export_dir / DISK0
    mf = write_packer_mf(export_dir, {f"{STEM}.ovf": "0" * 64, DISK0: "ab" * 32})
    os.utime(disk, ns=(mf.stat().st_mtime_ns - 10**9,) * 2)   # the record is newer
    with pytest.raises(BuildError) as err:
        assemble_from_packer(export_dir)
    assert err.value.message.startswith(f"{STEM}.ova: removed: a disk is not the one its "
                                        "digest describes")
    assert err.value.problems == [f"{disk}: its SHA256 digest is {sha256(disk)}, {mf} says "
                                  f"{'ab' * 32}; the disk changed or was damaged after it was "
                                  "written"]
    assert not (export_dir / f"{STEM}.ova").exists()
    assert not (export_dir / f"{STEM}.ova.sha256").exists()
    assert_no_partial_files(export_dir)
    result = run_cli("ova", "assemble", "--from-packer", str(export_dir))
    assert result.returncode == 1
    assert f"{disk}: its SHA256 digest is {sha256(disk)}" in result.stderr
    assert not (export_dir / f"{STEM}.ova").exists()


def test_a_record_older_than_the_disk_is_not_used(export_dir):
    """Our own assembly leaves ``<stem>.mf`` under the name Packer's export uses;
    a manifest from before the disk was written describes another disk."""
    disk = export_dir / DISK0
    mf = write_packer_mf(export_dir, {DISK0: "cd" * 32})
    os.utime(mf, ns=(disk.stat().st_mtime_ns - 10**9,) * 2)
    assert plan_from_packer(export_dir).known_digests == {}
    passes = Passes()
    result = assemble_from_packer(export_dir, progress=passes)
    assert [label for label, _ in passes.passes] == ["writing", "verifying"]
    assert result.sha256 == sha256(result.ova)


def test_a_record_in_another_algorithm_leaves_two_passes(export_dir):
    disk = export_dir / DISK0
    write_packer_mf(export_dir, {DISK0: hashlib.sha1(disk.read_bytes()).hexdigest()}, "SHA1")
    plan = plan_from_packer(export_dir)
    assert plan.known_digests[disk].algorithm == "sha1"
    assert plan.known_digest(plan.sources[0]) is None      # the OVA's manifest is sha256
    sha1 = plan_from_packer(export_dir, AssembleOptions(manifest_algorithm="sha1"))
    assert sha1.known_digest(sha1.sources[0]).hexdigest == hashlib.sha1(
        disk.read_bytes()).hexdigest()
    passes = Passes()
    assemble_from_packer(export_dir, progress=passes)
    assert [label for label, _ in passes.passes] == ["writing", "verifying"]


def test_without_a_record_the_finished_ova_is_read_back(export_dir):
    (export_dir / f"{STEM}.mf").unlink()
    passes = Passes()
    result = assemble_from_packer(export_dir, progress=passes)
    assert [label for label, _ in passes.passes] == ["writing", "verifying"]
    assert passes.passes[1][1] == result.ova.stat().st_size
    assert result.sha256 == sha256(result.ova)


class Interrupt(Passes):
    """Ctrl-C in the middle of the writing pass."""

    def advance(self, count: int) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_during_the_single_read_leaves_nothing(export_dir):
    with pytest.raises(KeyboardInterrupt):
        assemble_from_packer(export_dir, progress=Interrupt())
    assert not (export_dir / f"{STEM}.ova").exists()
    assert not (export_dir / f"{STEM}.ova.sha256").exists()
    assert_no_partial_files(export_dir)
    assert plan_from_packer(export_dir).known_digests   # Packer's record is untouched


@pytest.fixture
def local_build(checkout, monkeypatch):
    """A local (vmware-iso) build's output: a monolithicSparse disk, converted on
    assembly. Data in two grain tables, with zeros between."""
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES"):
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")      # qemu-img, not a vdiskmanager
    out = checkout.output_dir / STEM
    out.mkdir(parents=True)
    disk = make_vmdk(out / f"{STEM}.vmdk", "monolithicSparse",
                     data=[(0, os.urandom(MiB)), (40 * MiB, os.urandom(3 * MiB))])
    write_manifest(out, [disk])
    return out


def test_a_converted_disk_is_written_into_the_ova_in_one_read(local_build):
    passes = Passes()
    logged = []
    result = assemble_from_packer(local_build, progress=passes, log=logged.append)
    assert result.converted == [f"{STEM}.vmdk"]
    members = {m.name: m for m in result.verified.members}
    # one pass over the converted disk, writing the OVA; none reading the OVA back
    assert passes.passes == [("writing", members[DISK0].size)]
    assert logged[-1].startswith(f"writing {STEM}.ova (disk digests from the conversion of "
                                 f"{local_build / (STEM + '.vmdk')}: one read of each disk)")
    full = verify_ova(result.ova)
    assert full.sha256 == result.sha256 == sha256(result.ova)
    assert f"SHA256({DISK0})= {full.digests[DISK0]}" in result.manifest.read_text().splitlines()
    with tarfile.open(result.ova) as tar:
        tar.extract(DISK0, local_build / "x", filter="data")
    same = subprocess.run(["qemu-img", "compare", "-f", "vmdk", "-F", "vmdk",
                           str(local_build / f"{STEM}.vmdk"), str(local_build / "x" / DISK0)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr


def test_a_disk_vmware_converted_is_read_back(local_build, monkeypatch, tmp_path):
    """vmware-vdiskmanager's copy comes without a digest: the OVA is read back."""
    tools = install_vdiskmanager(tmp_path / "tools")
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("VDISK_RECORD", str(tmp_path / "vdisk.json"))
    passes = Passes()
    result = assemble_from_packer(local_build, progress=passes)
    assert (tmp_path / "vdisk.json").exists()
    assert [label for label, _ in passes.passes] == ["writing", "verifying"]
    assert result.sha256 == sha256(result.ova)


def test_a_converted_disk_damaged_before_the_copy_removes_the_ova(local_build, monkeypatch):
    """The digest taken while converting is checked against the bytes copied."""
    real = assemble_module.convert_to_stream_optimized

    def convert_then_damage(source, target, *args):
        conversion = real(source, target, *args)
        with open(target, "r+b") as fh:   # a byte of the first grain changes on disk
            fh.seek(64 * 1024 + 100)
            byte = fh.read(1)
            fh.seek(-1, os.SEEK_CUR)
            fh.write(bytes([byte[0] ^ 0xFF]))
        return conversion

    monkeypatch.setattr(assemble_module, "convert_to_stream_optimized", convert_then_damage)
    with pytest.raises(BuildError) as err:
        assemble_from_packer(local_build)
    assert err.value.message.startswith(f"{STEM}.ova: removed: a disk is not the one its "
                                        "digest describes")
    [problem] = err.value.problems
    assert problem.startswith(f"{local_build}/.{STEM}.work.")
    assert f"/{DISK0}: its SHA256 digest is " in problem
    assert f", the conversion of {local_build / (STEM + '.vmdk')} says " in problem
    assert not (local_build / f"{STEM}.ova").exists()
    assert not (local_build / f"{STEM}.ova.sha256").exists()
    assert_no_partial_files(local_build)


@pytest.mark.parametrize("size", [0, 1, 3 * MiB, 7 * MiB + 12345])
@pytest.mark.parametrize("with_whole", [True, False])
def test_the_two_lane_copy(tmp_path, size, with_whole):
    """copy_hashing: the bytes land at the offset, in order; both digests see every
    byte in order; the progress callback sees every chunk, in order."""
    from imagebuilder.ova.hashing import copy_hashing
    data = os.urandom(size)
    src_path, dst_path = tmp_path / "src", tmp_path / "dst"
    src_path.write_bytes(data)
    dst_path.write_bytes(b"H" * 512)
    disk, whole = hashlib.sha256(), hashlib.sha256(b"H" * 512) if with_whole else None
    seen: list[int] = []
    src, dst = os.open(src_path, os.O_RDONLY), os.open(dst_path, os.O_WRONLY)
    try:
        copy_hashing(src, dst, 512, size, disk, whole, seen.append, src_path)
    finally:
        os.close(src)
        os.close(dst)
    assert dst_path.read_bytes() == b"H" * 512 + data
    assert disk.hexdigest() == hashlib.sha256(data).hexdigest()
    if whole is not None:
        assert whole.hexdigest() == hashlib.sha256(b"H" * 512 + data).hexdigest()
    assert sum(seen) == size and all(n == MiB for n in seen[:-1])


@pytest.mark.parametrize("failing_chunk", [0, 1, 5])
def test_a_failing_lane_stops_both(tmp_path, failing_chunk):
    """An error in either lane (here the progress callback's Ctrl-C on an even or an
    odd chunk) reaches the caller; neither lane is left waiting for the other."""
    from imagebuilder.ova.hashing import copy_hashing
    src_path = tmp_path / "src"
    src_path.write_bytes(os.urandom(12 * MiB))
    calls = []

    def advance(n: int) -> None:
        calls.append(n)
        if len(calls) > failing_chunk:
            raise KeyboardInterrupt
    src, dst = os.open(src_path, os.O_RDONLY), os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(KeyboardInterrupt):
            copy_hashing(src, dst, 0, 12 * MiB, hashlib.sha256(), hashlib.sha256(), advance,
                         src_path)
    finally:
        os.close(src)
        os.close(dst)
    assert len(calls) == failing_chunk + 1
    import threading
    assert not [t for t in threading.enumerate() if t.name.startswith("ova-copy-")]
