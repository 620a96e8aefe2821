"""Fixtures shared across the test modules."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from imagebuilder.errors import InputError
from imagebuilder.vcsim import APT_PACKAGES, Simulator, build


@pytest.fixture(scope="session")
def vcsim() -> Iterator[Simulator]:
    """One vCenter simulator (default inventory) for the whole session.

    VMs powered on during the session are powered off again after a second,
    as a guest does at the end of an unattended install, so a Packer
    vsphere-iso build with ``"communicator": "none"`` can finish. Skips when
    Go or the govmomi sources are not installed.
    """
    if shutil.which("go") is None:
        pytest.skip(f"the vCenter simulator needs Go: apt-get install {APT_PACKAGES}")
    try:
        binary = build()
    except InputError as e:
        pytest.skip(str(e))
    with Simulator(binary=binary, power_off_after=1.0) as sim:
        yield sim
