"""Helpers for the OVA tests: real VMDKs made by qemu-img, Packer build directories,
stand-ins for the tools that cannot run here (ovftool, vmware-vdiskmanager).

No tests here; the ``test_ova_*`` modules import from it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

MiB = 1 << 20
DISK = 64 * MiB

CUSTOM_DATA = {
    "build_name": "ubuntu-2204", "build_timestamp": "1767225600",
    "build_date": "2026-01-01T00:00:00Z", "ib_version": "0.1.0",
    "ib_target": "node-ova-local-ubuntu-2204", "os_display_name": "Ubuntu 22.04",
    "distro_name": "ubuntu", "distro_version": "22.04", "distro_arch": "amd64",
    "guest_os_type": "ubuntu-64", "vsphere_guest_os_type": "ubuntu64Guest", "ovf_os_id": "94",
    "firmware": "bios", "vmx_version": "15", "cpu": "2", "memory": "4096",
    "disk_size": "20480", "disk_controller_type": "pvscsi", "network_card": "vmxnet3",
    "iso_url": "https://example.invalid/x.iso", "iso_checksum": "0" * 64,
    "iso_checksum_type": "sha256", "vm_name": "ubuntu-2204-kube-v1.37.1",
    "kubernetes_semver": "v1.37.1", "kubernetes_source_type": "pkg",
    "containerd_version": "2.4.1", "kubernetes_cni_semver": "v1.9.1", "build_type": "node",
}


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def make_vmdk(path: Path, subformat: str = "streamOptimized", size: int = DISK,
              data: list[tuple[int, bytes]] | None = None) -> Path:
    """A VMDK of ``size`` bytes made by qemu-img from a sparse raw image with
    ``data`` (offset, bytes) written into it (default: 1 MiB of noise at 5 MiB)."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as fh:
        fh.truncate(size)
        for offset, chunk in data if data is not None else [(5 * MiB, os.urandom(MiB))]:
            fh.seek(offset)
            fh.write(chunk)
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", f"subformat={subformat}",
             str(raw), str(path))
    raw.unlink()
    return path


