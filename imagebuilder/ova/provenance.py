"""Provenance: an in-toto statement with an SLSA provenance v1 predicate, per OVA.

``<name>.provenance.json`` beside the OVA names the OVA and its sha256 as the
subject, and as resolved dependencies every input of the build's record
(``build_record``): the var files in layering order, node.json, the roles
tree, the install-file templates, the ISO and each download, with their
digests; the versions of this tool and of Packer. With a signing key
(``signing``), ``<name>.provenance.json.sig`` holds the detached RSA PKCS#1
v1.5 SHA-256 signature of the file's exact bytes (``openssl dgst -sha256
-verify`` checks it against the OVA's certificate). ``check_provenance`` is
what ``ova verify --provenance`` runs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from imagebuilder import __version__
from imagebuilder.ova.build_record import BuildRecord, download_sha256

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:imagebuilder:build-node-ova:v1"
BUILDER_ID = "urn:imagebuilder:invoke"
MAX_PROVENANCE = 8 << 20


def provenance_path(ova: Path) -> Path:
    """``<name>.provenance.json`` beside ``<name>.ova``."""
    return ova.with_name(ova.name[:-len(".ova")] + ".provenance.json"
                         if ova.name.endswith(".ova") else ova.name + ".provenance.json")


def signature_path(provenance: Path) -> Path:
    """The detached signature beside the statement."""
    return provenance.with_name(provenance.name + ".sig")


def _dependencies(record: BuildRecord) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": i.name, "digest": {"sha256": i.sha256}, "annotations": {"kind": i.kind}}
        for i in record.inputs]
    if record.iso_url:
        iso: dict[str, Any] = {"uri": record.iso_url, "annotations": {"kind": "iso",
                                                                      "checksum":
                                                                      record.iso_checksum}}
        digest = download_sha256(record.iso_checksum)
        if digest:
            iso["digest"] = {"sha256": digest}
        found.append(iso)
    for d in record.downloads:
        entry: dict[str, Any] = {"uri": d.url, "name": d.name,
                                 "annotations": {"kind": "download", "version": d.version,
                                                 "checksum": d.checksum}}
        if d.sha256:
            entry["digest"] = {"sha256": d.sha256}
        found.append(entry)
    return found


def statement(ova_name: str, ova_sha256: str, record: BuildRecord | None,
              byproducts: dict[str, str], finished: dt.datetime | None = None
              ) -> dict[str, Any]:
    """The statement of an OVA; ``byproducts`` (file name -> sha256) are the files
    made beside it (SBOM, descriptor, manifest). Without a record, the inputs
    are unknown and the statement says so."""
    finished = finished or dt.datetime.now(dt.timezone.utc)
    external: dict[str, Any] = {"target": record.target if record else "",
                                "builder": record.builder if record else "",
                                "var_files": [i.name for i in record.inputs
                                              if i.kind.startswith("var-file:")]
                                if record else []}
    metadata: dict[str, Any] = {"finishedOn": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if record and record.started:
        metadata["startedOn"] = record.started
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": ova_name, "digest": {"sha256": ova_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"record": "found" if record else
                                       "missing: the build's inputs are unknown"},
                "resolvedDependencies": _dependencies(record) if record else [],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {
                    "imagebuilder": record.ib_version if record else __version__,
                    "packer": record.packer_version if record else ""}},
                "metadata": metadata,
                "byproducts": [{"name": n, "digest": {"sha256": s}}
                               for n, s in sorted(byproducts.items())],
            },
        },
    }


def statement_bytes(document: dict[str, Any]) -> bytes:
    """The statement as its file holds it."""
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def check_provenance(document_bytes: bytes, ova_name: str, ova_sha256: str,
                     shown: str) -> list[str]:
    """Problems of a provenance statement for the OVA ``ova_name`` of ``ova_sha256``."""
    try:
        document = json.loads(document_bytes)
        subjects = document["subject"]
        kinds = (document["_type"], document["predicateType"])
    except (ValueError, KeyError, TypeError):
        return [f"{shown}: not an in-toto statement"]
    problems = []
    if kinds != (STATEMENT_TYPE, PREDICATE_TYPE):
        problems.append(f"{shown}: a {kinds[0]} of {kinds[1]}, not an in-toto statement of "
                        "SLSA provenance v1")
    matching = [s for s in subjects if isinstance(s, dict) and s.get("name") == ova_name]
    if not matching:
        return problems + [f"{shown}: its subject is not {ova_name}"]
    recorded = (matching[0].get("digest") or {}).get("sha256", "")
    if recorded != ova_sha256:
        problems.append(f"{shown}: its subject {ova_name} has sha256 {recorded or 'none'}; the "
                        f"OVA's is {ova_sha256}: the OVA is not the one this provenance "
                        "describes")
    return problems
