"""Provenance: the in-toto statement beside the OVA, its signature, ova-verify --provenance."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.ova import (
    SigningCa,
    make_vmdk,
    openssl,
    packer_build_with_record,
    run_cli,
)

STEM = "ubuntu-2204-kube-v1.37.1"


@pytest.fixture
def build(checkout, tmp_path, monkeypatch):
    return packer_build_with_record(checkout, tmp_path / "output", monkeypatch)


def test_signed_provenance_matches_the_ova(build, tmp_path):
    ca = SigningCa(tmp_path / "ca")
    result = run_cli("ova", "assemble", "--from-packer", str(build), env=ca.env())
    assert result.returncode == 0, result.stderr
    ova, statement = build / f"{STEM}.ova", build / f"{STEM}.provenance.json"
    document = json.loads(statement.read_text())
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == "https://slsa.dev/provenance/v1"
    sha = (build / f"{STEM}.ova.sha256").read_text().split()[0]
    assert document["subject"] == [{"name": ova.name, "digest": {"sha256": sha}}]
    deps = document["predicate"]["buildDefinition"]["resolvedDependencies"]
    names = [d.get("name") for d in deps if d["annotations"]["kind"].startswith("var-file")]
    assert names[:2] == ["packer/config/kubernetes.json", "packer/config/cni.json"]
    assert names[-1] == "ova/ubuntu-2204.json"          # layering order
    kinds = {d["annotations"]["kind"] for d in deps}
    assert {"template", "roles", "install-templates", "iso", "download"} <= kinds
    iso = next(d for d in deps if d["annotations"]["kind"] == "iso")
    assert iso["uri"].endswith(".iso") and len(iso["digest"]["sha256"]) == 64
    version = document["predicate"]["runDetails"]["builder"]["version"]
    assert version["packer"].startswith("Packer v")
    # the detached signature, checked by openssl with the certificate's key
    signature = build / f"{STEM}.provenance.json.sig"
    check = openssl("dgst", "-sha256", "-verify", str(ca.public), "-signature", str(signature),
                    str(statement))
    assert check.returncode == 0 and b"Verified OK" in check.stdout
    verified = run_cli("ova", "verify", str(ova), "--provenance")
    assert verified.returncode == 0, verified.stderr
    assert "provenance ubuntu-2204-kube-v1.37.1.provenance.json matches, signature ok" \
        in verified.stdout


def test_a_changed_statement_or_ova_fails(build, tmp_path):
    ca = SigningCa(tmp_path / "ca")
    assert run_cli("ova", "assemble", "--from-packer", str(build), env=ca.env()).returncode == 0
    ova, statement = build / f"{STEM}.ova", build / f"{STEM}.provenance.json"
    original = statement.read_bytes()
    statement.write_bytes(original.replace(b'"target"', b'"Target"'))
    changed = run_cli("ova", "verify", str(ova), "--provenance")
    assert changed.returncode == 1 and "changed after signing" in changed.stderr
    assert openssl("dgst", "-sha256", "-verify", str(ca.public), "-signature",
                   str(build / f"{STEM}.provenance.json.sig"), str(statement)).returncode != 0
    statement.write_bytes(original)
    other = tmp_path / "other"
    shutil.copytree(build, other)
    (other / f"{STEM}.provenance.json").write_bytes(
        original.replace(original[original.index(b'"sha256": "') + 11:][:8], b"00000000", 1))
    (other / f"{STEM}.provenance.json.sig").unlink()
    mismatch = run_cli("ova", "verify", str(other / ova.name), "--provenance")
    assert mismatch.returncode == 1
    assert "the OVA is not the one this provenance describes" in mismatch.stderr


def test_unsigned_provenance_without_a_record(checkout, tmp_path, monkeypatch):
    """``ova assemble --vmdk``: no build, no record; the statement says the inputs are unknown."""
    monkeypatch.delenv("IB_SIGNING_KEY", raising=False)
    disk = make_vmdk(tmp_path / "d.vmdk")
    out = tmp_path / "out"
    result = run_cli("ova", "assemble", "--vmdk", str(disk), "--os", "ubuntu-2204",
                     "--kubernetes-version", "v1.37.1", "--output", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads((out / f"{STEM}.provenance.json").read_text())
    assert document["predicate"]["buildDefinition"]["internalParameters"]["record"].startswith(
        "missing")
    assert not (out / f"{STEM}.provenance.json.sig").exists()
    verified = run_cli("ova", "verify", str(out / f"{STEM}.ova"), "--provenance")
    assert verified.returncode == 0 and "matches (unsigned)" in verified.stdout
