"""No writing through planted links (issue 16, item 5): a symbolic link planted where a
build writes its files (its work directory, the secrets in it, its lock, its log, its
record) is replaced or removed, never followed; ``clean`` removes a link, not its target.

Each build runs for real through ``python -m imagebuilder`` with the stand-in packer.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from helpers.common import REPO, events

from imagebuilder.files import create_exclusive, open_append, private_dir, write_file

TARGET = "node-ova-local-ubuntu-2204"
ORIGINAL = "the user's own file: must stay as it is\n"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imagebuilder", *args], cwd=REPO,
                          env=dict(os.environ, STANDIN_SECONDS="0.3", **env),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def outside(tmp_path):
    """A directory outside the output tree, with a file a planted link points at."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_text(ORIGINAL)
    return d


def untouched(outside) -> bool:
    return (outside / "victim").read_text() == ORIGINAL and \
        sorted(p.name for p in outside.iterdir()) == ["victim"]


@pytest.mark.parametrize("planted", [
    ".work/{t}/build-vars.json",        # the SSH password's file
    ".work/{t}/flag-secrets.json",      # PACKER_FLAGS' secrets
    ".work/{t}/var-files/00-kubernetes.json",
    ".work/{t}/cidata/user-data",       # a rendered install file
    ".work/{t}.lock",
    "logs/build-{t}.log",
])
def test_a_link_planted_for_a_file_is_never_written_through(planted, checkout, standin,
                                                            outside):
    link = checkout.output_dir / planted.format(t=TARGET)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / "victim")
    result = cli("build", TARGET, PACKER_FLAGS="-var ssh_password=Flag-Secret-1234")
    assert result.returncode == 0, result.stdout + result.stderr
    assert untouched(outside)
    assert not link.is_symlink()
    assert [e[1] for e in events(standin)] == ["start", "end"]


def test_a_planted_work_directory_link_is_replaced(checkout, standin, outside):
    work = checkout.output_dir / ".work" / TARGET
    work.parent.mkdir(parents=True)
    work.symlink_to(outside, target_is_directory=True)
    result = cli("build", TARGET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert untouched(outside)
    assert work.is_dir() and not work.is_symlink()
    assert stat.S_IMODE(work.stat().st_mode) == 0o700


def test_the_record_of_a_build_is_not_written_through_a_link(checkout, standin, outside):
    artifact = checkout.output_dir / "ubuntu-2204-kube-v1.37.1"
    artifact.mkdir(parents=True)
    (artifact / "build-info.json").symlink_to(outside / "victim")
    # vmware builders refuse an existing output directory: Packer's own rule; the
    # stand-in only creates it, so the record step meets the planted link.
    result = cli("build", TARGET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert untouched(outside)
    assert not (artifact / "build-info.json").is_symlink()


@pytest.mark.parametrize("what", ["output directory", "work directory", "log"])
def test_clean_removes_a_link_never_its_target(what, checkout, standin, outside):
    paths = {"output directory": checkout.output_dir / "ubuntu-2204-kube-v1.37.1",
             "work directory": checkout.output_dir / ".work" / TARGET,
             "log": checkout.output_dir / "logs" / f"build-{TARGET}.log"}
    link = paths[what]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside if what != "log" else outside / "victim")
    result = cli("clean", TARGET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.lexists(link)
    assert untouched(outside)


def test_the_helpers_replace_links(tmp_path, outside):
    """files.py on its own: every way of writing replaces a link, none follows one."""
    for name, write in (("a", lambda p: write_file(p, "new")),
                        ("b", lambda p: create_exclusive(p, "new")),
                        ("c", lambda p: open_append(p).close())):
        link = tmp_path / name
        link.symlink_to(outside / "victim")
        write(link)
        assert not link.is_symlink() and link.is_file()
    directory = tmp_path / "d"
    directory.symlink_to(outside, target_is_directory=True)
    private_dir(directory)
    assert directory.is_dir() and not directory.is_symlink()
    assert untouched(outside)
