"""Import an OVA into vCenter over pyvmomi, streaming each disk out of the archive.

    with Session(settings) as si:
        vm = import_ova(si, Path("ubuntu-2204-kube-v1.37.1.ova"), "ubuntu-2204-kube-v1.37.1",
                        datacenter="DC0", cluster="DC0_C0", datastore="LocalDS_0",
                        network="VM Network")

The OVA is never extracted: the descriptor and manifest are read from their
tar members, and each disk is sent from its member's offset in the file, a
chunk at a time, hashed on the way and checked against the manifest before
the lease completes.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from pyVmomi import vim, vmodl

from imagebuilder.errors import BuildError, ImageBuilderError, InputError
from imagebuilder.ova.hashing import new_hash
from imagebuilder.ova.limits import open_regular, size_text
from imagebuilder.ova.manifest import Manifest
from imagebuilder.ova.ovf_parse import ParsedOvf
from imagebuilder.ova.progress import ByteProgress, NoByteProgress
from imagebuilder.ova.tar import Member
from imagebuilder.ova.verify import check_before_import, digest_problems, member_digest
from imagebuilder.vsphere.driver import Driver, fault_message

CHUNK = 1 << 20
STREAM_VMDK = "application/x-vnd.vmware-streamVmdk"
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class OvaPackage:
    """An OVA checked as ``ova-verify`` checks it (all but the disks' digests, which
    the upload takes as it streams them), read without extracting it."""

    path: Path
    members: dict[str, Member]
    descriptor: str
    ovf: ParsedOvf
    manifest: Manifest
    #: Digests already checked (the descriptor and every member that is no disk).
    checked: dict[str, str]

    @classmethod
    def open(cls, path: Path) -> OvaPackage:
        """Check the OVA (``check_before_import``): BuildError listing what is wrong
        with it, InputError when ``path`` is no regular file."""
        path = Path(path)
        verified = check_before_import(path)
        try:
            text = verified.ovf_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise BuildError(f"{path}: the descriptor {verified.ovf_name} is not UTF-8") from None
        return cls(path, {m.name: m for m in verified.members}, text, verified.ovf,
                   verified.manifest, dict(verified.digests))

    def check_the_rest(self, uploaded: dict[str, str]) -> None:
        """After the uploads: each member the manifest lists has the digest it says,
        taken on the way (``uploaded``) or, for one vCenter did not ask for, now."""
        found = dict(self.checked, **uploaded)
        rest = [self.members[name] for name in self.manifest.entries if name not in found]
        if rest:
            with open_regular(self.path, "an OVA file") as fh:
                for member in rest:
                    found[member.name] = member_digest(fh, member,
                                                       self.manifest.entries[member.name][0])
        problems = digest_problems(self.manifest, found)
        if problems:
            raise BuildError(f"{self.path}: {problems[0]}", problems[1:])


def _resolve(driver: Driver, datacenter: vim.Datacenter | str,
             resource_pool: vim.ResourcePool | str | None,
             cluster: vim.ClusterComputeResource | str, host: vim.HostSystem | str,
             datastore: vim.Datastore | str, folder: vim.Folder | str,
             ) -> tuple[vim.Datacenter, vim.ResourcePool, vim.HostSystem | None, vim.Datastore,
                        vim.Folder]:
    """The placement objects from objects or names (see import_ova)."""
    dc = datacenter if isinstance(datacenter, vim.Datacenter) else driver.datacenter(datacenter)
    host_obj = host if isinstance(host, vim.HostSystem) or not host else driver.host(dc, host)
    if resource_pool is None or isinstance(resource_pool, str):
        pool_name = resource_pool or ""
        if cluster:
            compute = cluster if isinstance(cluster, vim.ComputeResource) \
                else driver.cluster(dc, cluster)
        elif host_obj:
            compute = host_obj
        else:
            raise InputError("importing an OVA needs a resource pool, cluster or host to run "
                             "the VM on; give one")
        resource_pool = driver.resource_pool(compute, pool_name)
    ds = datastore if isinstance(datastore, vim.Datastore) else driver.datastore(dc, datastore)
    vm_folder = folder if isinstance(folder, vim.Folder) else driver.folder(dc, folder or "")
    return dc, resource_pool, host_obj or None, ds, vm_folder


def _network_mappings(driver: Driver, dc: vim.Datacenter, ovf: ParsedOvf,
                      network: vim.Network | str | None,
                      network_mapping: Mapping[str, vim.Network | str] | None,
                      ) -> list[vim.OvfManager.NetworkMapping]:
    wanted: dict[str, object] = {}
    if network:
        wanted.update({name: network for name in ovf.networks})
    wanted.update(network_mapping or {})
    unknown = sorted(set(wanted) - set(ovf.networks))
    if unknown:
        raise InputError(f"network mapping names {', '.join(unknown)}, which the descriptor "
                         f"does not have; its networks: {', '.join(ovf.networks) or 'none'}")
    out = []
    for name, target in wanted.items():
        obj = target if isinstance(target, vim.Network) else driver.network(dc, str(target))
        out.append(vim.OvfManager.NetworkMapping(name=name, network=obj))
    return out


def import_ova(si: vim.ServiceInstance, ova: Path | OvaPackage, name: str, *,
               datastore: vim.Datastore | str,
               datacenter: vim.Datacenter | str = "",
               cluster: vim.ClusterComputeResource | str = "",
               host: vim.HostSystem | str = "",
               resource_pool: vim.ResourcePool | str | None = None,
               folder: vim.Folder | str = "",
               network: vim.Network | str | None = None,
               network_mapping: Mapping[str, vim.Network | str] | None = None,
               properties: Mapping[str, str] | None = None,
               disk_provisioning: str = "thin",
               verify_tls: bool = True,
               keepalive_seconds: float = 5.0,
               lease_timeout: float = 300.0,
               progress: ByteProgress | None = None,
               log: Log = _quiet) -> vim.VirtualMachine:
    """Import the OVA at ``ova`` as a VM called ``name``; return the VM.

    The OVA is checked first (``OvaPackage.open``, or pass one already open):
    what ``ova-verify`` refuses is never imported.

    Placement: ``datastore`` (object or name) and a ``resource_pool`` object,
    or a ``cluster``/``host`` (with ``resource_pool`` as a pool name below it,
    default its root pool). ``datacenter`` may be empty when vCenter has one;
    ``folder`` is a VM folder path below it ("" = its VM folder).
    Networks: ``network`` maps every network of the descriptor; entries of
    ``network_mapping`` (descriptor network name -> network) override it.
    ``properties`` set vApp property values (OvfManager propertyMapping).
    ``verify_tls``: check the certificate of the disk upload endpoint (pinned to
    the lease's thumbprint when vCenter gives one); False for a lab vCenter.

    The lease is kept alive with HttpNfcLeaseProgress every
    ``keepalive_seconds`` while disks upload; any error (including a digest
    that does not match the OVA's manifest, and Ctrl-C) aborts the lease, which
    makes vCenter discard the VM. Where vCenter's import spec lacks the
    descriptor's firmware or annotation (the simulator ignores both), they are
    set from the descriptor.
    """
    progress = progress or NoByteProgress()
    package = ova if isinstance(ova, OvaPackage) else OvaPackage.open(ova)
    ova = package.path
    driver = Driver(si)
    dc, pool, host_obj, ds, vm_folder = _resolve(driver, datacenter, resource_pool, cluster,
                                                  host, datastore, folder)
    cisp = vim.OvfManager.CreateImportSpecParams(
        entityName=name, diskProvisioning=disk_provisioning,
        networkMapping=_network_mappings(driver, dc, package.ovf, network, network_mapping),
        propertyMapping=[vim.KeyValue(key=k, value=str(v)) for k, v in (properties or {}).items()])
    try:
        result = driver.content.ovfManager.CreateImportSpec(
            ovfDescriptor=package.descriptor, resourcePool=pool, datastore=ds, cisp=cisp)
    except vmodl.MethodFault as fault:
        raise BuildError(f"vCenter refused the descriptor of {ova}: "
                         f"{fault_message(fault)}") from None
    if result.error:
        raise BuildError(f"vCenter refused the descriptor of {ova}",
                         [_localized(e) for e in result.error])
    for warning in result.warning or []:
        log(f"vCenter: {_localized(warning)}")
    spec = result.importSpec
    _complete_spec(spec, package.ovf)
    try:
        lease = pool.ImportVApp(spec=spec, folder=vm_folder, host=host_obj)
    except vmodl.MethodFault as fault:
        raise BuildError(f"importing {name}: vCenter refused to create the VM: "
                         f"{fault_message(fault)}") from None
    try:
        info = _wait_ready(lease, lease_timeout, name)
        _upload_all(si, lease, info, result.fileItem or [], package, verify_tls,
                    keepalive_seconds, progress, log)
        lease.HttpNfcLeaseComplete()
    except BaseException as exc:  # Ctrl-C included: the lease must not linger
        _abort(lease, name, log)
        if isinstance(exc, vmodl.MethodFault):
            raise BuildError(f"importing {name} failed: {fault_message(exc)}") from None
        if isinstance(exc, Exception) and not isinstance(exc, ImageBuilderError):
            raise BuildError(f"importing {name} failed: {exc}") from exc
        raise
    return info.entity


def _localized(fault: vmodl.LocalizedMethodFault) -> str:
    return fault.localizedMessage or type(fault.fault).__name__


def _complete_spec(spec: vim.ImportSpec, ovf: ParsedOvf) -> None:
    config = getattr(spec, "configSpec", None)
    if config is None:
        return
    if ovf.firmware and not config.firmware:
        config.firmware = ovf.firmware
    if ovf.annotation and not config.annotation:
        config.annotation = ovf.annotation


def _wait_ready(lease: vim.HttpNfcLease, timeout: float, name: str) -> vim.HttpNfcLease.Info:
    deadline = time.monotonic() + timeout
    while True:
        state = lease.state
        if state == vim.HttpNfcLease.State.ready:
            return lease.info
        if state == vim.HttpNfcLease.State.error:
            raise BuildError(f"importing {name}: the upload lease failed: "
                             f"{fault_message(lease.error)}")
        if state == vim.HttpNfcLease.State.done:
            raise BuildError(f"importing {name}: the upload lease ended before any upload")
        if time.monotonic() > deadline:
            raise BuildError(f"importing {name}: the upload lease was not ready within "
                             f"{timeout:.0f}s")
        time.sleep(0.2)


def _abort(lease: vim.HttpNfcLease, name: str, log: Log) -> None:
    # Without a fault argument: the simulator drops the connection on a generic one.
    try:
        lease.HttpNfcLeaseAbort()
        log(f"importing {name}: aborted the upload lease")
    except Exception as exc:  # the lease may already be gone; the original error matters
        log(f"importing {name}: could not abort the upload lease: {exc!r}"[:300])


class _KeepAlive:
    """Reports upload progress to the lease every few seconds so it does not time out."""

    def __init__(self, lease: vim.HttpNfcLease, total: int, every: float) -> None:
        self.lease, self.total, self.every = lease, max(total, 1), every
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfc-keepalive", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.lease.HttpNfcLeaseProgress(min(99, int(self.sent * 100 / self.total)))
            except Exception:  # a failed keep-alive shows up as a failed upload
                pass

    def __enter__(self) -> _KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _upload_all(si: vim.ServiceInstance, lease: vim.HttpNfcLease, info: vim.HttpNfcLease.Info,
                items: list, package: OvaPackage, verify_tls: bool, every: float,
                progress: ByteProgress, log: Log) -> None:
    urls = {u.importKey: u for u in info.deviceUrl or []}
    plan = []
    for item in items:
        member = package.members.get(item.path)
        if member is None or item.path not in package.manifest.entries:
            raise BuildError(f"{package.path}: vCenter asks for {item.path}, which is not in "
                             "the OVA")
        url = urls.get(item.deviceId)
        if url is None:
            raise BuildError(f"vCenter's lease has no upload URL for {item.path} "
                             f"({item.deviceId})")
        plan.append((item, member, url))
    total = sum(member.size for _, member, _ in plan)
    netloc = si._stub.host  # where vCenter was reached; NFC URLs may say "*"
    progress.begin(f"uploading {package.path.name}", total)
    uploaded: dict[str, str] = {}
    try:
        with _KeepAlive(lease, total, every) as keepalive:
            for item, member, url in plan:
                log(f"uploading {member.name} ({size_text(member.size)})")
                digest = _upload(url, netloc, member, package.path, bool(item.create),
                                 verify_tls, keepalive, progress,
                                 package.manifest.entries[member.name][0])
                uploaded[member.name] = digest
                wrong = digest_problems(package.manifest, {member.name: digest})
                if wrong:
                    raise BuildError(f"{package.path}: {wrong[0]} (as uploaded)")
        package.check_the_rest(uploaded)
        lease.HttpNfcLeaseProgress(100)
    finally:
        progress.end()


def _tls_context(url: vim.HttpNfcLease.DeviceUrl, verify: bool) -> tuple[ssl.SSLContext, bytes]:
    """A TLS context, and the thumbprint the server must present (empty: use CAs)."""
    thumbprint = bytes.fromhex((url.sslThumbprint or "").replace(":", "")) if verify else b""
    if verify and not thumbprint:
        return ssl.create_default_context(), b""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context, thumbprint


def _upload(url: vim.HttpNfcLease.DeviceUrl, netloc: str, member: Member, ova: Path,
            create: bool, verify_tls: bool, keepalive: _KeepAlive, progress: ByteProgress,
            algorithm: str) -> str:
    parts = urllib.parse.urlsplit(url.url)
    host = netloc if parts.hostname in (None, "*") else parts.netloc
    context, thumbprint = _tls_context(url, verify_tls)
    conn = http.client.HTTPSConnection(host, context=context, timeout=600)
    hasher = new_hash(algorithm)
    try:
        conn.connect()
        if thumbprint:
            cert = conn.sock.getpeercert(binary_form=True) or b""
            kind = "sha1" if len(thumbprint) == 20 else "sha256"
            if hashlib.new(kind, cert).digest() != thumbprint:
                raise BuildError(f"the disk upload endpoint {host} presented a certificate "
                                 "whose thumbprint is not the one vCenter gave for it")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest("PUT" if create else "POST", path)
        conn.putheader("Content-Type", "application/octet-stream" if create else STREAM_VMDK)
        conn.putheader("Content-Length", str(member.size))
        conn.putheader("Connection", "close")
        conn.endheaders()
        with open_regular(ova, "an OVA file") as fh:
            fh.seek(member.offset)
            remaining = member.size
            buf = memoryview(bytearray(CHUNK))
            while remaining:
                count = fh.readinto(buf[:min(CHUNK, remaining)])
                if not count:
                    raise BuildError(f"{ova}: ended inside {member.name}")
                chunk = buf[:count]
                conn.send(chunk)
                hasher.update(chunk)
                remaining -= count
                keepalive.sent += count
                progress.advance(count)
        response = conn.getresponse()
        body = response.read(2048).decode("utf-8", "replace").strip()
        if response.status not in (200, 201, 204):
            raise BuildError(f"uploading {member.name} failed: HTTP {response.status} "
                             f"{response.reason}" + (f": {body}" if body else ""))
    except OSError as exc:
        raise BuildError(f"uploading {member.name} to {host} failed: {exc}") from None
    finally:
        conn.close()
    return hasher.hexdigest()
