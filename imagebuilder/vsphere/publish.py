"""Publishing an OVA to a Content Library, and checking the library beforehand.

``publish_ova`` imports an OVA as an OVF library item the way vCenter's own
import does: an update session on the item, each member of the archive
(descriptor, manifest, certificate, disks, SBOM) added with its size and the
checksum the manifest records, uploaded straight from the OVA (nothing is
unpacked), validated and completed. The OVA is checked first as
``ova-verify`` checks it; its disks' digests are taken as they upload, and
one that is not the manifest's fails the session. Any error, Ctrl-C, SIGTERM or SIGHUP
fails the session, so vCenter discards what was uploaded; an item this call
created is deleted again. An item of the same name is replaced only with
``force`` (vCenter swaps the content when the session completes; until then
the old one stays). The item's description carries the image's properties.

The deploy side (``deploy_from_library``) and the build step live in
``library_deploy``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imagebuilder.errors import BuildError, ImageBuilderError, InputError
from imagebuilder.ova.hashing import ALGORITHMS, LABELS
from imagebuilder.ova.limits import open_regular, read_limited
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.verify import check_before_import, sidecar_path
from imagebuilder.vsphere.driver import datacenter_session
from imagebuilder.vsphere.library import (
    Item,
    Library,
    LibraryError,
    RestSession,
    create_item,
    create_library,
    delete_item,
    describe_item,
    find_item,
    find_library,
    libraries,
    wait_for,
)
from imagebuilder.vsphere.session import VSphereSettings

#: Seconds vCenter may take to check and store the files once the session completes.
COMPLETE_TIMEOUT = 1800
Report = Callable[[str], None]


class PublishInterrupted(KeyboardInterrupt):
    """The build was cancelled while publishing (the session was failed)."""


@dataclass(frozen=True)
class OvaFile:
    """A member to upload: where it is in the OVA and its checksum."""

    name: str
    offset: int
    size: int
    algorithm: str
    checksum: str
    #: Whether its checksum was checked already (else it is, as it uploads).
    checked: bool = False


@dataclass(frozen=True)
class PublishedItem:
    """Where the OVA went."""

    library: Library
    item: Item
    files: list[OvaFile]
    replaced: bool


def ova_files(ova: Path) -> tuple[list[OvaFile], dict[str, str]]:
    """The members to upload with their checksums, and the image's properties.

    The OVA must pass ``check_before_import`` (every check of ``ova-verify`` but
    the disks' digests, which ``publish_ova`` takes as it uploads them): a
    manifest listing every member, a matching signature, sound VMDK headers...
    Raises BuildError otherwise (InputError when ``ova`` is no regular file).
    """
    verified = check_before_import(ova)
    own = {verified.manifest_name: verified.manifest_bytes}
    if verified.certificate_bytes:
        own[verified.ovf_name[:-len(".ovf")] + ".cert"] = verified.certificate_bytes
    files = []
    for m in verified.members:
        if m.name in own:
            files.append(OvaFile(m.name, m.offset, m.size, "SHA256",
                                 hashlib.sha256(own[m.name]).hexdigest(), checked=True))
        else:
            algorithm, digest = verified.manifest.entries[m.name]
            files.append(OvaFile(m.name, m.offset, m.size, ALGORITHMS[algorithm], digest,
                                 checked=m.name in verified.digests))
    return files, verified.ovf.properties


def item_description(ova: Path, properties: dict[str, str]) -> str:
    """The item's description: the build's properties, and the OVA's sha256 when known."""
    lines = [f"Kubernetes node image {ova.name[:-4] if ova.name.endswith('.ova') else ova.name}"]
    lines += [f"{key}={value}" for key, value in properties.items()]
    try:
        words = read_limited(sidecar_path(ova), 4096, "a checksum file").decode(
            "ascii", errors="replace").split()
    except InputError:
        words = []  # none, or not one: the description goes without
    if words and re.fullmatch(r"[0-9a-f]{64}", words[0]):
        lines.append(f"OVA_SHA256={words[0]}")
    return "\n".join(lines)


class UpdateSession:
    """An update session on an item: files added and uploaded, then completed.

    Leaving the block with an exception (or a KeyboardInterrupt) fails the
    session; the session is deleted either way.
    """

    def __init__(self, rest: RestSession, item: Item) -> None:
        self.rest = rest
        self.item = item
        self.id = ""
        self.done = False

    def __enter__(self) -> UpdateSession:
        self.id = str(self.rest.request("POST", "/com/vmware/content/library/item/update-session",
                                        {"create_spec": {"library_item_id": self.item.id}}))
        return self

    def add(self, file: OvaFile) -> str:
        """Announce a file; returns its upload URI."""
        spec = {"name": file.name, "source_type": "PUSH", "size": file.size,
                "checksum_info": {"algorithm": file.algorithm, "checksum": file.checksum}}
        answer = self.rest.request(
            "POST", f"/com/vmware/content/library/item/updatesession/file/id:{self.id}",
            {"file_spec": spec}, action="add") or {}
        uri = (answer.get("upload_endpoint") or {}).get("uri", "")
        if not uri:
            raise LibraryError(f"{file.name}: vCenter gave no upload endpoint")
        return uri

    def complete(self, timeout: float = COMPLETE_TIMEOUT) -> None:
        """Validate, complete and wait until vCenter has the files (bounded)."""
        path = f"/com/vmware/content/library/item/updatesession/file/id:{self.id}"
        check = self.rest.request("POST", path, action="validate") or {}
        if check.get("has_errors"):
            missing = ", ".join(check.get("missing_files") or [])
            invalid = "; ".join(
                f"{f.get('name')}: {(f.get('error_message') or {}).get('default_message', '')}"
                for f in check.get("invalid_files") or [])
            raise LibraryError(f"vCenter refused the upload: missing {missing or 'nothing'}; "
                               f"invalid {invalid or 'nothing'}")
        session = f"/com/vmware/content/library/item/update-session/id:{self.id}"
        self.rest.request("POST", session, action="complete")

        def finished() -> bool:
            state = (self.rest.request("GET", session) or {}).get("state", "")
            if state == "ERROR":
                raise LibraryError("vCenter failed the update session after it completed")
            return state == "DONE"
        wait_for("the library item's update session", finished, timeout)
        self.done = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        session = f"/com/vmware/content/library/item/update-session/id:{self.id}"
        if exc_type is not None and not self.done and self.id:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)[:500]
            try:
                self.rest.request("POST", session, {"client_error_message": reason},
                                  action="fail")
            except ImageBuilderError:
                pass  # vCenter fails a session it stops hearing from by itself
        if self.id:
            try:
                self.rest.request("DELETE", session)
            except ImageBuilderError:
                pass


