"""Assembling OVAs from Packer build directories and from VMDK files: real disks
(qemu-img), real tar and XML parsing, the real command line. Stand-ins only for
ovftool and vmware-vdiskmanager, which cannot run here."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

import pytest
from helpers.ova import (
    DISK,
    OVFTOOL,
    MiB,
    install_vdiskmanager,
    make_vmdk,
    run_cli,
    tar_names,
    write_manifest,
    write_tool,
)

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova import (
    AssembleOptions,
    assemble,
    assemble_from_packer,
    plan_from_packer,
    plan_from_vmdks,
    verify_ova,
)
from imagebuilder.ova.archive import USTAR_MAX_SIZE, tar_header
from imagebuilder.ova.ovf import OVF, parse_ovf

STEM = "ubuntu-2204-kube-v1.37.1"


@pytest.fixture
def env(checkout, monkeypatch):
    """A private checkout, and none of the OVA knobs set."""
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES"):
        monkeypatch.delenv(knob, raising=False)
    return checkout


@pytest.fixture
def build_dir(env):
    """A local (vmware-iso) build's output: a monolithicSparse disk, as disk_type_id 0 makes."""
    out = env.output_dir / STEM
    out.mkdir(parents=True)
    disk = make_vmdk(out / f"{STEM}.vmdk", "monolithicSparse")
    vmx = out / f"{STEM}.vmx"
    vmx.write_text('virtualhw.version = "15"\n')
    write_manifest(out, [vmx, disk])
    return out


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_from_packer_build(build_dir):
    result = assemble_from_packer(build_dir)
    names = [p.name for p in (result.ova, result.ovf, result.manifest, result.checksum)]
    assert names == [f"{STEM}.ova", f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}.ova.sha256"]
    assert all(p.parent == build_dir for p in (result.ova, result.ovf, result.manifest))
    assert result.converted == [f"{STEM}.vmdk"]
    assert tar_names(result.ova) == [f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}-disk-0.vmdk"]
    with tarfile.open(result.ova) as tar:
        members = tar.getmembers()
        assert all(m.isreg() and "/" not in m.name for m in members)
        assert tar.extractfile(f"{STEM}.ovf").read() == result.ovf.read_bytes()
        assert tar.extractfile(f"{STEM}.mf").read() == result.manifest.read_bytes()
        disk = tar.extractfile(f"{STEM}-disk-0.vmdk").read()
    lines = result.manifest.read_text().splitlines()
    assert lines == [f"SHA256({STEM}.ovf)= {sha256(result.ovf)}",
                     f"SHA256({STEM}-disk-0.vmdk)= {hashlib.sha256(disk).hexdigest()}"]
    assert result.checksum.read_text() == f"{sha256(result.ova)}  {STEM}.ova\n"
    check = subprocess.run(["sha256sum", "-c", result.checksum.name], cwd=build_dir,
                           capture_output=True, text=True)
    assert check.returncode == 0 and ": OK" in check.stdout
    listing = subprocess.run(["tar", "-tvf", str(result.ova)], capture_output=True, text=True)
    assert listing.returncode == 0 and listing.stdout.count("\n") == 3
    assert [p.name for p in build_dir.iterdir() if p.name.startswith(".")] == []


def test_descriptor_matches_the_build(build_dir, env):
    result = assemble_from_packer(build_dir)
    parsed = parse_ovf(result.ovf.read_bytes(), "x")
    assert parsed.name == STEM and parsed.vmx == "vmx-15" and parsed.firmware == "bios"
    assert parsed.os_id == 94 and parsed.os_type == "ubuntu64Guest"
    assert parsed.disks[0].capacity == DISK
    assert parsed.networks == ["nic0"]
    assert parsed.properties == {
        "DISTRO_NAME": "ubuntu", "DISTRO_VERSION": "22.04", "DISTRO_ARCH": "amd64",
        "CNI_VERSION": "v1.9.1", "CONTAINERD_VERSION": "2.4.1", "KUBERNETES_SEMVER": "v1.37.1",
        "KUBERNETES_SOURCE_TYPE": "pkg", "BUILD_TIMESTAMP": "1767225600",
        "BUILD_DATE": "2026-01-01T00:00:00Z", "IMAGE_BUILDER_VERSION": "0.1.0"}
    assert parsed.files[0].size == result.verified.members[2].size
    root = ET.fromstring(result.ovf.read_bytes())
    license_text = root.find(f".//{{{OVF}}}License").text
    assert license_text == (env.packer_dir / "EULA.txt").read_text()


