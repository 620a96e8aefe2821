"""The Windows answer file (autounattend.xml) and the scripts beside it on the build's
floppy: rendered per build into its work directory, parsed here as Windows Setup reads
them. No Windows guest runs here; what the files say is what is checked."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers.common import REPO, write_json

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.planning.plan import plan_build, write_build_files
from imagebuilder.planning.unattend import PVSCSI_DRIVER
from imagebuilder.running.build import RenderStep
from imagebuilder.running.steps import BuildState

NS = {"u": "urn:schemas-microsoft-com:unattend"}
WCM = "{http://schemas.microsoft.com/WMIConfig/2002/State}"
#: XML's special characters, to be carried escaped
PASSWORD = "P<a>s&s'w\"ord-42"
WINDOWS = ("windows-2019", "windows-2019-efi", "windows-2022", "windows-2022-efi")


def rendered(checkout, tmp_path: Path, os_name: str, **settings: str):
    isos = []
    for name in ("windows.iso", "vmtools.iso"):
        (tmp_path / name).write_bytes(b"stand-in")
        isos.append((tmp_path / name).as_uri())
    user = write_json(tmp_path / "user.json", {"os_iso_url": isos[0], "vmtools_iso_url": isos[1],
                                               **settings})
    plan = plan_build(checkout, parse_target(f"node-ova-local-{os_name}", checkout.os_names()),
                      Knobs.from_env({"PACKER_VAR_FILES": str(user),
                                      "WINDOWS_ADMIN_PASSWORD": PASSWORD}))
    write_build_files(plan)
    return plan, plan.work_dir / "floppy"


def component(root: ET.Element, settings_pass: str, name: str) -> ET.Element:
    [found] = root.findall(f"u:settings[@pass='{settings_pass}']/u:component[@name='{name}']", NS)
    return found


def texts(element: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in element.findall(path, NS)]


@pytest.mark.parametrize("os_name", WINDOWS)
def test_answer_file(checkout, tmp_path, os_name):
    plan, floppy = rendered(checkout, tmp_path, os_name, unattend_timezone="W. Europe Standard Time")
    assert floppy.is_relative_to(plan.work_dir) and not floppy.is_relative_to(REPO)
    assert sorted(p.name for p in floppy.iterdir()) == [
        "autounattend.xml", "disable-network-discovery.cmd", "enable-winrm.ps1",
        "install-vmware-tools.ps1", "sysprep.ps1"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in floppy.iterdir())
    assert floppy.stat().st_mode & 0o077 == 0
    root = ET.parse(floppy / "autounattend.xml").getroot()  # well-formed, or this raises
    assert root.tag == "{urn:schemas-microsoft-com:unattend}unattend"
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    assert texts(shell, "u:UserAccounts/u:AdministratorPassword/u:Value") == [PASSWORD]
    assert texts(shell, "u:AutoLogon/u:Password/u:Value") == [PASSWORD]
    assert texts(shell, "u:AutoLogon/u:Username") == ["Administrator"]
    assert texts(shell, "u:TimeZone") == ["W. Europe Standard Time"]

    setup = component(root, "windowsPE", "Microsoft-Windows-Setup")
    efi = os_name.endswith("-efi")
    types = texts(setup, ".//u:CreatePartition/u:Type")
    assert types == (["EFI", "MSR", "Primary"] if efi else ["Primary", "Primary"])
    formats = texts(setup, ".//u:ModifyPartition/u:Format")
    assert formats == (["FAT32", "NTFS"] if efi else ["NTFS", "NTFS"])
    assert texts(setup, ".//u:InstallTo/u:PartitionID") == (["3"] if efi else ["2"])
    if not efi:
        assert texts(setup, ".//u:ModifyPartition[u:PartitionID='1']/u:Active") == ["true"]
    version = os_name.split("-")[1]
    assert texts(setup, ".//u:InstallFrom/u:MetaData/u:Value") == [
        f"Windows Server {version} SERVERSTANDARDCORE"]

    drivers = texts(component(root, "windowsPE", "Microsoft-Windows-PnpCustomizationsWinPE"),
                    ".//u:PathAndCredentials/u:Path")
    assert [d for d in drivers if d.endswith(PVSCSI_DRIVER)] == [
        f"{letter}:\\{PVSCSI_DRIVER}" for letter in "DEF"]
    assert PVSCSI_DRIVER.split("\\")[-3:] == ["pvscsi", "Win8", "amd64"]

    specialize = texts(component(root, "specialize", "Microsoft-Windows-Deployment"),
                       ".//u:RunSynchronousCommand/u:Path")
    assert any(cmd.endswith(r"-File A:\install-vmware-tools.ps1") for cmd in specialize)

    logon = texts(shell, ".//u:FirstLogonCommands/u:SynchronousCommand/u:CommandLine")
    assert logon[-1].endswith(r"-File A:\enable-winrm.ps1")  # WinRM last: Packer connects then
    orders = texts(shell, ".//u:FirstLogonCommands/u:SynchronousCommand/u:Order")
    assert orders == [str(i) for i in range(1, len(logon) + 1)]


def test_scripts_say_what_they_must(checkout, tmp_path):
    _, floppy = rendered(checkout, tmp_path, "windows-2022")
    winrm = (floppy / "enable-winrm.ps1").read_text()
    for line in ("Enable-PSRemoting -Force", "@{Basic=\"true\"}", "@{AllowUnencrypted=\"true\"}",
                 "Set-Service -Name WinRM -StartupType Automatic"):
        assert line in winrm, line
    sysprep = (floppy / "sysprep.ps1").read_text()
    assert b"\r\n" in (floppy / "sysprep.ps1").read_bytes()  # CRLF for PowerShell 5
    disable = sysprep.index("Set-Service -Name WinRM -StartupType Disabled")
    run = sysprep.index("Sysprep.exe")
    assert disable < run  # WinRM is off in the image before it is sealed
    assert "action=block" in sysprep
    assert "@('/generalize', '/oobe', '/mode:vm', '/shutdown', '/quiet')" in sysprep
    assert re.search(r'\\Cloudbase Solutions\\Cloudbase-Init\\conf\\Unattend\.xml"', sysprep)
    assert '"/unattend:$cloudbaseUnattend"' in sysprep
    for leftover in ("DefaultPassword", r"Panther\unattend.xml"):
        assert leftover in sysprep  # the password is not left in the image
    tools = (floppy / "install-vmware-tools.ps1").read_text()
    assert "setup64.exe" in tools and "ADDLOCAL=ALL" in tools
    template = (REPO / "packer" / "windows.json").read_text()
    assert template.count(r"-File A:\\sysprep.ps1") == 2  # the shutdown command of both builders


def test_the_source_tree_is_not_written(checkout, tmp_path):
    before = sorted((checkout.packer_dir / "windows").iterdir())
    rendered(checkout, tmp_path, "windows-2019-efi")
    assert sorted((checkout.packer_dir / "windows").iterdir()) == before
    assert not list(checkout.packer_dir.rglob("autounattend.xml"))


def test_the_build_removes_the_answer_file(checkout, tmp_path):
    plan, floppy = rendered(checkout, tmp_path, "windows-2019")
    state = BuildState(plan=plan)
    step = RenderStep()
    step.run(state)
    assert (floppy / "autounattend.xml").is_file()
    step.cleanup(state)
    assert not list(floppy.iterdir())


def test_a_link_in_place_of_the_floppy_directory_is_replaced(checkout, tmp_path):
    """A link planted where the answer file goes is removed, never written through
    (issue 16): the floppy becomes a directory of the build's own."""
    plan, floppy = rendered(checkout, tmp_path, "windows-2022")
    for path in floppy.iterdir():
        path.unlink()
    floppy.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    floppy.symlink_to(elsewhere)
    write_build_files(plan)
    assert not list(elsewhere.iterdir())
    assert floppy.is_dir() and not floppy.is_symlink()
    assert (floppy / "autounattend.xml").is_file()
