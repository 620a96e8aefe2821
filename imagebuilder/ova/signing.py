"""Signed OVAs: the ``.cert`` member vSphere and ovftool read, made and checked.

The member's first line is ``SHA256(<name>.mf)= <hex>``: the RSA PKCS#1 v1.5
signature with SHA-256 over the exact bytes of the manifest, spelled as
vCenter reads it (OpenSSL 3 writes ``SHA2-256``, which vCenter refuses). The
certificate chain follows in PEM, signing certificate first.

The key and the certificate come from the environment, never the command
line: ``IB_SIGNING_KEY`` and ``IB_SIGNING_CERT`` (a PEM file's path, or the
PEM text itself), ``IB_SIGNING_KEY_PASSPHRASE`` for an encrypted key.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from imagebuilder.errors import InputError
from imagebuilder.ova.limits import read_limited

KEY_VARIABLE = "IB_SIGNING_KEY"
CERT_VARIABLE = "IB_SIGNING_CERT"
PASSPHRASE_VARIABLE = "IB_SIGNING_KEY_PASSPHRASE"
#: A PEM file of more than this is not a key or a certificate chain.
MAX_PEM = 1 << 20
_FIRST_LINE = re.compile(rb"^SHA256\(([^()\n]+)\)= ([0-9a-f]+)\n")


@dataclass(frozen=True)
class Signer:
    """An RSA signing key and its certificate chain (signing certificate first)."""

    key: rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def signature_size(self) -> int:
        """Bytes of one signature (the key's modulus)."""
        return self.key.key_size // 8

    def sign(self, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 with SHA-256 over ``data``, as ``openssl dgst -sha256 -sign`` makes."""
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def chain_pem(self) -> bytes:
        """The certificate chain in PEM."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def certificate_size(self, manifest_name: str) -> int:
        """The ``.cert`` member's size, known before the manifest is."""
        return len(_first_line(manifest_name, b"\0" * self.signature_size)) + len(self.chain_pem())

    def certificate(self, manifest_name: str, manifest: bytes) -> bytes:
        """The ``.cert`` member for these exact manifest bytes."""
        return _first_line(manifest_name, self.sign(manifest)) + self.chain_pem()


def _first_line(manifest_name: str, signature: bytes) -> bytes:
    return f"SHA256({manifest_name})= {signature.hex()}\n".encode("ascii")


def _pem(value: str, variable: str) -> bytes:
    """The PEM text a variable holds or names."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii", errors="replace")
    try:
        return read_limited(Path(value), MAX_PEM, "a PEM key or certificate")
    except InputError as exc:
        raise InputError(f"{variable}={exc.message}; give the path of a PEM file or the PEM "
                         "text itself") from None


def load_signer(env: Mapping[str, str]) -> Signer | None:
    """The signer ``IB_SIGNING_KEY``/``IB_SIGNING_CERT`` describe, or None when neither is set.

    Raises InputError, naming the variable, for one without the other, an
    unreadable or non-RSA key, a wrong passphrase, a certificate of another
    key, or a signing certificate that is not valid now.
    """
    key_value, cert_value = env.get(KEY_VARIABLE, ""), env.get(CERT_VARIABLE, "")
    if not key_value and not cert_value:
        return None
    if not key_value or not cert_value:
        given, missing = ((KEY_VARIABLE, CERT_VARIABLE) if key_value
                          else (CERT_VARIABLE, KEY_VARIABLE))
        raise InputError(f"{given} is set but {missing} is not; a signed OVA needs both the "
                         "private key and its certificate (PEM)")
    passphrase = env.get(PASSPHRASE_VARIABLE, "").encode() or None
    try:
        key = serialization.load_pem_private_key(_pem(key_value, KEY_VARIABLE), passphrase)
    except TypeError:
        raise InputError(f"{KEY_VARIABLE}: the key is encrypted; give its passphrase in "
                         f"{PASSPHRASE_VARIABLE}") from None
    except ValueError:
        hint = f" or {PASSPHRASE_VARIABLE} is wrong" if passphrase else ""
        raise InputError(f"{KEY_VARIABLE}: not a PEM private key{hint}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"{KEY_VARIABLE}: not an RSA key; vSphere verifies OVA signatures "
                         "made with RSA keys only")
    try:
        chain = tuple(x509.load_pem_x509_certificates(_pem(cert_value, CERT_VARIABLE)))
    except ValueError:
        raise InputError(f"{CERT_VARIABLE}: holds no PEM certificate") from None
    leaf = chain[0]
    if leaf.public_key().public_numbers() != key.public_key().public_numbers():
        raise InputError(f"{CERT_VARIABLE}: its first certificate ({leaf.subject.rfc4514_string()})"
                         f" is not the certificate of the key in {KEY_VARIABLE}")
    problem = _date_problem(leaf, dt.datetime.now(dt.timezone.utc))
    if problem:
        raise InputError(f"{CERT_VARIABLE}: {problem}")
    return Signer(key, chain)


def _date_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    name = cert.subject.rfc4514_string()
    if now < cert.not_valid_before_utc:
        return f"certificate {name} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z"
    if now > cert.not_valid_after_utc:
        return f"certificate {name} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    return None


@dataclass(frozen=True)
class CertificateCheck:
    """What a ``.cert`` member says: the manifest it signs, the signature, the chain."""

    manifest_name: str
    signature: bytes
    chain: tuple[x509.Certificate, ...]


def read_certificate(data: bytes, shown: str) -> CertificateCheck:
    """Read a ``.cert`` member; ValueError (one line) when it is not one."""
    match = _FIRST_LINE.match(data)
    if not match or len(match.group(2)) % 2:
        raise ValueError(f"{shown}: the first line is not 'SHA256(<name>.mf)= <hex signature>'")
    try:
        chain = tuple(x509.load_pem_x509_certificates(data[match.end():]))
    except ValueError:
        raise ValueError(f"{shown}: holds no PEM certificate after the signature line") from None
    return CertificateCheck(match.group(1).decode("ascii", errors="replace"),
                            bytes.fromhex(match.group(2).decode("ascii")), chain)


def signature_problems(check: CertificateCheck, manifest_name: str, manifest: bytes,
                       shown: str) -> list[str]:
    """Whether the signature in ``check`` is the signing certificate's over ``manifest``."""
    if check.manifest_name != manifest_name:
        return [f"{shown} signs {check.manifest_name}, not the manifest {manifest_name}"]
    public = check.chain[0].public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        return [f"{shown}: the signing certificate's key is not RSA"]
    try:
        public.verify(check.signature, manifest, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return [f"{shown}: the signature does not match {manifest_name}: the manifest was "
                "changed after signing, or signed with another key"]
    return []


def chain_problems(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                   now: dt.datetime, shown: str) -> list[str]:
    """Whether ``chain`` (signing certificate first, each certificate issued by the
    next) leads to one of ``anchors``, every certificate on the way valid at ``now``.
    The chain may end with the anchor itself or with a certificate it issued."""
    problems = [f"{shown}: {p}" for p in (_date_problem(c, now) for c in chain) if p]
    for number, (cert, issuer) in enumerate(zip(chain, chain[1:]), 1):
        if not (_issued_by(cert, issuer) and _is_ca(issuer)):
            return problems + [f"{shown}: certificate {number} of the chain "
                               f"({cert.subject.rfc4514_string()}) is not issued by the next "
                               "one; the chain is damaged or out of order"]
    last = chain[-1]
    if any(last == a for a in anchors):
        return problems
    anchor = next((a for a in anchors if _issued_by(last, a)), None)
    if anchor is None:
        return problems + [f"{shown}: the chain of {chain[0].subject.rfc4514_string()} does not "
                           f"lead to a certificate of the --ca file (it ends at "
                           f"{last.issuer.rfc4514_string()})"]
    date = _date_problem(anchor, now)
    return problems + ([f"--ca: {date}"] if date else [])


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def read_anchors(path: Path) -> list[x509.Certificate]:
    """The certificates of a ``--ca`` PEM file (InputError when it holds none)."""
    data = _pem(str(path), "--ca")
    try:
        return list(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise InputError(f"--ca {path}: holds no PEM certificate") from None