def test_stream_optimized_disk_is_used_as_is(env):
    """A vSphere export already wrote streamOptimized disks: their bytes go in unchanged."""
    out = env.output_dir / STEM
    out.mkdir(parents=True)
    disk = make_vmdk(out / f"{STEM}-disk-0.vmdk")
    (out / f"{STEM}.ovf").write_text("<exported/>")
    write_manifest(out, [out / f"{STEM}.ovf", disk], {"builder_type": "vsphere-iso"})
    result = assemble_from_packer(out)
    assert result.converted == []
    digest = dict(line.split("= ") for line in result.manifest.read_text().splitlines())
    assert digest[f"SHA256({STEM}-disk-0.vmdk)"] == sha256(disk)


def test_two_disks_and_the_last_run_of_the_manifest(env):
    out = env.output_dir / STEM
    out.mkdir(parents=True)
    first = make_vmdk(out / "a.vmdk")
    second = make_vmdk(out / "b.vmdk", "monolithicSparse", size=32 * MiB)
    old = {"name": "vmware-iso", "files": [{"name": "gone.vmdk", "size": 1}],
           "packer_run_uuid": "older-run", "custom_data": {"build_name": "nope"}}
    write_manifest(out, [first, second], builds_before=[old])
    result = assemble_from_packer(out)
    assert tar_names(result.ova)[2:] == [f"{STEM}-disk-0.vmdk", f"{STEM}-disk-1.vmdk"]
    parsed = parse_ovf(result.ovf.read_bytes(), "x")
    assert [d.capacity for d in parsed.disks] == [DISK, 32 * MiB]
    assert result.converted == ["b.vmdk"]


