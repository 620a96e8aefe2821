"""The vSphere Automation REST API's Content Library, as far as publishing needs it.

pyVmomi speaks SOAP only; the Content Library lives in the Automation API.
This client uses ``/rest`` (vCenter 6.5 and later, and govmomi's simulator)
over Python's own HTTP client: a session login with the vsphere.json user,
TLS verified as every vSphere connection here is (``insecure_connection``,
``VSPHERE_CA_FILE``), every read bounded in size and time.

    with RestSession(settings) as rest:
        library = find_library(rest, "node-images")
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Mapping
from urllib.parse import urlencode, urlsplit

from imagebuilder.errors import BuildError, InputError
from imagebuilder.vsphere.session import (
    CONNECT_TIMEOUT,
    REQUEST_TIMEOUT,
    VSphereSettings,
    _ssl_context,
)

API = "/rest"
SESSION_HEADER = "vmware-api-session-id"
#: No answer of the API we call is larger; a bigger one is not the API's.
MAX_ANSWER = 16 << 20
UPLOAD_CHUNK = 1 << 20


class LibraryError(BuildError):
    """The Automation API refused a request, or could not be reached."""

    def __init__(self, message: str, kind: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def _error_text(status: int, raw: bytes) -> tuple[str, str]:
    """(vAPI error type, its messages) of an error answer."""
    try:
        data = json.loads(raw)
    except ValueError:
        return "", raw[:300].decode("utf-8", errors="replace").strip() or f"HTTP {status}"
    if not isinstance(data, dict):
        return "", f"HTTP {status}"
    value = data.get("value") if isinstance(data.get("value"), dict) else data
    kind = str(data.get("type") or value.get("error_type") or "").rsplit(".", 1)[-1]
    messages = value.get("messages") or []
    text = "; ".join(str(m.get("default_message", m)) if isinstance(m, dict) else str(m)
                     for m in messages)
    return kind, text or kind or f"HTTP {status}"


def _check_answer(what: str, status: int, raw: bytes) -> None:
    """LibraryError for an answer too large or an HTTP error."""
    if len(raw) > MAX_ANSWER:
        raise LibraryError(f"{what}: an answer over {MAX_ANSWER >> 20} MiB; that is not the "
                           "Automation API")
    if status >= 300:
        kind, text = _error_text(status, raw)
        raise LibraryError(f"{what}: {text}", kind, status)


class RestSession:
    """A logged-in Automation API session (``with RestSession(settings) as rest``)."""

    def __init__(self, settings: VSphereSettings, where: str = "",
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.settings = settings
        self.where = where or settings.where
        self.timeout = timeout
        self.token = ""
        self._context = _ssl_context(settings)

    def _connection(self, host: str, port: int) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(host, port, context=self._context,
                                           timeout=CONNECT_TIMEOUT)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            raise InputError(f"cannot verify the certificate of {host} ({exc.verify_message}); "
                             "set VSPHERE_CA_FILE to its CA bundle, or insecure_connection to "
                             "true for a lab vCenter") from None
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"{self.where}: vcenter_server: cannot connect to {host}:{port} "
                             f"for the Automation API ({exc}); check vcenter_server and the "
                             "network") from None
        conn.sock.settimeout(self.timeout)
        return conn

    def request(self, method: str, path: str, body: Any = None, action: str = "",
                query: Mapping[str, str] | None = None, auth: bool = True) -> Any:
        """One API call; returns the answer's ``value`` (None when there is none).

        Raises LibraryError naming the call and the server's message.
        """
        params = dict(query or {})
        if action:
            params["~action"] = action
        url = API + path + (("?" + urlencode(params)) if params else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers[SESSION_HEADER] = self.token
        else:
            user = f"{self.settings.username}:{self.settings.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(user).decode()
        host, port = self.settings.host_port
        conn = self._connection(host, port)
        try:
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise LibraryError(f"{method} {path}: no answer from {host}:{port} "
                               f"({exc or type(exc).__name__})") from None
        finally:
            conn.close()
        _check_answer(f"{method} {path}", response.status, raw)
        if not raw.strip():
            return None
        try:
            return json.loads(raw).get("value")
        except (ValueError, AttributeError):
            raise LibraryError(f"{method} {path}: the answer is not the Automation API's "
                               "JSON") from None

    def __enter__(self) -> RestSession:
        try:
            token = self.request("POST", "/com/vmware/cis/session", auth=False)
        except LibraryError as exc:
            if exc.status == 401:
                raise InputError(f"login to the Automation API failed for user "
                                 f"{self.settings.username} at {self.settings.server}: check "
                                 "username and password (or VSPHERE_PASSWORD)") from None
            if exc.status == 404:
                raise InputError(f"{self.where}: vcenter_server: {self.settings.server} has no "
                                 "vSphere Automation API (/rest); the Content Library needs a "
                                 "vCenter (not an ESXi host)") from None
            raise
        if not isinstance(token, str) or not token:
            raise LibraryError("the Automation API's login gave no session id")
        self.token = token
        return self

    def __exit__(self, *exc: object) -> None:
        if self.token:
            try:
                self.request("DELETE", "/com/vmware/cis/session")
            except (LibraryError, InputError):
                pass  # the session expires on its own
            self.token = ""

    def upload(self, uri: str, source: BinaryIO, offset: int, size: int,
               on_chunk: Callable[[bytes], None]) -> None:
        """PUT ``size`` bytes of ``source`` from ``offset`` to an upload endpoint,
        streaming; ``on_chunk`` sees every chunk before it is sent (hashing,
        progress, cancelling by raising)."""
        parts = urlsplit(uri)
        host, port = parts.hostname or "", parts.port or 443
        if parts.scheme != "https" or not host:
            raise LibraryError(f"upload endpoint {uri!r} is not an https URL; refusing to send "
                               "the image there")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if host.lower() == self.settings.host_port[0].lower():
            headers[SESSION_HEADER] = self.token  # never to another host
        conn = self._connection(host, port)
        try:
            conn.putrequest("PUT", parts.path + (f"?{parts.query}" if parts.query else ""),
                            skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders()
            source.seek(offset)
            left = size
            while left:
                chunk = source.read(min(UPLOAD_CHUNK, left))
                if not chunk:
                    raise LibraryError(f"the OVA ended {left} bytes early while uploading")
                on_chunk(chunk)
                conn.send(chunk)
                left -= len(chunk)
            response = conn.getresponse()
            raw = response.read(MAX_ANSWER + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise LibraryError(f"upload to {parts.path}: the transfer broke off "
                               f"({exc or type(exc).__name__})") from None
        finally:
            conn.close()
        _check_answer(f"upload to {parts.path}", response.status, raw)


@dataclass(frozen=True)
class Library:
    """A content library: id, name, type (LOCAL, SUBSCRIBED) and its datastores."""

    id: str
    name: str
    type: str
    datastores: tuple[str, ...]


@dataclass(frozen=True)
class Item:
    """A library item."""

    id: str
    name: str
    library_id: str
    type: str
    description: str


def _library(data: dict) -> Library:
    stores = tuple(str(b.get("datastore_id", "")) for b in data.get("storage_backings") or []
                   if isinstance(b, dict))
    return Library(str(data.get("id", "")), str(data.get("name", "")),
                   str(data.get("type", "")), stores)


def libraries(rest: RestSession) -> list[Library]:
    """Every library the user may see."""
    return [_library(rest.request("GET", f"/com/vmware/content/library/id:{i}"))
            for i in rest.request("GET", "/com/vmware/content/library") or []]


def find_library(rest: RestSession, name: str) -> Library | None:
    """The library named ``name`` (case as vCenter compares: insensitive)."""
    ids = rest.request("POST", "/com/vmware/content/library", {"spec": {"name": name}},
                       action="find") or []
    found = [_library(rest.request("GET", f"/com/vmware/content/library/id:{i}")) for i in ids]
    return next((lib for lib in found if lib.name.lower() == name.lower()), None)


def create_library(rest: RestSession, name: str, datastore_id: str, description: str) -> Library:
    """A local library on the datastore of this moref id."""
    spec = {"name": name, "description": description, "type": "LOCAL",
            "storage_backings": [{"type": "DATASTORE", "datastore_id": datastore_id}],
            "publish_info": {"published": False, "authentication_method": "NONE"}}
    library_id = rest.request("POST", "/com/vmware/content/local-library", {"create_spec": spec})
    return _library(rest.request("GET", f"/com/vmware/content/library/id:{library_id}"))


def _item(data: dict) -> Item:
    return Item(str(data.get("id", "")), str(data.get("name", "")),
                str(data.get("library_id", "")), str(data.get("type", "")),
                str(data.get("description", "")))


def items(rest: RestSession, library: Library) -> list[Item]:
    """The items of ``library``."""
    ids = rest.request("GET", "/com/vmware/content/library/item",
                       query={"library_id": library.id}) or []
    return [_item(rest.request("GET", f"/com/vmware/content/library/item/id:{i}")) for i in ids]


def find_item(rest: RestSession, library: Library, name: str) -> Item | None:
    """The item named ``name`` in ``library``."""
    ids = rest.request("POST", "/com/vmware/content/library/item",
                       {"spec": {"library_id": library.id, "name": name}}, action="find") or []
    found = [_item(rest.request("GET", f"/com/vmware/content/library/item/id:{i}")) for i in ids]
    return next((i for i in found if i.name == name and i.library_id == library.id), None)


def create_item(rest: RestSession, library: Library, name: str, description: str) -> Item:
    """A new, empty OVF item."""
    item_id = rest.request("POST", "/com/vmware/content/library/item", {"create_spec": {
        "library_id": library.id, "name": name, "description": description, "type": "ovf"}})
    return Item(str(item_id), name, library.id, "ovf", description)


def describe_item(rest: RestSession, item: Item, description: str) -> None:
    """Replace an item's description."""
    rest.request("PATCH", f"/com/vmware/content/library/item/id:{item.id}",
                 {"update_spec": {"description": description}})


def delete_item(rest: RestSession, item: Item) -> None:
    """Delete an item and its files."""
    rest.request("DELETE", f"/com/vmware/content/library/item/id:{item.id}")


def item_files(rest: RestSession, item: Item) -> list[dict]:
    """The files of an item: name, size, checksum_info..."""
    return rest.request("GET", "/com/vmware/content/library/item/file",
                        query={"library_item_id": item.id}) or []


def wait_for(what: str, poll: Callable[[], bool], timeout: float,
             interval: float = 0.5) -> None:
    """Call ``poll`` until it returns True; LibraryError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not poll():
        if time.monotonic() > deadline:
            raise LibraryError(f"{what}: not done within {timeout:g} seconds")
        time.sleep(interval)

