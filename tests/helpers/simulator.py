"""The vCenter simulator for tests: how a test gets one of its own.

The ``vcsim`` fixture (tests/conftest.py) is one simulator shared by the whole
session (default inventory, password "pass"), for tests that only read it.
Tests that change the inventory, or need other settings, mark themselves with
``own_simulator``: an indirect parametrization of that same fixture, which
sets its scope and the Simulator's arguments.

    pytestmark = own_simulator("module", password="module-Secret-1")

    @own_simulator("function", password="fresh-Secret-1", power_off_after=0.5)
    def test_a_build(vcsim): ...

No tests here.
"""

from __future__ import annotations

import pytest


def own_simulator(scope: str = "function", **params: object) -> pytest.MarkDecorator:
    """A simulator of their own for the tests it marks: a new one per test
    (``scope="function"``) or per module (``"module"``), started as
    ``Simulator(**params)`` (``power_off_after`` defaults to 1 second).
    The tests must use the ``vcsim`` fixture."""
    return pytest.mark.parametrize("vcsim", [params], indirect=True, scope=scope,
                                   ids=[f"own-{scope}-vcsim"])
