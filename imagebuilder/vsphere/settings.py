"""The shape of ``ova/vsphere.json``, defined once: every field, what it means, its rules.

The JSON schema (``config/schemas/vsphere.schema.json``) must agree with
``FIELDS`` (tests/vsphere/test_settings.py holds them together); the plan
checks ``REQUIRED``; ``ONE_OF`` names the cluster/host rule;
``VSphereSettings`` is the typed view of the fields a build's vSphere steps
use; the simulator's vsphere.json starts from ``defaults()``.

"Required" means non-empty once every var file is layered: a single file
(a user's partial vsphere.json in PACKER_VAR_FILES) may leave any field out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from imagebuilder.config.checkout import Checkout
    from imagebuilder.config.knobs import Knobs

#: vCenter's port when vcenter_server names none.
DEFAULT_PORT = 443
#: Where vSphere settings are set unless a var file of the user's sets them.
DEFAULT_FILE = "ova/vsphere.json"


@dataclass(frozen=True)
class Field:
    """One field of vsphere.json (all of them strings, as Packer var files hold them)."""

    name: str
    #: One line: what the field holds, as a user would set it.
    meaning: str
    #: Must be non-empty for every vSphere build (after layering).
    required: bool = False
    #: Never shown: redacted from logs, left out of dry runs and reprs.
    secret: bool = False
    #: "true" or "false".
    boolean: bool = False
    #: The value ova/vsphere.json ships with.
    default: str = ""


FIELDS: tuple[Field, ...] = (
    Field("vcenter_server", "vCenter's host name or address, optionally host:port",
          required=True),
    Field("username", "the vCenter user that builds log in as", required=True),
    Field("password", "that user's password (VSPHERE_PASSWORD overrides it)", required=True,
          secret=True),
    Field("datacenter", "the datacenter builds go to; may stay empty when vCenter has one"),
    Field("cluster", "the cluster the VM runs on (set exactly one of cluster and host)"),
    Field("host", "the ESXi host the VM runs on (set exactly one of cluster and host)"),
    Field("datastore", "the datastore that holds the VM's disks", required=True),
    Field("folder", "the VM folder, a path below the datacenter's; empty: the top folder"),
    Field("network", "the network of the VM's NIC", required=True),
    Field("resource_pool", "a resource pool of the cluster or host; empty: its root pool"),
    Field("template", "vsphere-clone: the VM or template to clone; empty: the OS's base "
          "template (built first when missing)"),
    Field("insecure_connection", "skip checking vCenter's certificate (lab vCenters only)",
          boolean=True, default="false"),
    Field("create_snapshot", "snapshot the VM at the end of the build (linked clones of it "
          "need one)", boolean=True, default="false"),
    Field("linked_clone", "vsphere-clone: clone as a linked clone of the template's snapshot",
          boolean=True, default="false"),
    Field("convert_to_template", "turn the VM into a template at the end of the build",
          boolean=True, default="false"),
)

#: Fields every vSphere build needs non-empty (datacenter may stay empty when
#: the vCenter has exactly one; folder and resource_pool are optional).
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
SECRETS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.secret)
BOOLEANS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.boolean)
#: Exactly one of these must be set: where the VM runs.
ONE_OF: tuple[str, str] = ("cluster", "host")


def defaults() -> dict[str, str]:
    """Every field with the value ``ova/vsphere.json`` ships with."""
    return {f.name: f.default for f in FIELDS}


@dataclass(frozen=True)
class VSphereSettings:
    """A build's vsphere.json fields, read and typed: where to log in, where builds go."""

    server: str
    username: str
    password: str = field(repr=False)
    insecure: bool = False
    #: A CA bundle to trust instead of the system's (``VSPHERE_CA_FILE``).
    ca_file: str | None = None
    datacenter: str = ""
    cluster: str = ""
    host: str = ""
    resource_pool: str = ""
    datastore: str = ""
    folder: str = ""
    network: str = ""
    template: str = ""
    #: The file (or "PACKER_FLAGS") that set vcenter_server, for messages.
    where: str = field(default=DEFAULT_FILE, compare=False)

    @classmethod
    def from_vars(cls, values: Mapping[str, str], env: Mapping[str, str] | None = None,
                  where: str = "") -> VSphereSettings:
        """From a build's merged variables; ``VSPHERE_PASSWORD`` overrides the
        file's password and ``VSPHERE_CA_FILE`` names a CA bundle to trust.
        ``where``: the file that set vcenter_server (default ova/vsphere.json)."""
        env = os.environ if env is None else env

        def get(key: str) -> str:
            return str(values.get(key, "") or "").strip()

        return cls(
            server=get("vcenter_server"), username=get("username"),
            password=env.get("VSPHERE_PASSWORD") or str(values.get("password", "") or ""),
            insecure=get("insecure_connection").lower() == "true",
            ca_file=env.get("VSPHERE_CA_FILE") or get("ca_file") or None,
            datacenter=get("datacenter"), cluster=get("cluster"), host=get("host"),
            resource_pool=get("resource_pool"), datastore=get("datastore"),
            folder=get("folder"), network=get("network"), template=get("template"),
            where=where or DEFAULT_FILE)

    @classmethod
    def from_checkout(cls, checkout: Checkout, knobs: Knobs) -> VSphereSettings:
        """From ``ova/vsphere.json`` and PACKER_VAR_FILES, layered as builds layer them."""
        from imagebuilder.config.varfiles import merge, read_var_file

        site = checkout.ova_dir / "vsphere.json"
        layers = [site, *knobs.packer_var_files]
        merged = merge([(DEFAULT_FILE if p == site else str(p), read_var_file(p))
                        for p in layers], [])
        return cls.from_vars(merged.values, where=merged.origin.get("vcenter_server", ""))

    @property
    def host_port(self) -> tuple[str, int]:
        """vcenter_server split into host and port (``[v6]:port`` included)."""
        host, sep, port = self.server.rpartition(":")
        if sep and port.isdigit() and "]" not in port:
            return host.strip("[]"), int(port)
        return self.server.strip("[]"), DEFAULT_PORT

    @property
    def login_key(self) -> tuple[str, str, str, bool, str | None]:
        """What makes two builds' logins the same one (server, user, password, TLS)."""
        return (self.server, self.username, self.password, self.insecure, self.ca_file)


#: The longest name vCenter gives a VM or template.
MAX_VM_NAME = 80


def vm_name_problem(name: str) -> str | None:
    """Why vCenter (and a local build's output, named after it) cannot take ``name``
    as a VM's name, or None: empty, over MAX_VM_NAME characters, ``.`` or ``..``, a
    slash or backslash (vCenter escapes them; in a file name they leave the directory),
    leading or trailing blanks, control characters."""
    if not name.strip():
        return "is empty; a VM needs a name"
    if len(name) > MAX_VM_NAME:
        return (f"{name[:20]!r}... is {len(name)} characters long; vCenter takes at most "
                f"{MAX_VM_NAME}")
    if name in (".", "..") or "/" in name or "\\" in name:
        return f"{name!r} cannot be a VM's name: no '/', '\\', '.' or '..'"
    if name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} cannot be a VM's name: no leading or trailing blanks, no control " \
            "characters"
    return None
