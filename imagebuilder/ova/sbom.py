"""The node image's SBOM: CycloneDX 1.6 JSON of its packages and of what the roles downloaded.

The ``package_inventory`` role (packer/ansible) writes the image's package
list at the end of provisioning into the build's output directory
(``package-inventory.json``: the package manager and one tab-separated line
per package, from ``dpkg-query``, ``rpm -qa`` (also Photon's tdnf systems) or
Flatcar's package list). Together with the downloads of the build's record
(``build_record``) it becomes ``<name>.cdx.json``: a member of the OVA (listed
in References and in the manifest, so a signature covers it) and a file next
to it. Without an inventory (``communicator: none``, as against the
simulator: no provisioner reached the VM) there is no SBOM, and the assembly
says why.

The document is a function of its inputs: its serial number is derived from
them and its timestamp is the build's (``SOURCE_DATE_EPOCH`` when set), so
reproducible OVAs stay reproducible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from imagebuilder import __version__
from imagebuilder.errors import InputError
from imagebuilder.ova.build_record import DownloadRecord
from imagebuilder.ova.limits import read_limited

SPEC_VERSION = "1.6"
MAX_INVENTORY = 32 << 20
MANAGERS = ("dpkg", "rpm", "flatcar")
#: Namespace of the SBOM's serial number (a UUID of its content).
SERIAL_NAMESPACE = uuid.UUID("5b0f7f7e-8c0c-4d1e-9a55-6b2f1d3c9e01")


@dataclass(frozen=True)
class Package:
    """One installed package: name, version, architecture and source package."""

    name: str
    version: str
    arch: str = ""
    source: str = ""


@dataclass(frozen=True)
class Inventory:
    """The image's packages as its package manager lists them."""

    manager: str
    distro: str
    packages: tuple[Package, ...]


