"""autounattend.xml and the scripts it runs, rendered for one Windows build.

Upstream rewrites ``packer/ova/windows/<os>/autounattend.xml`` in the source
tree before each build (``hack/windows-unattend.py``), which races when
builds run side by side. Here the answer file is rendered from
``packer/windows/autounattend.xml.j2`` into the build's own work directory
(``floppy/``, 0600), beside copies of the scripts it runs; Packer puts that
directory on the build VM's floppy (``A:``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2

from imagebuilder.errors import BuildError, InputError
from imagebuilder.files import private_dir, write_file

#: Upstream's placeholder password (hack/windows-unattend.py refuses it too).
PLACEHOLDER_PASSWORD = "S3cr3t0!"

#: distro_version -> (the install image's /IMAGE/NAME, Microsoft's published KMS
#: client setup key of that edition): upstream's answer files' values.
EDITIONS = {
    "2019": ("Windows Server 2019 SERVERSTANDARDCORE", "N69G4-B89J2-4G8F4-WWYCC-J464C"),
    "2022": ("Windows Server 2022 SERVERSTANDARDCORE", "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"),
}

#: The scripts the answer file and the template's shutdown command run, from packer/windows/.
SCRIPTS = ("enable-winrm.ps1", "install-vmware-tools.ps1", "disable-network-discovery.cmd",
           "sysprep.ps1")
UNATTEND = "autounattend.xml"

#: Where the VMware Tools ISO keeps the pvscsi driver; Setup is pointed at each CD
#: drive letter the ISO can get (vSphere mounts it second, local builds first).
PVSCSI_DRIVER = r"Program Files\VMware\VMware Tools\Drivers\pvscsi\Win8\amd64"
TOOLS_DRIVES = ("D", "E", "F")

_POWERSHELL = r"%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe -NoProfile"
#: (description, command line) of the first logon, in order: WinRM comes up last,
#: when the rest of the setup is done, and Packer connects.
FIRST_LOGON = (
    ("Allow local scripts (64-bit PowerShell)",
     f'{_POWERSHELL} -Command "Set-ExecutionPolicy -ExecutionPolicy RemoteSigned -Force"'),
    ("Allow local scripts (32-bit PowerShell)",
     r"%SystemRoot%\SysWOW64\WindowsPowerShell\v1.0\powershell.exe -NoProfile -Command "
     '"Set-ExecutionPolicy -ExecutionPolicy RemoteSigned -Force"'),
    ("No hibernation file",
     r"%SystemRoot%\System32\reg.exe ADD HKLM\SYSTEM\CurrentControlSet\Control\Power "
     "/v HibernateEnabled /t REG_DWORD /d 0 /f"),
    ("The Administrator password does not expire",
     f'{_POWERSHELL} -Command "Set-LocalUser -Name Administrator -PasswordNeverExpires $true"'),
    ("Disable network discovery", r"cmd.exe /c A:\disable-network-discovery.cmd"),
    ("Enable WinRM for Packer",
     rf"{_POWERSHELL} -ExecutionPolicy Bypass -File A:\enable-winrm.ps1"),
)

#: A Windows time zone id ("Pacific Standard Time", "UTC", "W. Europe Standard Time").
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9 .()+\-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def password_problems(password: str, where: str) -> list[str]:
    """Why ``password`` cannot be the Administrator's (never showing it), or nothing.

    Windows Server's default policy (password complexity) refuses a password
    shorter than 6 characters, without 3 of upper case, lower case, digits and
    other characters, or holding the account's name: Setup would stop at the
    first logon, an hour into the build.
    """
    if not password:
        return [f"{where}: is empty; the Administrator password is required: export "
                "WINDOWS_ADMIN_PASSWORD or set windows_admin_password in a var file"]
    if password == PLACEHOLDER_PASSWORD:
        return [f"{where}: is upstream's example password; choose your own"]
    if _CONTROL.search(password):
        return [f"{where}: holds a control character, which the answer file cannot carry"]
    classes = sum(bool(re.search(p, password)) for p in (r"[A-Z]", r"[a-z]", r"[0-9]",
                                                       r"[^A-Za-z0-9]"))
    if len(password) < 6 or classes < 3 or "administrator" in password.lower():
        return [f"{where}: does not meet Windows' default password policy (at least 6 "
                "characters from 3 of: upper case, lower case, digits, others; not containing "
                "'Administrator'); Setup would refuse it (the value is not shown: it is a secret)"]
    return []


def timezone_problems(timezone: str, where: str) -> list[str]:
    """Why ``timezone`` is no Windows time zone id, or nothing."""
    if _TIMEZONE.match(timezone):
        return []
    return [f"{where}: {timezone[:64]!r} is not a Windows time zone id such as "
            "'Pacific Standard Time' or 'UTC' (tzutil /l lists them)"]


def edition_problems(distro_version: str, where: str) -> list[str]:
    """The answer file knows the image name and key of these Windows versions only."""
    if distro_version in EDITIONS:
        return []
    return [f"{where}: distro_version {distro_version!r}: the answer file knows Windows "
            f"Server {' and '.join(EDITIONS)}"]


def render_unattend(source_dir: Path, values: dict[str, str]) -> str:
    """The answer file for ``values`` (the build's resolved variables), checked to be
    well-formed XML. Every value is XML-escaped."""
    image_name, product_key = EDITIONS[values["distro_version"]]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(source_dir)),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             keep_trailing_newline=True)
    driver_paths = ["A:\\"] + [rf"{d}:\{PVSCSI_DRIVER}" for d in TOOLS_DRIVES]
    text = env.get_template(f"{UNATTEND}.j2").render(
        build_name=values["build_name"], distro_version=values["distro_version"],
        firmware=values.get("firmware", "bios"), image_name=image_name,
        product_key=product_key, admin_password=values["windows_admin_password"],
        timezone=values["unattend_timezone"], driver_paths=driver_paths,
        first_logon_commands=[{"description": d, "line": line} for d, line in FIRST_LOGON])
    try:
        ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:  # a template edit gone wrong: never hand Setup broken XML
        raise BuildError(f"{source_dir / (UNATTEND + '.j2')}: renders invalid XML ({exc})") \
            from None
    return text


def write_floppy(source_dir: Path, floppy_dir: Path, values: dict[str, str]) -> list[Path]:
    """Render the answer file and copy its scripts into ``floppy_dir``; returns the files.

    Raises InputError when the values cannot make an answer file (the plan has
    checked them; this guards direct callers).
    """
    problems = (password_problems(values.get("windows_admin_password", ""),
                                  "windows_admin_password")
                + timezone_problems(values.get("unattend_timezone", ""), "unattend_timezone")
                + edition_problems(values.get("distro_version", ""), "ova file"))
    if problems:
        raise InputError("cannot render autounattend.xml", problems)
    private_dir(floppy_dir)  # a link planted there is removed, never written through
    written = [floppy_dir / UNATTEND]
    write_file(written[0], render_unattend(source_dir, values))
    for name in SCRIPTS:
        # Windows' cmd.exe and PowerShell 5 read CRLF line ends best.
        text = (source_dir / name).read_text().replace("\r\n", "\n").replace("\n", "\r\n")
        write_file(floppy_dir / name, text)
        written.append(floppy_dir / name)
    return written


def remove_floppy(floppy_dir: Path) -> None:
    """Remove the rendered answer file (it holds the Administrator password) and scripts."""
    for name in (UNATTEND, *SCRIPTS):
        (floppy_dir / name).unlink(missing_ok=True)
