"""Signed OVAs: the .cert member, checked by openssl alone and by ova-verify."""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from helpers.ova import (
    MiB,
    SigningCa,
    flip_byte_in_member,
    make_vmdk,
    member_bytes,
    openssl_verify_ova,
    rewrite_tar,
    run_cli,
    tar_names,
)

from imagebuilder.errors import BuildError, InputError
from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.ova.assemble import AssembleOptions
from imagebuilder.ova.check import check_ova

STEM = "ubuntu-2204-kube-v1.37.1"
OVF, MF, CERT, DISK0 = f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}.cert", f"{STEM}-disk-0.vmdk"
SIGNING = ("IB_SIGNING_KEY", "IB_SIGNING_CERT", "IB_SIGNING_KEY_PASSPHRASE", "SOURCE_DATE_EPOCH")


@pytest.fixture
def ca(tmp_path):
    return SigningCa(tmp_path / "ca")


@pytest.fixture
def disk(checkout, tmp_path, monkeypatch):
    for knob in ("IB_OVFTOOL", "IB_OVFTOOL_ARGS", "OVF_CUSTOM_PROPERTIES", *SIGNING):
        monkeypatch.delenv(knob, raising=False)
    return make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(2 * MiB))])


def signed(disk, env, out):
    options = AssembleOptions.from_env(env)
    return assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", out, options=options))


def test_signed_ova_verifies_with_openssl_and_ova_verify(disk, ca, tmp_path):
    result = signed(disk, ca.env(), tmp_path / "out")
    assert tar_names(result.ova) == [OVF, MF, CERT, DISK0]
    cert = member_bytes(result.ova, CERT)
    first, rest = cert.split(b"\n", 1)
    assert re.fullmatch(rb"SHA256\(" + re.escape(MF.encode()) + rb"\)= [0-9a-f]{512}", first)
    assert rest == ca.chain.read_bytes()          # the chain in PEM, signer first
    assert (tmp_path / "out" / CERT).read_bytes() == cert
    assert openssl_verify_ova(result.ova, ca.ca, tmp_path / "x") == []
    cli = run_cli("ova", "verify", str(result.ova), "--ca", str(ca.ca))
    assert cli.returncode == 0, cli.stderr
    assert "signed by CN=imagebuilder test signer (chain checked against --ca)" in cli.stdout


@pytest.mark.parametrize("member,at", [(OVF, 200), (MF, 10), (CERT, 30), (DISK0, 700),
                                       (CERT, 2000)])
def test_a_changed_byte_anywhere_fails_openssl_and_ova_verify(disk, ca, tmp_path, member, at):
    result = signed(disk, ca.env(), tmp_path / "out")
    bad = flip_byte_in_member(result.ova, member, at, tmp_path / "bad.ova")
    assert openssl_verify_ova(bad, ca.ca, tmp_path / "x") != []
    cli = run_cli("ova", "verify", str(bad), "--ca", str(ca.ca))
    assert cli.returncode == 1, cli.stdout


def test_a_tampered_manifest_is_one_line(disk, ca, tmp_path):
    """An attacker swaps a disk and rewrites the manifest to match: the digests
    agree, only the signature tells."""
    result = signed(disk, ca.env(), tmp_path / "out")
    manifest = member_bytes(result.ova, MF).replace(b"= ", b"= 0", 1)[:-2] + b"\n"
    bad = rewrite_tar(result.ova, tmp_path / "bad.ova", replace={MF: manifest})
    cli = run_cli("ova", "verify", str(bad))
    assert cli.returncode == 1
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "the signature does not match" in cli.stderr


def test_a_certificate_of_another_key_is_refused(disk, ca, tmp_path):
    other = SigningCa(tmp_path / "other", name="someone else")
    result = signed(disk, ca.env(), tmp_path / "out")
    cert = member_bytes(result.ova, CERT)
    swapped = cert.split(b"\n", 1)[0] + b"\n" + other.chain.read_bytes()
    bad = rewrite_tar(result.ova, tmp_path / "bad.ova", replace={CERT: swapped})
    cli = run_cli("ova", "verify", str(bad))
    assert cli.returncode == 1 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    with pytest.raises(InputError, match="is not the certificate of the key"):
        AssembleOptions.from_env({"IB_SIGNING_KEY": str(ca.key),
                                  "IB_SIGNING_CERT": str(other.cert)})


def test_chain_and_dates_with_ca(disk, ca, tmp_path):
    result = signed(disk, ca.env(), tmp_path / "out")
    other = SigningCa(tmp_path / "other", name="someone else")
    cli = run_cli("ova", "verify", str(result.ova), "--ca", str(other.ca))
    assert cli.returncode == 1 and "does not lead to a certificate of the --ca file" in cli.stderr
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=45)
    with pytest.raises(BuildError) as err:
        check_ova(result.ova, ca_file=ca.ca, now=later)
    assert any("expired on" in p for p in err.value.problems)
    unsigned = assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp_path / "plain"))
    cli = run_cli("ova", "verify", str(unsigned.ova), "--ca", str(ca.ca))
    assert cli.returncode == 1 and "is not signed" in cli.stderr


def test_encrypted_key_pem_text_and_bad_passphrase(disk, ca, tmp_path):
    env = {"IB_SIGNING_KEY": ca.encrypted_key.read_text(),
           "IB_SIGNING_CERT": ca.cert.read_text(),
           "IB_SIGNING_KEY_PASSPHRASE": ca.passphrase}
    result = signed(disk, env, tmp_path / "out")
    assert openssl_verify_ova(result.ova, ca.ca, tmp_path / "x") == []
    with pytest.raises(InputError, match="IB_SIGNING_KEY_PASSPHRASE is wrong"):
        AssembleOptions.from_env(dict(env, IB_SIGNING_KEY_PASSPHRASE="wrong"))
    with pytest.raises(InputError, match="give its passphrase"):
        AssembleOptions.from_env({k: v for k, v in env.items() if "PASSPHRASE" not in k})
    with pytest.raises(InputError, match="IB_SIGNING_CERT is not"):
        AssembleOptions.from_env({"IB_SIGNING_KEY": str(ca.key)})


def test_signing_through_the_post_processor_command(disk, ca, tmp_path):
    """The key travels in the environment; nothing of it is in argv or the output."""
    out = tmp_path / "cli"
    cli = run_cli("ova", "assemble", "--vmdk", str(disk), "--os", "ubuntu-2204",
                  "--kubernetes-version", "v1.37.1", "--output", str(out),
                  env={"IB_SIGNING_KEY": ca.encrypted_key.read_text(),
                       "IB_SIGNING_CERT": str(ca.chain),
                       "IB_SIGNING_KEY_PASSPHRASE": ca.passphrase})
    assert cli.returncode == 0, cli.stderr
    assert "signed" in cli.stdout
    assert ca.passphrase not in cli.stdout + cli.stderr
    assert "PRIVATE KEY" not in cli.stdout + cli.stderr
    assert openssl_verify_ova(out / f"{STEM}.ova", ca.ca, tmp_path / "x") == []
    bad = run_cli("ova", "assemble", "--vmdk", str(disk), "--os", "ubuntu-2204",
                  "--kubernetes-version", "v1.37.1", "--output", str(tmp_path / "bad"),
                  env={"IB_SIGNING_KEY": str(ca.key), "IB_SIGNING_CERT": str(tmp_path / "no")})
    assert bad.returncode == 2 and "IB_SIGNING_CERT" in bad.stderr
    assert not (tmp_path / "bad").exists()
