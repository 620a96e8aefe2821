"""``ova-verify`` as users run it: the OVA, its signature (``--ca``), its provenance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from imagebuilder.errors import BuildError
from imagebuilder.ova.limits import read_limited, size_text
from imagebuilder.ova.progress import ByteProgress
from imagebuilder.ova.provenance import (
    MAX_PROVENANCE,
    check_provenance,
    provenance_path,
    signature_path,
)
from imagebuilder.ova.signing import read_anchors, read_certificate
from imagebuilder.ova.verify import VerifiedOva, verify_ova


def check_ova(path: Path, progress: ByteProgress | None = None, ca_file: Path | None = None,
              provenance: bool | Path = False, now: dt.datetime | None = None) -> str:
    """Verify ``path`` and return the one line ``ova-verify`` prints; raise BuildError
    (exit 1) naming the problem, InputError (exit 2) for an unreadable ``--ca``.

    ``ca_file``: the OVA must be signed by a chain leading to a certificate of
    this PEM file, valid at ``now``. ``provenance``: True checks
    ``<name>.provenance.json`` beside it, a path checks that file; its subject
    must be this OVA and its digest, and its ``.sig`` (when present) must be the
    OVA's signing key's signature of it.
    """
    path = Path(path)
    anchors = read_anchors(ca_file) if ca_file is not None else None
    result = verify_ova(path, progress, anchors=anchors, now=now)
    notes = []
    if result.certificate_bytes:
        leaf = read_certificate(result.certificate_bytes, ".cert").chain[0]
        notes.append(f"signed by {leaf.subject.rfc4514_string()}"
                     + (" (chain checked against --ca)" if anchors is not None else ""))
    if provenance:
        statement = provenance_path(path) if provenance is True else Path(provenance)
        notes.append(_provenance_note(statement, path, result))
    disks = ", ".join(f"{name} ({size_text(info.capacity)})"
                      for name, info in result.disks.items())
    return (f"{path}: ok: {len(result.members)} members, disks {disks}; sha256 {result.sha256}"
            + "".join(f"; {n}" for n in notes))


#: An RSA signature is at most a kilobyte (8192-bit keys); anything larger is not one.
MAX_SIGNATURE = 1 << 16


def _provenance_note(statement: Path, ova: Path, result: VerifiedOva) -> str:
    data = read_limited(statement, MAX_PROVENANCE, "a provenance statement")
    problems = check_provenance(data, ova.name, result.sha256, statement.name)
    if problems:
        raise BuildError(problems[0], problems[1:] or None)
    sig = signature_path(statement)
    if not sig.is_file():
        return f"provenance {statement.name} matches (unsigned)"
    if not result.certificate_bytes:
        raise BuildError(f"{sig.name}: the OVA has no certificate to check this signature with")
    public = read_certificate(result.certificate_bytes, ".cert").chain[0].public_key()
    try:
        if not isinstance(public, rsa.RSAPublicKey):
            raise InvalidSignature
        public.verify(read_limited(sig, MAX_SIGNATURE, "a signature"), data, padding.PKCS1v15(),
                      hashes.SHA256())
    except InvalidSignature:
        raise BuildError(f"{sig.name}: not the OVA signing key's signature of "
                         f"{statement.name}: the provenance was changed after signing") from None
    return f"provenance {statement.name} matches, signature ok"
