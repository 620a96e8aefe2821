"""Fixtures shared across the test modules."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from helpers.common import BIN, KNOBS, REPO, STANDIN

from imagebuilder.config.checkout import Checkout
from imagebuilder.errors import InputError
from imagebuilder.vcsim import Simulator, build

# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
# across exec: the tools the tests start would then never see a Ctrl-C. Tests that send
# one (the stopping tests) need the children to get the default, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The compiled simulator (cached); skips when it is not built yet and Go
    or the govmomi sources are missing, saying which apt packages to install."""
    try:
        return build()
    except InputError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def vcsim(request: pytest.FixtureRequest, vcsim_binary: Path) -> Iterator[Simulator]:
    """A running vCenter simulator: by default one (default inventory) for the
    whole session; ``helpers.simulator.own_simulator`` gives tests one of their
    own, per test or per module, with other Simulator arguments.

    VMs powered on are powered off again after ``power_off_after`` seconds
    (default 1), as a guest does at the end of an unattended install, so a
    Packer vsphere-iso build with ``"communicator": "none"`` can finish.
    """
    params = {"power_off_after": 1.0, **getattr(request, "param", {})}
    with Simulator(binary=vcsim_binary, **params) as sim:
        yield sim


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Checkout:
    """A private copy of the checkout's packer/, ova/ and cloudinit/ (IB_ROOT points at it)."""
    root = tmp_path / "checkout"
    for part in ("packer", "ova", "cloudinit"):
        shutil.copytree(REPO / part, root / part)
    for knob in KNOBS:
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("IB_ROOT", str(root))
    monkeypatch.delenv("IB_OUTPUT_DIR", raising=False)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return Checkout(root)


@pytest.fixture
def standin(tmp_path, monkeypatch, checkout) -> Path:
    """The stand-in packer first on PATH; returns the directory it records into."""
    record = tmp_path / "standin-records"
    record.mkdir()
    monkeypatch.setenv("PATH", f"{STANDIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_DIR", str(record))
    return record


@pytest.fixture(scope="session")
def gossrender(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/gossrender built once: renders a goss spec as goss itself does (Go's
    text/template with goss's functions), for the spec tests of every OS family."""
    go = shutil.which("go")
    assert go, "Go is needed to render the goss specs (.ci/setup installs golang-go)"
    out = tmp_path_factory.mktemp("gossrender") / "gossrender"
    subprocess.run([go, "build", "-o", str(out), "."], cwd=REPO / "tests" / "gossrender",
                   check=True, env={**os.environ, "GO111MODULE": "off",
                                    "GOCACHE": os.environ.get("GOCACHE", str(
                                        Path.home() / ".cache" / "go-build"))})
    return out