def _resolve_library(rest: RestSession, settings: VSphereSettings, name: str, create: bool,
                     datastore: str, report: Report) -> tuple[Library, bool]:
    """The library, and whether this call made it."""
    library = find_library(rest, name)
    if library is not None:
        if library.type == "SUBSCRIBED":
            raise InputError(f"library {name!r} is a subscribed library; publish to the "
                             "library it subscribes to")
        return library, False
    if not create:
        names = ", ".join(sorted(lib.name for lib in libraries(rest))) or "none"
        raise InputError(f"library {name!r} not found at {settings.server}; the libraries "
                         f"there: {names} (pass --create to make it on the build's datastore)")
    store_name = datastore or settings.datastore
    with datacenter_session(settings) as (driver, dc):
        store_id = driver.datastore(dc, store_name)._moId
    report(f"creating the local library {name!r} on datastore {store_name}")
    return create_library(rest, name, store_id, "Kubernetes node images (imagebuilder)"), True


def publish_ova(settings: VSphereSettings, ova: Path, library_name: str,
                item_name: str | None = None, *, create: bool = False, force: bool = False,
                datastore: str = "", progress: ByteProgress | None = None,
                report: Report = lambda _: None, cancel: threading.Event | None = None,
                timeout: float = COMPLETE_TIMEOUT) -> PublishedItem:
    """Import ``ova`` into the library ``library_name`` as the OVF item ``item_name``
    (default: the OVA's name without ``.ova``); see the module's docstring."""
    ova = Path(ova)
    name = item_name or (ova.name[:-4] if ova.name.endswith(".ova") else ova.name)
    files, properties = ova_files(ova)
    description = item_description(ova, properties)
    progress = progress or NoByteProgress()
    with RestSession(settings) as rest:
        library, made = _resolve_library(rest, settings, library_name, create, datastore,
                                         report)
        item = find_item(rest, library, name)
        replaced = item is not None
        if item is not None and not force:
            raise InputError(f"library {library.name!r} already has an item named {name!r}; "
                             "pass --force to replace it")
        created = item is None
        if item is None:
            item = create_item(rest, library, name, description)
        try:
            _upload(rest, item, ova, files, progress, report, cancel, timeout)
            if replaced:
                describe_item(rest, item, description)
        except BaseException:
            _undo(rest, library if made else None, item if created else None, report)
            raise
    report(f"published {ova.name} to library {library.name!r} as item {name!r}"
           + (" (replaced)" if replaced else ""))
    return PublishedItem(library, item, files, replaced)


