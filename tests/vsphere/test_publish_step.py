"""The opt-in last build step: content_library (or vsphere_library_name) set, the build's
OVA goes to that library; the step is in the build's steps only then."""

from __future__ import annotations

import os

import pytest
from helpers.common import write_json
from helpers.ova import MiB, make_vmdk
from helpers.simulator import own_simulator

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.options import BuildOptions
from imagebuilder.errors import BuildError
from imagebuilder.ova import assemble, plan_from_vmdks
from imagebuilder.planning.plan import plan_build
from imagebuilder.running.build import steps_for
from imagebuilder.running.steps import BuildState, Cancelled
from imagebuilder.vcsim import vsphere_config, write_vsphere_json
from imagebuilder.vsphere.library import RestSession, find_item, find_library
from imagebuilder.vsphere.library_deploy import LibraryPublishStep
from imagebuilder.vsphere.session import VSphereSettings

pytestmark = [pytest.mark.vcsim, own_simulator("module")]
TARGET = "node-ova-local-ubuntu-2204"


def plan_with(checkout, tmp_path, sim, library: dict, force: bool = False):
    files = [write_vsphere_json(sim, tmp_path / "sim.json"),
             write_json(tmp_path / "library.json", library)]
    knobs = Knobs.from_env({"PACKER_VAR_FILES": " ".join(str(f) for f in files)})
    return plan_build(checkout, parse_target(TARGET, checkout.os_names()), knobs, "build",
                      options=BuildOptions(force=force))


def test_the_step_only_when_asked(checkout, tmp_path, vcsim):
    plain = plan_with(checkout, tmp_path, vcsim, {})
    assert not any(isinstance(s, LibraryPublishStep) for s in steps_for(plain))
    eks = plan_with(checkout, tmp_path, vcsim, {"vsphere_library_name": "eks"})
    assert isinstance(steps_for(eks)[-1], LibraryPublishStep)


def test_the_step_publishes_the_builds_ova(checkout, tmp_path, vcsim, monkeypatch):
    for knob in ("SOURCE_DATE_EPOCH", "IB_SIGNING_KEY", "IB_SIGNING_CERT", "IB_OVFTOOL"):
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("IB_OUTPUT_DIR", str(tmp_path / "output"))
    library = {"content_library": "step-lib", "content_library_create": "true"}
    plan = plan_with(checkout, tmp_path, vcsim, library)
    disk = make_vmdk(tmp_path / "d.vmdk", data=[(MiB, os.urandom(MiB))])
    ova = assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", plan.artifact_dir)).ova
    state = BuildState(plan=plan)
    LibraryPublishStep().run(state)
    settings = VSphereSettings.from_vars(vsphere_config(vcsim), env={})
    with RestSession(settings) as rest:
        item = find_item(rest, find_library(rest, "step-lib"), ova.stem)
    assert item is not None and state.data["library_item"].id == item.id
    with pytest.raises(BuildError, match="pass --force to replace it"):
        LibraryPublishStep().run(BuildState(plan=plan))
    forced = plan_with(checkout, tmp_path, vcsim, library, force=True)
    LibraryPublishStep().run(BuildState(plan=forced))
    cancelled = BuildState(plan=forced)
    cancelled.cancel.set()
    with pytest.raises(Cancelled):
        LibraryPublishStep().run(cancelled)
    with RestSession(settings) as rest:   # a cancelled replacement keeps the item
        assert find_item(rest, find_library(rest, "step-lib"), ova.stem) is not None
