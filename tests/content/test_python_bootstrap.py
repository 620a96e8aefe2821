"""pypy_http_source (issue 8, no silent ignores): the python role's Flatcar bootstrap.

Upstream's bootstrap-flatcar.sh installs PyPy from ``$PYPY_HTTP_SOURCE`` (a mirror of
downloads.python.org/pypy). The role's raw task runs for real on this machine
(connection local): real curl, sha256sum and tar, a stand-in os-release saying
Flatcar, stand-in archives named and laid out like PyPy's and python-build-standalone's,
served on 127.0.0.1, installed under a temporary prefix.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import pytest
from helpers.chroot import serving
from helpers.common import REPO, write_json

ROLES = REPO / "packer" / "ansible" / "roles"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PYPY_ARCH = "aarch64" if platform.machine() == "aarch64" else "linux64"
PYPY = f"pypy3.9-v7.3.11-{PYPY_ARCH}"


def _archive(path: Path, top: str, binary: str, text: str, mode: str) -> str:
    data = f"#!/bin/sh\necho '{text}'\n".encode()
    info = tarfile.TarInfo(f"{top}/bin/{binary}")
    info.size, info.mode = len(data), 0o755
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def served(tmp_path) -> Iterator[dict]:
    """A PyPy mirror and a python-build-standalone stand-in on 127.0.0.1."""
    site = tmp_path / "site"
    sums = {
        "pypy": _archive(site / "pypy" / f"{PYPY}.tar.bz2", PYPY, "pypy3", "PyPy stand-in", "w:bz2"),
        "cpython": _archive(site / "cpython.tar.gz", "python", "python3", "CPython stand-in", "w:gz"),
    }
    with serving(site) as (url, requested):
        yield {"url": url, "sums": sums, "requested": requested}


def bootstrap(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    """The python role on this machine, told by a stand-in os-release that it is Flatcar."""
    (tmp_path / "os-release").write_text("ID=flatcar\nNAME=\"Flatcar Container Linux\"\n")
    playbook = tmp_path / "python.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  roles: [python]\n")
    extra = write_json(tmp_path / "vars.json", {
        "python_os_release": str(tmp_path / "os-release"),
        "python_flatcar_prefix": str(tmp_path / "opt/python"),
        "python_flatcar_bindir": str(tmp_path / "opt/bin"), **variables})
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_ROLES_PATH": str(ROLES),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local")}
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                           "-e", f"@{extra}", str(playbook)],
                          capture_output=True, text=True, env=env, timeout=300)


def python_says(tmp_path: Path) -> str:
    return subprocess.run([str(tmp_path / "opt/bin/python")], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_pypy_from_the_mirror_given(served, tmp_path):
    run = bootstrap(tmp_path, {
        "pypy_http_source": served["url"] + "/pypy/",
        "python_flatcar_pypy_sha256": {PYPY_ARCH: served["sums"]["pypy"]}})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert served["requested"] == [f"/pypy/{PYPY}.tar.bz2"]
    assert python_says(tmp_path) == "PyPy stand-in"
    assert os.readlink(tmp_path / "opt/bin/python3") == str(tmp_path / "opt/python/bin/pypy3")


def test_pypy_checksum_mismatch_stops_the_build(served, tmp_path):
    """The stand-in is not the real PyPy: the published sha256 (the default) refuses it."""
    run = bootstrap(tmp_path, {"pypy_http_source": served["url"] + "/pypy"})
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "checksum mismatch: expected python_flatcar_pypy_sha256." in out, out[-3000:]
    assert served["sums"]["pypy"] in out
    assert not (tmp_path / "opt/bin/python").exists()


def test_without_pypy_http_source_our_cpython(served, tmp_path):
    run = bootstrap(tmp_path, {"pypy_http_source": "",
                               "python_flatcar_url": served["url"] + "/cpython.tar.gz",
                               "python_flatcar_sha256": served["sums"]["cpython"]})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert served["requested"] == ["/cpython.tar.gz"]
    assert python_says(tmp_path) == "CPython stand-in"


def test_values_reach_the_script_as_data(served, tmp_path):
    """Proxies, URLs and paths holding quotes, $(...) and backticks are used as they
    are (issue 16): the raw script never runs any of them."""
    hostile = "x'$(touch PWNED1)`touch PWNED2`\"$(touch PWNED3)"
    run = bootstrap(tmp_path, {
        "pypy_http_source": "",
        "http_proxy": f"http://127.0.0.1:9/{hostile}", "https_proxy": hostile,
        "no_proxy": f"127.0.0.1,localhost,{hostile}",
        "python_flatcar_url": served["url"] + "/cpython.tar.gz",
        "python_flatcar_sha256": served["sums"]["cpython"],
        "python_flatcar_prefix": str(tmp_path / "o'brien $(touch PWNED4)" / "python")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert python_says(tmp_path) == "CPython stand-in"
    assert (tmp_path / "o'brien $(touch PWNED4)" / "python" / "bin" / "python3").is_file()
    assert not [p for p in tmp_path.rglob("PWNED*")] and not list(Path.cwd().glob("PWNED*"))
    assert not list(Path(REPO).glob("PWNED*"))