@pytest.mark.packer
def test_the_templates_post_processors_run_the_hook(env, tmp_path):
    """The real Packer runs node.json's post-processor chain (its manifest with
    custom_data, then the ``ova`` shell-local hook) after a ``file`` builder has
    left a monolithicSparse disk where vmware-iso would."""
    packer = shutil.which("packer")
    if packer is None:
        pytest.skip("packer is not installed")
    node = json.loads(env.node_template.read_text())
    out = env.output_dir / STEM
    out.mkdir(parents=True)
    disk = make_vmdk(tmp_path / "built.vmdk", "monolithicSparse")
    template = tmp_path / "template.json"
    template.write_text(json.dumps({
        "variables": node["variables"],
        "builders": [{"type": "file", "source": str(disk),
                      "target": "{{user `output_directory`}}/{{user `vm_name`}}.vmdk"}],
        "post-processors": node["post-processors"]}))
    generated = tmp_path / "generated.json"
    generated.write_text(json.dumps({
        "vm_name": STEM, "output_directory": str(out),
        "manifest_output": str(out / "packer-manifest.json"), "build_timestamp": "1767225600",
        "build_date": "2026-01-01T00:00:00Z", "ib_version": "0.1.0",
        "ib_python": sys.executable, "ib_target": "node-ova-local-ubuntu-2204"}))
    var_files = env.common_var_files() + [env.packer_common, env.os_file("ubuntu-2204"),
                                          generated]
    # Packer 1.x wants strings in var files
    for i, path in enumerate(var_files):
        data = {k: v if isinstance(v, str) else json.dumps(v)
                for k, v in json.loads(path.read_text()).items()}
        var_files[i] = tmp_path / f"vars-{i}.json"
        var_files[i].write_text(json.dumps(data))
    result = subprocess.run([packer, "build", "-color=false",
                             *[f"-var-file={p}" for p in var_files], str(template)],
                            cwd=env.root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Running post-processor: ova" in result.stdout
    ova = out / f"{STEM}.ova"
    checked = verify_ova(ova)
    assert checked.ovf.properties["KUBERNETES_SEMVER"] == "v1.37.1"
    assert checked.ovf.properties["BUILD_TIMESTAMP"] == "1767225600"
    assert checked.ovf.vmx == "vmx-15" and checked.ovf.os_type == "ubuntu64Guest"
    assert checked.disks[f"{STEM}-disk-0.vmdk"].capacity == DISK


def test_no_disk_exported_is_not_an_error(env):
    out = env.output_dir / STEM
    out.mkdir(parents=True)
    manifest = write_manifest(out, [])
    data = json.loads(manifest.read_text())
    data["builds"][-1]["files"] = None  # what Packer writes for a build that left no files
    manifest.write_text(json.dumps(data))
    assert plan_from_packer(out) is None
    result = run_cli("ova", "assemble", "--from-packer", str(out))
    assert result.returncode == 0, result.stderr
    assert "exported no disk" in result.stderr and "no OVA" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["packer-manifest.json"]


def test_missing_manifest_and_missing_settings(env, tmp_path):
    with pytest.raises(InputError, match="packer-manifest.json: not found"):
        plan_from_packer(tmp_path)
    out = env.output_dir / STEM
    disk = make_vmdk(tmp_path / "d.vmdk")
    write_manifest(out, [])
    data = json.loads((out / "packer-manifest.json").read_text())
    data["builds"][-1]["files"] = [{"name": str(disk), "size": 1}]
    del data["builds"][-1]["custom_data"]["ovf_os_id"]
    data["builds"][-1]["custom_data"]["memory"] = "lots"
    (out / "packer-manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        plan_from_packer(out)
    assert "ovf_os_id: is missing" in str(err.value)
    data["builds"][-1]["custom_data"]["ovf_os_id"] = "94"
    (out / "packer-manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="memory: 'lots' is not a whole number"):
        plan_from_packer(out)


def test_vmx_below_the_os_minimum_is_refused(env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk")
    with pytest.raises(InputError) as err:
        plan_from_vmdks([disk], "rhel-9", "v1.37.1", tmp_path / "out", vmx_version=15)
    assert "vmx_version: 15 is below the minimum 18" in str(err.value)
    plan = plan_from_vmdks([disk], "rhel-9", "v1.37.1", tmp_path / "out")
    assert plan.settings.hardware.vmx_version == 18


def test_from_vmdks_on_the_command_line(env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk", "monolithicSparse")
    out = tmp_path / "out"
    result = run_cli("ova", "assemble", "--vmdk", str(disk), "--os", "ubuntu-2404-efi",
                     "--kubernetes-version", "v1.38.0+vmware.1", "--output", str(out),
                     "--vmx", "21", "--firmware", "efi")
    assert result.returncode == 0, result.stderr
    stem = "ubuntu-2404-efi-kube-v1.38.0+vmware.1"  # upstream's name (issue 20, item 8)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{ext}" for ext in (".ova", ".ovf", ".mf", ".ova.sha256", ".provenance.json"))
    parsed = parse_ovf((out / f"{stem}.ovf").read_bytes(), "x")
    assert parsed.vmx == "vmx-21" and parsed.firmware == "efi"
    assert parsed.properties["KUBERNETES_SEMVER"] == "v1.38.0+vmware.1"
    assert parsed.annotation.endswith("Ubuntu 24.04 and Kubernetes v1.38.0+vmware.1")
    verify = run_cli("ova", "verify", str(out / f"{stem}.ova"))
    assert verify.returncode == 0, verify.stderr
    assert "ok: 3 members" in verify.stdout


def test_default_output_is_the_artifact_directory(env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk")
    plan = plan_from_vmdks([disk], "photon-5", "v1.37.1")
    assert plan.output_dir == env.output_dir / "photon-5-kube-v1.37.1"


def test_command_line_usage_errors(env, tmp_path):
    result = run_cli("ova", "assemble", "--vmdk", str(tmp_path / "d.vmdk"))
    assert result.returncode == 2 and "--vmdk needs --os and --kubernetes-version" in result.stderr
    result = run_cli("ova", "assemble", "--from-packer", str(tmp_path), "--vmx", "19")
    assert result.returncode == 2 and "drop --vmx" in result.stderr
    result = run_cli("ova", "assemble", "--vmdk", str(tmp_path / "absent.vmdk"), "--os",
                     "no-such-os", "--kubernetes-version", "v1.37.1")
    assert result.returncode == 2
    assert "absent.vmdk: no such VMDK file" in result.stderr
    assert "no ova/no-such-os.json; known OSes: almalinux-9" in result.stderr


def test_sha1_manifest_for_old_targets(build_dir):
    result = run_cli("ova", "assemble", "--from-packer", str(build_dir),
                     "--manifest-digest", "sha1")
    assert result.returncode == 0, result.stderr
    lines = (build_dir / f"{STEM}.mf").read_text().splitlines()
    assert all(line.startswith("SHA1(") and len(line.split("= ")[1]) == 40 for line in lines)
    verify_ova(build_dir / f"{STEM}.ova")


def test_same_inputs_same_bytes(env):
    """Given the same streamOptimized disk (qemu-img gives each conversion a new
    content id), assembling again writes the same bytes."""
    out = env.output_dir / STEM
    out.mkdir(parents=True)
    write_manifest(out, [make_vmdk(out / "d.vmdk")])
    first = assemble_from_packer(out).sha256
    assert assemble_from_packer(out).sha256 == first


def test_custom_properties_with_markup_characters(build_dir, tmp_path, monkeypatch):
    props = tmp_path / "props.json"
    value = 'R&D <team> "blue" > red'
    props.write_text(json.dumps({"OWNER": value, "REPLICAS": 3}))
    monkeypatch.setenv("OVF_CUSTOM_PROPERTIES", str(props))
    result = assemble_from_packer(build_dir, AssembleOptions.from_env())
    parsed = parse_ovf(result.ovf.read_bytes(), "x")
    assert parsed.properties["OWNER"] == value and parsed.properties["REPLICAS"] == "3"
    props.write_text(json.dumps({"OWNER": {"name": "x"}}))
    cli = run_cli("ova", "assemble", "--from-packer", str(build_dir))
    assert cli.returncode == 2
    assert "OWNER: dict is not a scalar" in cli.stderr and "nothing was started" in cli.stderr


def test_missing_converter_is_reported_before_any_work(build_dir, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    before = sorted(p.name for p in build_dir.iterdir())
    result = run_cli("ova", "assemble", "--from-packer", str(build_dir),
                     env={"PATH": str(empty)})
    assert result.returncode == 2
    assert "not streamOptimized and no VMDK converter found: install qemu-img" in result.stderr
    assert "nothing was started" in result.stderr
    assert sorted(p.name for p in build_dir.iterdir()) == before


def test_missing_ovftool_is_reported_before_any_work(build_dir, tmp_path, monkeypatch):
    record = tmp_path / "vdisk.json"
    tools = install_vdiskmanager(tmp_path / "tools")
    before = sorted(p.name for p in build_dir.iterdir())
    result = run_cli("ova", "assemble", "--from-packer", str(build_dir),
                     env={"IB_OVFTOOL": "1", "VDISK_RECORD": str(record),
                          "PATH": f"{tools}{os.pathsep}/usr/bin:/bin"})
    assert result.returncode == 2
    assert "IB_OVFTOOL is set but ovftool is not on PATH" in result.stderr
    assert not record.exists()  # the disk was not converted
    assert sorted(p.name for p in build_dir.iterdir()) == before


def test_ovftool_gets_our_descriptor_and_shell_split_arguments(build_dir, tmp_path):
    record = tmp_path / "ovftool.json"
    tools = write_tool(tmp_path / "tools", "ovftool", OVFTOOL).parent
    env = {"IB_OVFTOOL": "1", "IB_OVFTOOL_ARGS": "--shaAlgorithm=SHA256 --name='my vm' -q",
           "OVFTOOL_RECORD": str(record), "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    result = run_cli("ova", "assemble", "--from-packer", str(build_dir), env=env)
    assert result.returncode == 0, result.stderr
    argv = json.loads(record.read_text())
    assert argv[:3] == ["--shaAlgorithm=SHA256", "--name=my vm", "-q"]
    assert argv[3].endswith(f"/{STEM}.ovf") and argv[4].endswith(f"/{STEM}.ova")
    assert argv[4] != str(build_dir / f"{STEM}.ova")  # written aside, renamed when verified
    ova = build_dir / f"{STEM}.ova"
    assert tar_names(ova)[:2] == [f"{STEM}.ovf", f"{STEM}.mf"]
    verify_ova(ova)
    assert (build_dir / f"{STEM}.ova.sha256").read_text().split()[0] == sha256(ova)
    assert [p.name for p in build_dir.iterdir() if p.name.startswith(".")] == []


def test_ovftool_failure_is_a_clear_build_error(build_dir, tmp_path):
    record = tmp_path / "ovftool.json"
    tools = write_tool(tmp_path / "tools", "ovftool", OVFTOOL).parent
    env = {"IB_OVFTOOL": "1", "OVFTOOL_RECORD": str(record), "OVFTOOL_EXIT": "3",
           "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    result = run_cli("ova", "assemble", "--from-packer", str(build_dir), env=env)
    assert result.returncode == 1
    assert f"ovftool failed (exit code 3) making {STEM}.ova" in result.stderr
    assert "the stand-in ovftool was told to fail" in result.stderr
    assert not (build_dir / f"{STEM}.ova").exists()
    assert [p.name for p in build_dir.iterdir() if p.name.startswith(".")] == []


def test_bad_ovftool_args_are_input_errors(build_dir):
    with pytest.raises(InputError, match="IB_OVFTOOL_ARGS: cannot split"):
        AssembleOptions.from_env({"IB_OVFTOOL": "1", "IB_OVFTOOL_ARGS": "--name='open"})


class Interrupt:
    """Ctrl-C after the first megabytes of a pass."""

    def begin(self, label, total):
        pass

    def advance(self, count):
        raise KeyboardInterrupt

    def end(self):
        pass


def test_interrupted_assembly_leaves_no_partial_files(build_dir):
    old = assemble_from_packer(build_dir)
    previous = old.ova.read_bytes()
    manifest = build_dir / "packer-manifest.json"
    manifest.write_text(manifest.read_text().replace('"kubernetes_semver": "v1.37.1"',
                                                     '"kubernetes_semver": "v1.37.2"'))
    with pytest.raises(KeyboardInterrupt):
        assemble(plan_from_packer(build_dir), progress=Interrupt())
    assert not (build_dir / "ubuntu-2204-kube-v1.37.2.ova").exists()
    assert not (build_dir / "ubuntu-2204-kube-v1.37.2.ova.sha256").exists()
    assert old.ova.read_bytes() == previous
    assert [p.name for p in build_dir.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_on_the_command_line_exits_130_and_cleans_up(build_dir, tmp_path):
    record = tmp_path / "vdisk.json"
    tools = install_vdiskmanager(tmp_path / "tools")
    env = dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ['PATH']}",
               VDISK_RECORD=str(record), VDISK_BLOCK="1")
    proc = subprocess.Popen([sys.executable, "-m", "imagebuilder", "ova", "assemble",
                             "--from-packer", str(build_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not record.exists() and time.monotonic() < deadline:  # converting now
        time.sleep(0.05)
    assert record.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert sorted(p.name for p in build_dir.iterdir()) == sorted(
        ["packer-manifest.json", f"{STEM}.vmdk", f"{STEM}.vmx"])


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_write_leaves_no_partial_ova(env, tmp_path):
    """A file size limit makes writes fail part-way, as a full disk does."""
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(0, os.urandom(8 * MiB))])
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "imagebuilder", "ova", "assemble", "--vmdk", str(disk), "--os",
         "ubuntu-2204", "--kubernetes-version", "v1.37.1", "--output", str(out)],
        preexec_fn=_limit_file_size(4 * MiB), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "cannot write the OVA (File too large)" in result.stderr
    assert list(out.iterdir()) == []


def _in_small_tmpfs(script: str, mount: str, size_kib: int) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) with a tmpfs of ``size_kib`` mounted at ``mount``, in a
    private user and mount namespace (nothing outside sees the mount)."""
    return subprocess.run(["unshare", "-rm", "sh", "-ec",
                           f"mount -t tmpfs -o size={size_kib}k tmpfs '{mount}'\n{script}"],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def small_disk(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    if shutil.which("unshare") is None or _in_small_tmpfs("true", str(probe), 64).returncode:
        pytest.skip("cannot mount a private tmpfs here (unshare -rm)")
    return tmp_path / "small"


def test_a_full_disk(env, tmp_path, small_disk):
    """No room at all: refused before any work. Room for the disk but not the whole
    OVA: the write fails (on tmpfs when it fills up; elsewhere at once, as space
    is reserved first) and leaves nothing."""
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(0, os.urandom(MiB))])
    small_disk.mkdir()
    assemble = (f"{sys.executable} -m imagebuilder ova assemble --vmdk {disk} --os ubuntu-2204 "
                f"--kubernetes-version v1.37.1 --output {small_disk}/out")
    result = _in_small_tmpfs(assemble, str(small_disk), 512)
    assert result.returncode == 2, result.stderr
    assert "are needed and only" in result.stderr and "nothing was started" in result.stderr
    # leave the disk's size plus one page free: the descriptor and headers do not fit
    size_kib = (disk.stat().st_size >> 10) + 256
    fill = f"head -c $(( ({size_kib} - 4 - {disk.stat().st_size >> 10}) * 1024 )) /dev/zero " \
           f"> {small_disk}/filler\nmkdir {small_disk}/out\n"
    script = fill + f"{assemble} || code=$?\nls -A {small_disk}/out\nexit ${{code:-0}}"
    result = _in_small_tmpfs(script, str(small_disk), size_kib)
    assert result.returncode == 1, result.stderr
    assert "no space left while writing the OVA (No space left on device)" in result.stderr
    assert result.stdout == ""  # nothing left in the output directory


def test_a_disk_to_convert_needs_room_twice(env, tmp_path, small_disk):
    """Room for the monolithicSparse disk once but not twice (converted copy, then
    the OVA): refused up front, not by a full disk halfway through."""
    disk = make_vmdk(tmp_path / "d.vmdk", "monolithicSparse", data=[(0, os.urandom(2 * MiB))])
    small_disk.mkdir()
    size_kib = (disk.stat().st_size >> 10) * 3 // 2
    assemble = (f"{sys.executable} -m imagebuilder ova assemble --vmdk {disk} --os ubuntu-2204 "
                f"--kubernetes-version v1.37.1 --output {small_disk}/out")
    result = _in_small_tmpfs(assemble, str(small_disk), size_kib)
    assert result.returncode == 2, result.stderr
    assert "are needed and only" in result.stderr and "nothing was started" in result.stderr


def test_tar_header_sizes():
    small = tarfile.TarInfo.frombuf(tar_header("a.vmdk", 1234, 1767225600), "ascii", "strict")
    assert (small.name, small.size, small.mtime, small.mode) == ("a.vmdk", 1234, 1767225600,
                                                                 0o644)
    assert small.isreg() and small.uname == "root"
    big = USTAR_MAX_SIZE + 1 + (5 << 30)
    header = tar_header("big.vmdk", big, 0)
    assert header[257:265] == b"ustar\x0000"
    assert tarfile.TarInfo.frombuf(header, "ascii", "strict").size == big
    for bad in ("dir/x.vmdk", "", "x" * 101, "é.vmdk"):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            tar_header(bad, 1, 0)


def test_verification_runs_on_the_assembly(build_dir):
    result = assemble_from_packer(build_dir)
    assert result.verified.sha256 == result.sha256 == sha256(result.ova)
    assert result.verified.disks[f"{STEM}-disk-0.vmdk"].stream_optimized


def test_too_long_names_are_refused_early(env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk")
    with pytest.raises(InputError, match="longer than the 100 characters"):
        plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1-" + "x" * 90, tmp_path / "o")


def test_a_listed_file_that_is_no_disk(build_dir):
    (build_dir / f"{STEM}.vmdk").write_bytes(b"not a disk any more" * 100)
    with pytest.raises(InputError, match=f"lists {STEM}.vmdk: not a VMDK with a descriptor"):
        plan_from_packer(build_dir)


def test_a_disk_that_changes_while_read(env, tmp_path):
    disk = make_vmdk(tmp_path / "d.vmdk")
    plan = plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "out")

    class Truncate:
        def begin(self, label, total):
            if label.startswith("writing"):
                os.truncate(disk, MiB)

        def advance(self, count):
            pass

        def end(self):
            pass
    with pytest.raises(BuildError, match="became shorter while it was being read"):
        assemble(plan, progress=Truncate())
    assert not (tmp_path / "out").exists()  # the directory it made is gone too
