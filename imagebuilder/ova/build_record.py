"""What a build was made from, recorded before Packer starts, for its SBOM and provenance.

The build writes ``build-record.json`` into its work directory
(``output/.work/<target>/``): every var file in layering order, the template,
the Ansible roles tree and the install-file templates with their sha256, the
ISO's URL and checksum, each download the roles make (name, version, URL,
sha256), and the versions of this tool and of Packer. The OVA assembly inside
Packer (``ova assemble --from-packer``) finds it through the build's
``ib_target`` and turns it into the SBOM's downloads and the provenance's
inputs. Only digests and names are recorded: var files may hold passwords.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagebuilder import __version__
from imagebuilder.errors import InputError
from imagebuilder.files import write_private_json
from imagebuilder.ova.limits import read_limited
from imagebuilder.processes import run_child

RECORD_NAME = "build-record.json"
#: The package inventory the ``package_inventory`` role writes into the build's
#: output directory at the end of provisioning.
INVENTORY_NAME = "package-inventory.json"
MAX_RECORD = 4 << 20
#: A tree of more files than this is not the roles tree; we stop hashing there.
MAX_TREE_FILES = 20000
_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class InputFile:
    """A file or tree the build read, by name (relative to the checkout when inside it)."""

    name: str
    sha256: str
    kind: str


@dataclass(frozen=True)
class DownloadRecord:
    """A file the roles download: ``sha256`` is empty when only a checksum URL is known."""

    name: str
    version: str
    url: str
    sha256: str
    checksum: str


@dataclass
class BuildRecord:
    """The inputs of one build (see the module's docstring)."""

    target: str
    builder: str
    inputs: list[InputFile] = field(default_factory=list)
    iso_url: str = ""
    iso_checksum: str = ""
    downloads: list[DownloadRecord] = field(default_factory=list)
    ib_version: str = __version__
    packer_version: str = ""
    started: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord:
        """The record from ``to_json``'s data; ValueError when it is not one."""
        try:
            return cls(**{**data, "inputs": [InputFile(**i) for i in data.get("inputs", [])],
                          "downloads": [DownloadRecord(**d) for d in data.get("downloads", [])]})
        except TypeError as exc:
            raise ValueError(f"not a build record ({exc})") from None


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    """One sha256 for a directory tree: over each file's relative path and sha256
    (a link: its target text), sorted; bounded to MAX_TREE_FILES files."""
    lines = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            rel = path.relative_to(root).as_posix()
            value = ("link:" + os.readlink(path)) if path.is_symlink() else sha256_of(path)
            lines.append(f"{value}  {rel}\n")
            if len(lines) > MAX_TREE_FILES:
                raise ValueError(f"{root}: more than {MAX_TREE_FILES} files")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def _shown(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def download_sha256(checksum: str) -> str:
    """The digest of a ``sha256:<hex>`` (or bare hex) checksum, else ``""``."""
    match = _SHA256.match(checksum.strip())
    return match.group(1).lower() if match else ""


def packer_version(packer: str | None) -> str:
    """``packer version``'s first line, or ``""`` (bounded to 30 seconds)."""
    if not packer:
        return ""
    try:
        out = run_child([packer, "version"], timeout=30, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout.strip().splitlines() or [""])[0][:200]


def record_from_plan(plan: Any, packer: str | None = None) -> BuildRecord:
    """The record of a ``planning.plan.BuildPlan`` (its layers, template, downloads)."""
    root = plan.checkout.root
    inputs = []
    for layer in plan.layers:
        source = layer.path
        if Path(source).is_file():
            inputs.append(InputFile(_shown(source, root), sha256_of(source),
                                    f"var-file:{layer.role}"))
    template = plan.checkout.node_template
    inputs.append(InputFile(_shown(template, root), sha256_of(template), "template"))
    for tree, kind in ((plan.checkout.packer_dir / "ansible", "roles"),
                       (plan.checkout.packer_dir / "install", "install-templates")):
        if tree.is_dir():
            inputs.append(InputFile(_shown(tree, root), tree_digest(tree), kind))
    values = plan.merged.resolved()  # iso_url may name other variables
    checksum = values.get("iso_checksum") or ""
    kind = values.get("iso_checksum_type") or ""
    if checksum and kind and ":" not in checksum and kind != "none":
        checksum = f"{kind}:{checksum}"
    downloads = [DownloadRecord(d.name, d.version, d.url, download_sha256(d.checksum),
                                d.checksum) for d in plan.downloads]
    return BuildRecord(
        target=plan.target.name, builder=plan.builder, inputs=inputs,
        iso_url=values.get("iso_url") or "", iso_checksum=checksum, downloads=downloads,
        packer_version=packer_version(packer),
        started=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def write_record(record: BuildRecord, path: Path) -> Path:
    """Write the record (0600, like the build's other work files)."""
    write_private_json(Path(path), record.to_json())
    return Path(path)


def read_record(path: Path) -> BuildRecord | None:
    """The record at ``path``, or None when there is none or it is unreadable."""
    try:
        return BuildRecord.from_json(json.loads(read_limited(path, MAX_RECORD, "a record")))
    except (InputError, ValueError):
        return None