def write_manifest(build_dir: Path, files: list[Path], custom_data: dict | None = None,
                   builds_before: list[dict] | None = None) -> Path:
    """``packer-manifest.json`` as Packer's manifest post-processor writes it
    (strip_path: bare names), with earlier runs' entries first."""
    build_dir.mkdir(parents=True, exist_ok=True)
    run = "run-uuid-last"
    entry = {"name": "vmware-iso", "builder_type": "vmware-iso", "build_time": 1767225600,
             "files": [{"name": f.name, "size": f.stat().st_size} for f in files],
             "artifact_id": "VM", "packer_run_uuid": run,
             "custom_data": dict(CUSTOM_DATA, **(custom_data or {}))}
    data = {"builds": list(builds_before or []) + [entry], "last_run_uuid": run}
    path = build_dir / "packer-manifest.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m imagebuilder ...`` as the Packer post-processor runs it."""
    return subprocess.run([sys.executable, "-m", "imagebuilder", *args], cwd=cwd,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def tar_names(ova: Path) -> list[str]:
    with tarfile.open(ova) as tar:
        return tar.getnames()


def rewrite_tar(source: Path, target: Path, order: list[str] | None = None,
                replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """Copy an OVA member by member, reordered, replaced or dropped."""
    replace = replace or {}
    with tarfile.open(source) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = order or list(members)
        with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as out:
            for name in names:
                if name in drop:
                    continue
                data = replace.get(name)
                if data is None:
                    data = tar.extractfile(members[name]).read()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    return target


def write_tool(directory: Path, name: str, body: str) -> Path:
    """A stand-in executable ``name`` in ``directory``: a Python script."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


#: A stand-in ovftool: records its argv, fails when OVFTOOL_EXIT is set, and
#: otherwise packs the descriptor and the files it references into the OVA
#: (with a SHA256 manifest), as ovftool does for ``ovftool x.ovf y.ova``.
OVFTOOL = r'''
import hashlib, io, json, os, sys, tarfile
import xml.etree.ElementTree as ET
with open(os.environ["OVFTOOL_RECORD"], "w") as fh:
    json.dump(sys.argv[1:], fh)
if os.environ.get("OVFTOOL_EXIT"):
    print("Error: the stand-in ovftool was told to fail")
    sys.exit(int(os.environ["OVFTOOL_EXIT"]))
src, dst = sys.argv[-2], sys.argv[-1]
ns = "{http://schemas.dmtf.org/ovf/envelope/1}"
root = ET.parse(src).getroot()
files = [f.get(ns + "href") for f in root.iter(ns + "File")]
base = os.path.dirname(src)
ovf_name = os.path.basename(dst)[:-4] + ".ovf"
ovf = open(src, "rb").read()
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
mf = "SHA256(%s)= %s\n" % (ovf_name, hashlib.sha256(ovf).hexdigest())
mf += "".join("SHA256(%s)= %s\n" % (f, sha(os.path.join(base, f))) for f in files)
with tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT, dereference=True) as tar:
    for name, data in ((ovf_name, ovf), (ovf_name[:-4] + ".mf", mf.encode())):
        info = tarfile.TarInfo(name); info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    for f in files:
        tar.add(os.path.join(base, f), arcname=f)
print("Completed successfully")
'''

#: A stand-in vmware-vdiskmanager: records its argv, then (VDISK_BLOCK set)
#: waits to be interrupted, or converts with qemu-img as ``-r IN -t 5 OUT`` asks.
VDISKMANAGER = r'''
import json, os, subprocess, sys, time
with open(os.environ["VDISK_RECORD"], "w") as fh:
    json.dump(sys.argv[1:], fh)
if os.environ.get("VDISK_BLOCK"):
    time.sleep(600)
_, src, _, kind, dst = sys.argv[1:]
assert kind == "5"
subprocess.run(["QEMU", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", src, dst],
               check=True)
'''


def install_vdiskmanager(directory: Path) -> Path:
    """The stand-in vmware-vdiskmanager in ``directory`` (it records into $VDISK_RECORD)."""
    return write_tool(directory, "vmware-vdiskmanager",
                      VDISKMANAGER.replace("QEMU", shutil.which("qemu-img") or "qemu-img")
                      ).parent


def assert_no_partial_files(directory: Path) -> None:
    """Nothing half-written: no temporary files, no scratch directories."""
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".")] \
        if directory.exists() else []
    assert leftovers == []


def flip_byte_in_member(ova: Path, member: str, at: int, target: Path) -> Path:
    """A copy of ``ova`` with one byte of ``member`` changed, ``at`` bytes into it."""
    with tarfile.open(ova) as tar:
        offset = tar.getmember(member).offset_data
    data = bytearray(ova.read_bytes())
    data[offset + at] ^= 0x55
    target.write_bytes(bytes(data))
    return target


def member_bytes(ova: Path, name: str) -> bytes:
    """One member's data."""
    with tarfile.open(ova) as tar:
        return tar.extractfile(name).read()


def openssl(*args: str, cwd: Path | None = None, input: bytes | None = None
            ) -> subprocess.CompletedProcess:
    """The openssl command line tool (no check: callers look at the exit code)."""
    return subprocess.run(["openssl", *args], cwd=cwd, input=input, capture_output=True,
                          timeout=60)


class SigningCa:
    """A CA and a code-signing certificate under ``directory``, made by the openssl
    tool alone (none of our code): ``ca.pem``, ``signer.key`` (RSA 2048),
    ``signer.pem`` (issued by the CA, ``days`` long), ``signer-chain.pem``
    (signer then CA), ``signer-encrypted.key`` (passphrase ``passphrase``)."""

    passphrase = "correct horse battery staple"

    def __init__(self, directory: Path, days: int = 30, name: str = "imagebuilder test") -> None:
        d = self.dir = directory
        d.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca = d / "ca.key", d / "ca.pem"
        self.key, self.cert, self.chain = d / "signer.key", d / "signer.pem", d / "signer-chain.pem"
        self.encrypted_key = d / "signer-encrypted.key"
        self.public = d / "signer-public.pem"
        (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                                   "extendedKeyUsage=codeSigning\n")
        steps = [
            ("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.ca_key),
             "-out", str(self.ca), "-days", "60", "-subj", f"/CN={name} CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"),
            ("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", str(self.key)),
            ("req", "-new", "-key", str(self.key), "-subj", f"/CN={name} signer",
             "-out", str(d / "signer.csr")),
            ("x509", "-req", "-in", str(d / "signer.csr"), "-CA", str(self.ca),
             "-CAkey", str(self.ca_key), "-CAcreateserial", "-days", str(days),
             "-extfile", str(d / "ext.cnf"), "-out", str(self.cert)),
            ("pkey", "-in", str(self.key), "-aes256", "-passout", f"pass:{self.passphrase}",
             "-out", str(self.encrypted_key)),
            ("pkey", "-in", str(self.key), "-pubout", "-out", str(self.public)),
        ]
        for step in steps:
            result = openssl(*step)
            assert result.returncode == 0, result.stderr.decode()
        self.chain.write_bytes(self.cert.read_bytes() + self.ca.read_bytes())

    def env(self, **extra: str) -> dict[str, str]:
        """The environment that signs with this certificate."""
        return {"IB_SIGNING_KEY": str(self.key), "IB_SIGNING_CERT": str(self.chain), **extra}


def openssl_verify_ova(ova: Path, ca: Path, workdir: Path) -> list[str]:
    """Check a signed OVA with tar and openssl only, as VMware documents it: the
    certificate in the ``.cert`` against the CA (``openssl verify``), its key's
    signature over the ``.mf`` (``openssl dgst -sha256 -verify``) and every
    digest the ``.mf`` lists (``openssl dgst -sha256``). Returns what failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xf", str(ova), "-C", str(workdir)], check=True, timeout=120)
    failed = []
    manifests = list(workdir.glob("*.mf"))
    certs = list(workdir.glob("*.cert"))
    if len(manifests) != 1 or len(certs) != 1:
        return ["no single .mf and .cert"]
    first, chain = certs[0].read_bytes().split(b"\n", 1)
    (workdir / "chain.pem").write_bytes(chain)
    leaf = openssl("x509", "-in", str(workdir / "chain.pem"), "-out", str(workdir / "leaf.pem"))
    pub = openssl("x509", "-in", str(workdir / "leaf.pem"), "-pubkey", "-noout")
    if leaf.returncode or pub.returncode:
        return ["no certificate after the signature line"]
    (workdir / "leaf-public.pem").write_bytes(pub.stdout)
    blocks = chain.split(b"-----END CERTIFICATE-----")[:-1]
    for number, block in enumerate(blocks):  # every certificate of the chain verifies
        (workdir / f"c{number}.pem").write_bytes(block.strip() + b"\n-----END CERTIFICATE-----\n")
        rest = b"".join(b + b"-----END CERTIFICATE-----" for b in blocks[number + 1:])
        (workdir / f"rest{number}.pem").write_bytes(rest + b"\n")
        trusted = openssl("verify", "-CAfile", str(ca), *(
            ["-untrusted", str(workdir / f"rest{number}.pem")] if rest else []),
            str(workdir / f"c{number}.pem"))
        if trusted.returncode != 0:
            failed.append(f"chain {number}: " + (trusted.stdout + trusted.stderr).decode().strip())
    label, _, hexsig = first.decode(errors="replace").partition("= ")
    if label != f"SHA256({manifests[0].name})":
        failed.append(f"first line names {label}")
    try:
        (workdir / "sig.bin").write_bytes(bytes.fromhex(hexsig))
    except ValueError:
        return failed + ["the signature is not hex"]
    result = openssl("dgst", "-sha256", "-verify", str(workdir / "leaf-public.pem"),
                     "-signature", str(workdir / "sig.bin"), str(manifests[0]))
    if result.returncode != 0 or b"Verified OK" not in result.stdout:
        failed.append("signature: " + (result.stdout + result.stderr).decode().strip())
    for line in manifests[0].read_text().splitlines():
        name = line[line.index("(") + 1:line.rindex(")")]
        digest = openssl("dgst", "-sha256", "-r", str(workdir / name))
        if digest.returncode != 0 or digest.stdout.split()[0].decode() != line.split()[-1]:
            failed.append(f"digest of {name}")
    return failed


def packer_build_with_record(checkout, output: Path, monkeypatch) -> Path:
    """A finished Packer build of CUSTOM_DATA's target: its output directory (under
    ``output``, which becomes IB_OUTPUT_DIR) with a streamOptimized disk in its manifest,
    and the build's record in its work directory, from the target's real plan."""
    import shutil as _shutil

    from imagebuilder.config.catalog import parse_target
    from imagebuilder.config.knobs import Knobs
    from imagebuilder.ova.build_record import RECORD_NAME, record_from_plan, write_record
    from imagebuilder.planning.plan import plan_build

    for knob in ("SOURCE_DATE_EPOCH", "IB_SIGNING_KEY", "IB_SIGNING_CERT", "IB_OVFTOOL"):
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("IB_OUTPUT_DIR", str(output))
    target = parse_target(CUSTOM_DATA["ib_target"], checkout.os_names())
    plan = plan_build(checkout, target, Knobs.from_env({}), "build")
    plan.work_dir.mkdir(parents=True)
    write_record(record_from_plan(plan, _shutil.which("packer")), plan.work_dir / RECORD_NAME)
    out = output / CUSTOM_DATA["vm_name"]
    out.mkdir(parents=True)
    write_manifest(out, [make_vmdk(out / f"{CUSTOM_DATA['vm_name']}-disk1.vmdk")])
    return out
