"""VMDK headers, descriptors, populated size and conversion, on files made by qemu-img."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from helpers.ova import DISK, VDISKMANAGER, MiB, install_vdiskmanager, make_vmdk

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova import convert, vmdk


@pytest.fixture
def noise_vmdks(tmp_path):
    """The same 3 MiB of data (48 grains) in each kind of VMDK qemu-img writes."""
    data = [(5 * MiB, os.urandom(2 * MiB)), (40 * MiB, os.urandom(MiB))]
    return {kind: make_vmdk(tmp_path / f"{kind}.vmdk", kind, data=data)
            for kind in ("streamOptimized", "monolithicSparse", "monolithicFlat",
                         "twoGbMaxExtentSparse")}


def test_stream_optimized_header_and_capacity(noise_vmdks):
    info = vmdk.read_vmdk(noise_vmdks["streamOptimized"])
    assert info.create_type == "streamOptimized" and info.stream_optimized
    assert info.capacity == DISK
    assert info.header.version == 3 and info.header.compress_algorithm == 1
    assert info.extents[0].kind == "SPARSE" and info.extents[0].sectors * 512 == DISK
    assert info.size == noise_vmdks["streamOptimized"].stat().st_size


@pytest.mark.parametrize("kind", ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse"])
def test_other_kinds_are_read_but_not_stream_optimized(noise_vmdks, kind):
    info = vmdk.read_vmdk(noise_vmdks[kind])
    assert info.create_type == kind
    assert not info.stream_optimized
    assert info.capacity == DISK


def test_split_disks_name_their_extents(noise_vmdks, tmp_path):
    flat = vmdk.read_vmdk(noise_vmdks["monolithicFlat"])
    assert [p.name for p in flat.extent_paths()] == ["monolithicFlat-flat.vmdk"]
    assert vmdk.is_disk_extent_only(tmp_path / "monolithicFlat-flat.vmdk")
    assert vmdk.is_disk_extent_only(tmp_path / "twoGbMaxExtentSparse-s001.vmdk")
    assert not vmdk.is_disk_extent_only(noise_vmdks["monolithicSparse"])
    with pytest.raises(InputError, match="sparse extent without a descriptor"):
        vmdk.read_vmdk(tmp_path / "twoGbMaxExtentSparse-s001.vmdk")


def test_populated_size_counts_allocated_grains(noise_vmdks):
    for kind in ("streamOptimized", "monolithicSparse"):
        path = noise_vmdks[kind]
        info = vmdk.read_vmdk(path)
        with open(path, "rb") as fh:
            assert vmdk.populated_size(fh, 0, info.size, info.header) == 3 * MiB, kind


def test_populated_size_walks_markers_without_grain_tables(noise_vmdks, tmp_path):
    """A stream whose header points nowhere (GD_AT_END, no footer) is counted by markers."""
    data = bytearray(noise_vmdks["streamOptimized"].read_bytes())
    data[56:64] = (0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")  # gdOffset
    info = vmdk.read_vmdk(noise_vmdks["streamOptimized"])
    header = vmdk.SparseHeader.parse(bytes(data))
    assert header.gd_offset == vmdk.GD_AT_END
    path = tmp_path / "nogd.vmdk"
    path.write_bytes(bytes(data))
    with open(path, "rb") as fh:
        assert vmdk.populated_size(fh, 0, info.size, header) == 3 * MiB


def test_populated_size_from_the_footer(noise_vmdks, tmp_path):
    """VMware writes streams with gdOffset GD_AT_END in the header and the real one in
    a footer: footer marker, footer (a header copy), end-of-stream marker."""
    original = noise_vmdks["streamOptimized"].read_bytes()
    data = bytearray(original)
    data[56:64] = (0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    marker = (1).to_bytes(8, "little") + bytes(4) + (3).to_bytes(4, "little")
    data += marker.ljust(512, b"\0") + original[:512] + bytes(512)
    path = tmp_path / "footer.vmdk"
    path.write_bytes(bytes(data))
    info = vmdk.read_vmdk(path)
    assert info.header.gd_offset == vmdk.GD_AT_END and info.stream_optimized
    with open(path, "rb") as fh:
        assert vmdk.populated_size(fh, 0, info.size, info.header) == 3 * MiB


def test_not_a_vmdk(tmp_path):
    junk = tmp_path / "junk.vmdk"
    junk.write_bytes(b"hello" * 200)
    with pytest.raises(InputError, match="junk.vmdk: not a VMDK"):
        vmdk.read_vmdk(junk)
    with pytest.raises(InputError, match="no such VMDK"):
        vmdk.read_vmdk(tmp_path / "absent.vmdk")


def test_qemu_img_conversion_keeps_the_data(noise_vmdks, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    converter = convert.find_converter()
    assert converter.name == "qemu-img"
    source = vmdk.read_vmdk(noise_vmdks["monolithicSparse"])
    target = tmp_path / "out.vmdk"
    info = convert.convert_to_stream_optimized(source, target, converter).info
    assert info.stream_optimized and info.capacity == DISK
    assert info.ddb["ddb.adapterType"] == "lsilogic"
    same = subprocess.run(["qemu-img", "compare", "-f", "vmdk", "-F", "vmdk",
                           str(noise_vmdks["monolithicSparse"]), str(target)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr


SCATTERED = [(0, os.urandom(5000)), (33 * MiB - 100, os.urandom(300)), (40 * MiB, bytes(MiB)),
             (41 * MiB, b"x" * MiB), (DISK + 600, b"last sector")]


@pytest.mark.parametrize("kind", ["monolithicSparse", "twoGbMaxExtentSparse", "monolithicFlat"])
def test_written_stream_equals_the_source_and_hashes_itself(tmp_path, kind):
    """qemu-img accepts what we write and reads the source's contents from it:
    data across grain tables, a range that ends mid-grain, a grain of zeros
    (left out, as qemu-img does) and a capacity that is not whole grains."""
    size = DISK + 3 * 512
    source = make_vmdk(tmp_path / "src.vmdk", kind, size=size, data=SCATTERED)
    target = tmp_path / "out.vmdk"
    conversion = convert.convert_to_stream_optimized(
        vmdk.read_vmdk(source), target, convert.Converter("qemu-img", "qemu-img"))
    assert conversion.digest == hashlib.sha256(target.read_bytes()).hexdigest()
    info = conversion.info
    assert info.stream_optimized and info.capacity == size
    assert info.header.gd_offset == vmdk.GD_AT_END       # VMware's layout: tables in the footer
    for args in (["check", "-f", "vmdk", str(target)],
                 ["compare", "-f", "vmdk", "-F", "vmdk", str(source), str(target)]):
        result = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    theirs = make_vmdk(tmp_path / "theirs.vmdk", size=size, data=SCATTERED)
    with open(target, "rb") as ours, open(theirs, "rb") as fh:
        assert vmdk.populated_size(ours, 0, info.size, info.header) == vmdk.populated_size(
            fh, 0, theirs.stat().st_size, vmdk.read_vmdk(theirs).header) == 20 * 65536


def test_a_child_disk_is_written_with_its_parent_s_data(tmp_path):
    parent = make_vmdk(tmp_path / "parent.vmdk", "monolithicSparse")
    child = tmp_path / "child.vmdk"
    subprocess.run(["qemu-img", "create", "-f", "vmdk", "-b", str(parent), "-F", "vmdk",
                    str(child)], check=True, capture_output=True)
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x41 50M 1M", str(child)],
                   check=True, capture_output=True)
    target = tmp_path / "out.vmdk"
    convert.convert_to_stream_optimized(vmdk.read_vmdk(child), target,
                                        convert.Converter("qemu-img", "qemu-img"))
    same = subprocess.run(["qemu-img", "compare", str(child), str(target)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr


def test_conversion_failure_names_the_tool_and_removes_output(tmp_path, monkeypatch):
    source = make_vmdk(tmp_path / "m.vmdk", "monolithicSparse")
    info = vmdk.read_vmdk(source)
    source.write_bytes(source.read_bytes()[:4096])  # qemu-img cannot read it any more
    target = tmp_path / "out.vmdk"
    with pytest.raises(BuildError, match=r"qemu-img failed \(exit code 1\) converting"):
        convert.convert_to_stream_optimized(info, target, convert.Converter("qemu-img", "qemu-img"))
    assert not target.exists()


def test_vdiskmanager_is_preferred_with_upstream_arguments(noise_vmdks, tmp_path, monkeypatch):
    record = tmp_path / "vdisk.json"
    tools = install_vdiskmanager(tmp_path / "tools")
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VDISK_RECORD", str(record))
    converter = convert.find_converter()
    assert converter.name == "vmware-vdiskmanager"
    source = vmdk.read_vmdk(noise_vmdks["monolithicSparse"])
    target = tmp_path / "out.vmdk"
    conversion = convert.convert_to_stream_optimized(source, target, converter)
    assert json.loads(record.read_text()) == ["-r", str(source.path), "-t", "5", str(target)]
    assert conversion.info.stream_optimized
    assert conversion.digest is None   # VMware's tool wrote it: the OVA is read back instead


def test_no_converter(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert convert.find_converter() is None
    assert "qemu-utils" in convert.MISSING_CONVERTER
    assert VDISKMANAGER  # the stand-in exists for the tests that need one