def parse_inventory(data: bytes, shown: str) -> Inventory:
    """Read ``package-inventory.json``; InputError naming ``shown`` when it is not one."""
    try:
        doc = json.loads(data)
        manager, distro, lines = doc["manager"], str(doc.get("distro", "")), doc["packages"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{shown}: not a package inventory ({exc})") from None
    if manager not in MANAGERS or not isinstance(lines, list):
        raise InputError(f"{shown}: manager {manager!r} is not one of {', '.join(MANAGERS)}")
    packages = {}
    for line in lines:
        package = _package(manager, str(line))
        if package is not None:
            packages[(package.name, package.version, package.arch)] = package
    if not packages:
        raise InputError(f"{shown}: lists no package")
    return Inventory(manager, distro.lower(), tuple(sorted(packages.values(),
                                                           key=lambda p: (p.name, p.version,
                                                                          p.arch))))


def _package(manager: str, line: str) -> Package | None:
    fields = line.rstrip("\n").split("\t")
    if manager == "flatcar":  # category/name-version[::repo]
        atom = fields[0].split("::")[0].strip()
        category, _, rest = atom.rpartition("/")
        name, version = _split_atom(rest)
        return Package(f"{category}/{name}" if category else name, version) if name else None
    if len(fields) < 2 or not fields[0] or not fields[1]:
        return None
    arch = fields[2] if len(fields) > 2 and fields[2] != "(none)" else ""
    source = fields[3] if len(fields) > 3 and fields[3] != "(none)" else ""
    return Package(fields[0], fields[1], arch, source)


def _split_atom(text: str) -> tuple[str, str]:
    """``name-1.2.3-r1`` -> (``name``, ``1.2.3-r1``): the version starts at the
    first ``-`` followed by a digit (Gentoo's rule)."""
    for i, char in enumerate(text):
        if char == "-" and i + 1 < len(text) and text[i + 1].isdigit():
            return text[:i], text[i + 1:]
    return text, ""


def read_inventory(path: Path) -> Inventory:
    """The inventory file at ``path`` (bounded to MAX_INVENTORY bytes)."""
    return parse_inventory(read_limited(path, MAX_INVENTORY, "a package inventory"), str(path))


def _purl(manager: str, distro: str, package: Package) -> str:
    name = quote(package.name, safe="")
    if manager == "flatcar":
        category, _, base = package.name.rpartition("/")
        return (f"pkg:generic/flatcar/{quote(category, safe='')}/{quote(base, safe='')}"
                f"@{quote(package.version, safe='')}")
    kind = "deb" if manager == "dpkg" else "rpm"
    version = package.version
    qualifiers = []
    if kind == "rpm" and ":" in version:
        epoch, version = version.split(":", 1)
        qualifiers.append(f"epoch={quote(epoch, safe='')}")
    if package.arch:
        qualifiers.insert(0, f"arch={quote(package.arch, safe='')}")
    namespace = f"{quote(distro, safe='')}/" if distro else ""
    query = ("?" + "&".join(qualifiers)) if qualifiers else ""
    return f"pkg:{kind}/{namespace}{name}@{quote(version, safe='')}{query}"


def _package_component(inventory: Inventory, package: Package) -> dict[str, Any]:
    purl = _purl(inventory.manager, inventory.distro, package)
    component: dict[str, Any] = {"type": "library", "bom-ref": purl, "name": package.name,
                                 "version": package.version, "purl": purl}
    if package.source and package.source != package.name:
        component["properties"] = [{"name": "imagebuilder:source-package",
                                    "value": package.source}]
    return component


def _download_component(download: DownloadRecord) -> dict[str, Any]:
    purl = (f"pkg:generic/{quote(download.name, safe='')}@{quote(download.version, safe='')}"
            f"?download_url={quote(download.url, safe='')}")
    component: dict[str, Any] = {
        "type": "application", "bom-ref": purl, "name": download.name,
        "version": download.version, "purl": purl,
        "externalReferences": [{"type": "distribution", "url": download.url}]}
    if download.sha256:
        component["hashes"] = [{"alg": "SHA-256", "content": download.sha256}]
    else:
        component["properties"] = [{"name": "imagebuilder:checksum",
                                    "value": download.checksum}]
    return component


def sbom_document(image: str, image_version: str, timestamp: int, inventory: Inventory,
                  downloads: Sequence[DownloadRecord] | None) -> dict[str, Any]:
    """The CycloneDX 1.6 document of a node image.

    ``downloads`` None means the build's record was not found: the document
    says its composition is incomplete.
    """
    components = [_package_component(inventory, p) for p in inventory.packages]
    components += [_download_component(d) for d in downloads or ()]
    seen: set[str] = set()
    unique = [c for c in components if not (c["bom-ref"] in seen or seen.add(c["bom-ref"]))]
    when = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    root_ref = f"urn:imagebuilder:image:{quote(image, safe='')}"
    document: dict[str, Any] = {
        "bomFormat": "CycloneDX", "specVersion": SPEC_VERSION, "version": 1,
        "metadata": {
            "timestamp": when,
            "tools": {"components": [{"type": "application", "name": "imagebuilder",
                                      "version": __version__}]},
            "component": {"type": "operating-system", "bom-ref": root_ref, "name": image,
                          "version": image_version},
            "properties": [{"name": "imagebuilder:package-manager",
                            "value": inventory.manager}],
        },
        "components": unique,
        "dependencies": [{"ref": root_ref, "dependsOn": [c["bom-ref"] for c in unique]}],
        "compositions": [{"aggregate": "complete" if downloads is not None else "incomplete",
                          "assemblies": [root_ref]}],
    }
    content = json.dumps(document, sort_keys=True).encode()
    document["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(
        SERIAL_NAMESPACE, hashlib.sha256(content).hexdigest()))
    return document


def sbom_bytes(document: dict[str, Any]) -> bytes:
    """The document as the file holds it (stable key order, one trailing newline)."""
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
