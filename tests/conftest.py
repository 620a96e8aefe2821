"""Fixtures shared across the test modules."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from imagebuilder.errors import InputError
from imagebuilder.vcsim import Simulator, build


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The compiled simulator (cached); skips when it is not built yet and Go
    or the govmomi sources are missing, saying which apt packages to install."""
    try:
        return build()
    except InputError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def vcsim(vcsim_binary: Path) -> Iterator[Simulator]:
    """One vCenter simulator (default inventory) for the whole session.

    VMs powered on during the session are powered off again after a second,
    as a guest does at the end of an unattended install, so a Packer
    vsphere-iso build with ``"communicator": "none"`` can finish.
    """
    with Simulator(binary=vcsim_binary, power_off_after=1.0) as sim:
        yield sim
