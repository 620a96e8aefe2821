"""Connecting to vCenter: settings from the build's variables, one logged-in session."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Mapping

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from ..errors import InputError

DEFAULT_PORT = 443


@dataclass(frozen=True)
class VSphereSettings:
    """Where and how to log in, and where builds go (names as in vsphere.json)."""

    server: str
    username: str
    password: str
    insecure: bool = False
    ca_file: str | None = None
    datacenter: str = ""
    cluster: str = ""
    host: str = ""
    resource_pool: str = ""
    datastore: str = ""
    folder: str = ""
    network: str = ""
    template: str = ""

    @classmethod
    def from_vars(cls, values: Mapping[str, str],
                  env: Mapping[str, str] | None = None) -> "VSphereSettings":
        """From a build's merged variables; ``VSPHERE_PASSWORD`` overrides the
        file's password and ``VSPHERE_CA_FILE`` names a CA bundle to trust."""
        env = os.environ if env is None else env
        get = lambda key: str(values.get(key, "") or "").strip()  # noqa: E731
        return cls(
            server=get("vcenter_server"), username=get("username"),
            password=env.get("VSPHERE_PASSWORD") or str(values.get("password", "") or ""),
            insecure=get("insecure_connection").lower() == "true",
            ca_file=env.get("VSPHERE_CA_FILE") or get("ca_file") or None,
            datacenter=get("datacenter"), cluster=get("cluster"), host=get("host"),
            resource_pool=get("resource_pool"), datastore=get("datastore"),
            folder=get("folder"), network=get("network"), template=get("template"))

    @classmethod
    def from_checkout(cls, checkout, knobs) -> "VSphereSettings":
        """From ``ova/vsphere.json`` and PACKER_VAR_FILES, layered as builds layer them."""
        from ..layering import merge, read_var_file

        layers = [checkout.ova_dir / "vsphere.json", *knobs.packer_var_files]
        merged = merge([(str(p), read_var_file(p)) for p in layers], [])
        return cls.from_vars(merged.values)

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.server.rpartition(":")
        if sep and port.isdigit() and "]" not in port:
            return host.strip("[]"), int(port)
        return self.server.strip("[]"), DEFAULT_PORT


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
    """One logged-in vCenter session, logged out on exit (``with Session(s) as si``)."""

    def __init__(self, settings: VSphereSettings) -> None:
        self.settings = settings
        self.si: vim.ServiceInstance | None = None

    def __enter__(self) -> vim.ServiceInstance:
        self.si = connect(self.settings)
        return self.si

    def __exit__(self, *exc: object) -> None:
        if self.si is not None:
            try:
                Disconnect(self.si)
            finally:
                self.si = None


def connect(settings: VSphereSettings) -> vim.ServiceInstance:
    """Log in; failures say which user, which host and what to do."""
    host, port = settings.host_port
    where = f"user {settings.username} at host {settings.server}"
    if not settings.server or not settings.username:
        raise InputError("vsphere.json: vcenter_server and username must be set to log in")
    try:
        return SmartConnect(host=host, port=port, user=settings.username,
                            pwd=settings.password, sslContext=_ssl_context(settings),
                            connectionPoolTimeout=-1)
    except vim.fault.InvalidLogin:
        raise InputError(f"login failed for {where}: check username and password "
                         "(or VSPHERE_PASSWORD)") from None
    except ssl.SSLCertVerificationError as exc:
        raise InputError(f"cannot verify the certificate of {settings.server} ({exc.verify_message}); "
                         "set VSPHERE_CA_FILE to its CA bundle, or insecure_connection "
                         "to true for a lab vCenter") from None
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot reach vCenter for {where}: {exc}; check vcenter_server "
                         "(host or host:port) and the network") from None