def _undo(rest: RestSession, library: Library | None, item: Item | None,
          report: Report) -> None:
    """Remove the item and the library a failed publish made (only those)."""
    try:
        if item is not None:
            report(f"removing the item {item.name!r} this publish created")
            delete_item(rest, item)
        if library is not None:
            report(f"removing the library {library.name!r} this publish created")
            rest.request("DELETE", f"/com/vmware/content/local-library/id:{library.id}")
    except ImageBuilderError as exc:
        report(f"could not remove what this publish created: {exc.message}")


def _upload(rest: RestSession, item: Item, ova: Path, files: list[OvaFile],
            progress: ByteProgress, report: Report, cancel: threading.Event | None,
            timeout: float) -> None:
    hasher = hashlib.sha256()

    def on_chunk(chunk: bytes) -> None:
        if cancel is not None and cancel.is_set():
            raise PublishInterrupted("cancelled")
        hasher.update(chunk)
        progress.advance(len(chunk))

    with UpdateSession(rest, item) as session, open_regular(ova, "an OVA file") as fh:
        uris = [session.add(f) for f in files]
        report(f"uploading {len(files)} files of {ova.name} to item {item.name!r}")
        progress.begin(f"uploading {ova.name}", sum(f.size for f in files))
        try:
            for file, uri in zip(files, uris):
                hasher = hashlib.new(LABELS[file.algorithm])
                rest.upload(uri, fh, file.offset, file.size, on_chunk)
                if not file.checked and hasher.hexdigest() != file.checksum:
                    raise BuildError(f"{ova}: {file.name}: its {file.algorithm} digest is "
                                     f"{hasher.hexdigest()}, the manifest says {file.checksum}; "
                                     "the file is corrupt (as uploaded)")
        finally:
            progress.end()
        session.complete(timeout)


def library_problems(settings: VSphereSettings, library_name: str, create: bool,
                     where: str = "content_library") -> list[str]:
    """Preflight: the library exists (or will be made), is local and its datastores
    are there; one line per problem with the candidates."""
    try:
        with RestSession(settings) as rest:
            library = find_library(rest, library_name)
            if library is None:
                if create:
                    return []
                names = ", ".join(sorted(lib.name for lib in libraries(rest))) or "none"
                return [f"{where}: library {library_name!r} not found; the libraries there: "
                        f"{names} (set content_library_create to true to make it)"]
    except ImageBuilderError as exc:
        return [f"{where}: {exc.message}"]
    if library.type == "SUBSCRIBED":
        return [f"{where}: library {library_name!r} is a subscribed library; publish to the "
                "library it subscribes to"]
    with datacenter_session(settings) as (driver, _dc):
        stores = {ds._moId: n for n, ds in driver.named("datastore").items()}
    missing = [d for d in library.datastores if d not in stores]
    if missing:
        return [f"{where}: library {library_name!r} is backed by datastore {', '.join(missing)}, "
                f"which vCenter does not have; the datastores there: "
                f"{', '.join(sorted(stores.values())) or 'none'}"]
    return []

