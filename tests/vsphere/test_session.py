"""One vCenter session per build, as Packer's vSphere builder holds one driver: a run logs
in once per vCenter for its preflight and once per build, every vSphere step of a build
(cleanups included) uses that session, and it is logged out at the end. Counted from
the simulator's own login events and session list, with the stand-in packer."""

from __future__ import annotations

import time

import pytest
from helpers.common import write_json
from helpers.simulator import own_simulator
from pyVmomi import vim

from imagebuilder import api
from imagebuilder.config.knobs import Knobs
from imagebuilder.errors import InputError
from imagebuilder.vcsim import Simulator, vsphere_config
from imagebuilder.vcsim.simulation import simulator_var_files
from imagebuilder.vsphere.session import Session
from imagebuilder.vsphere.settings import VSphereSettings

pytestmark = [pytest.mark.vcsim, own_simulator("module", password="session-Secret-1")]


def settings_of(sim: Simulator, **overrides: str) -> VSphereSettings:
    return VSphereSettings.from_vars(vsphere_config(sim, **overrides), env={})


def observe(sim: Simulator) -> tuple[int, list[str]]:
    """(logins so far, the keys of the sessions open now), seen from a session of its own
    (its own login is counted; its own session is not listed)."""
    with Session(settings_of(sim), keepalive=0) as si:
        content = si.RetrieveContent()
        collector = content.eventManager.CreateCollectorForEvents(vim.event.EventFilterSpec())
        try:
            collector.SetCollectorPageSize(1000)
            logins = sum(isinstance(e, vim.event.UserLoginSessionEvent)
                         for e in collector.latestPage)
        finally:
            collector.DestroyCollector()
        own = content.sessionManager.currentSession.key
        return logins, [s.key for s in content.sessionManager.sessionList if s.key != own]


def test_a_run_logs_in_once_for_preflight_and_once_per_build(checkout, standin, vcsim,
                                                             tmp_path, monkeypatch):
    """Two builds on one vCenter: one ends with destroy (a vSphere step after Packer),
    the other fails (its cleanup looks for the VM to remove): three logins in all."""
    files = simulator_var_files(vcsim, tmp_path / "sim", template="DC0_H0_VM0")
    files.append(write_json(tmp_path / "destroy.json", {"destroy": "true"}))
    monkeypatch.setenv("PACKER_VAR_FILES", " ".join(map(str, files)))
    monkeypatch.setenv("STANDIN_SECONDS", "0.3")
    monkeypatch.setenv("STANDIN_FAIL", "photon-5")
    targets = api.resolve_targets(["build-node-ova-vsphere-clone-ubuntu-2204",
                                   "build-node-ova-vsphere-clone-photon-5"], checkout)
    before, open_before = observe(vcsim)
    steps: list[str] = []

    class Steps:
        def started(self, name): pass
        def step(self, name, text): steps.append(f"{name}: {text}")
        def finished(self, name, result, seconds): pass
        def close(self): pass

    report = api.run(targets, jobs=2, progress=Steps(), checkout=checkout, knobs=Knobs.from_env())
    after, open_after = observe(vcsim)
    assert [r.result for r in report.results] == ["ok", "failed"]
    assert after - before - 1 == 3  # preflight, and one per build (the -1: observe's own)
    assert open_after == open_before  # every session was logged out (the simulator's own stay)
    ok = [s.split(": ", 1)[1] for s in steps if s.startswith("build-node-ova-vsphere-clone-ub")]
    assert ok[:3] == ["lock", "render", "vsphere-connect"]
    assert ok.index("destroy") > ok.index("packer")


def test_the_session_is_kept_alive_and_logged_out(vcsim):
    session = Session(settings_of(vcsim), keepalive=0.05)
    si = session.open()
    try:
        key = si.RetrieveContent().sessionManager.currentSession.key
        deadline = time.monotonic() + 30
        while session.pings < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.pings >= 3
        assert key in observe(vcsim)[1]
    finally:
        session.close()
    assert key not in observe(vcsim)[1]
    session.close()  # twice is fine


def test_a_failed_connect_step_still_logs_out(checkout, vcsim, tmp_path):
    from imagebuilder.config.catalog import parse_target
    from imagebuilder.planning.plan import plan_build
    from imagebuilder.running.steps import BuildState, StepRunner
    from imagebuilder.vsphere.steps import ConnectStep

    files = simulator_var_files(vcsim, tmp_path / "sim", template="DC0_H0_VM0", datacenter="DC9")
    knobs = Knobs.from_env({"PACKER_VAR_FILES": " ".join(map(str, files))})
    plan = plan_build(checkout, parse_target("node-ova-vsphere-clone-flatcar",
                                             checkout.os_names()), knobs)
    before, open_before = observe(vcsim)
    with pytest.raises(InputError, match="datacenter 'DC9' not found"):
        StepRunner([ConnectStep()]).run(BuildState(plan=plan))
    after, open_after = observe(vcsim)
    assert (after - before - 1, open_after) == (1, open_before)
