"""Connecting to vCenter: one logged-in session from a build's VSphereSettings (settings.py)."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from imagebuilder.errors import InputError
from imagebuilder.vsphere.settings import VSphereSettings

#: Seconds to wait for vCenter to accept a connection; a host that drops
#: packets would otherwise hold the run for the system's two-minute timeout.
CONNECT_TIMEOUT = float(os.environ.get("IB_VCENTER_CONNECT_TIMEOUT", "15"))
#: Seconds one API request may go without an answer (a server that accepts
#: connections but never replies); every call we make is short, tasks are polled.
REQUEST_TIMEOUT = 300
#: Seconds between the keep-alive requests of an open Session (as Packer's vSphere driver).
KEEPALIVE = 600.0


def _ssl_context(settings: VSphereSettings) -> ssl.SSLContext:
    if settings.insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"VSPHERE_CA_FILE={settings.ca_file}: cannot load it as a CA "
                         f"bundle ({exc}); give a PEM file of the CA that signed vCenter") from None


class Session:
    """One logged-in vCenter session: ``with Session(s) as si``, or ``open()``/``close()``.

    While open, a keep-alive thread asks vCenter for its time every
    ``keepalive`` seconds (Packer's vSphere driver does the same, every ten
    minutes), so that a session held for a whole build is not dropped as idle
    (vCenter's default idle timeout is 30 minutes) while Packer runs.
    """

    def __init__(self, settings: VSphereSettings, where: str = "",
                 keepalive: float = KEEPALIVE) -> None:
        self.settings = settings
        self.where = where or settings.where
        self.keepalive = keepalive
        self.si: vim.ServiceInstance | None = None
        #: How many keep-alive requests were answered.
        self.pings = 0
        self._closed = threading.Event()
        self._pinger: threading.Thread | None = None

    def open(self) -> vim.ServiceInstance:
        """Log in (InputError naming the problem when that fails) and start the keep-alive."""
        self.si = connect(self.settings, self.where)
        self._closed.clear()
        if self.keepalive > 0:
            self._pinger = threading.Thread(target=self._keep_alive, args=(self.si,),
                                            daemon=True, name="vcenter-keepalive")
            self._pinger.start()
        return self.si

    def _keep_alive(self, si: vim.ServiceInstance) -> None:
        while not self._closed.wait(self.keepalive):
            try:
                si.CurrentTime()
                self.pings += 1
            except Exception:  # the next real request reports a lost session
                pass

    def close(self) -> None:
        """Stop the keep-alive and log out; safe to call more than once."""
        self._closed.set()
        if self._pinger is not None:
            self._pinger.join()
            self._pinger = None
        if self.si is not None:
            try:
                Disconnect(self.si)
            finally:
                self.si = None

    def __enter__(self) -> vim.ServiceInstance:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _probe(host: str, port: int, where: str) -> None:
    """Fail fast, with the reason, when nothing accepts connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except socket.gaierror as exc:
        raise InputError(f"{where}: vcenter_server: cannot resolve {host!r} ({exc.strerror}); "
                         "check the name") from None
    except TimeoutError:
        raise InputError(f"{where}: vcenter_server: no answer from {host}:{port} within "
                         f"{CONNECT_TIMEOUT:g}s (unreachable or filtered); check vcenter_server "
                         "(host or host:port) and the network") from None
    except OSError as exc:
        raise InputError(f"{where}: vcenter_server: cannot connect to {host}:{port} "
                         f"({exc.strerror or exc}); check vcenter_server (host or host:port) "
                         "and that vCenter is up") from None


def connect(settings: VSphereSettings, where: str = "") -> vim.ServiceInstance:
    """Log in; failures say which user, which host and what to do (InputError, exit 2).

    ``where`` names the file that set vcenter_server, for the messages (default:
    the settings' own).
    """
    where = where or settings.where
    host, port = settings.host_port
    who = f"user {settings.username} at host {settings.server}"
    if not settings.server or not settings.username:
        raise InputError(f"{where}: vcenter_server and username must be set to log in")
    context = _ssl_context(settings)
    _probe(host, port, where)
    try:
        return SmartConnect(host=host, port=port, user=settings.username,
                            pwd=settings.password, sslContext=context,
                            connectionPoolTimeout=-1, httpConnectionTimeout=REQUEST_TIMEOUT)
    except vim.fault.InvalidLogin:
        raise InputError(f"login failed for {who}: check username and password "
                         "(or VSPHERE_PASSWORD)") from None
    except ssl.SSLCertVerificationError as exc:
        raise InputError(f"cannot verify the certificate of {settings.server} "
                         f"({exc.verify_message}); set VSPHERE_CA_FILE to its CA bundle, "
                         "or insecure_connection to true for a lab vCenter") from None
    except ssl.SSLError as exc:
        raise InputError(f"{where}: vcenter_server: {host}:{port} does not speak TLS as vCenter "
                         f"does ({exc.reason or exc}); check the host and port") from None
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"cannot reach vCenter for {who}: {exc or type(exc).__name__}; check "
                         "vcenter_server (host or host:port) and the network") from None
    except vmodl.MethodFault as exc:
        raise InputError(f"vCenter refused the login of {who}: {exc.msg}") from None
    except Exception as exc:  # pyVmomi raises a bare Exception for a non-vSphere server
        if "not a VIM server" not in str(exc):
            raise
        raise InputError(f"{where}: vcenter_server: {host}:{port} answers, but not as a vCenter "
                         "or ESXi (no vSphere API at /sdk); check the host and port") from None
