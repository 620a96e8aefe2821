"""What the helper commands of cli/commands.py do: one function per command.

Each takes the command's parameters as keywords and returns the exit code; bad
input raises InputError (exit 2), a failure BuildError (exit 1). Both front ends
(invoke's tasks, ``python -m imagebuilder``) call these, so they behave the same.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from imagebuilder.config.checkout import find_checkout
from imagebuilder.config.knobs import Knobs
from imagebuilder.config.options import parse_jobs
from imagebuilder.running.progress import TqdmTaskProgress, default_progress
from imagebuilder.running.stopping import stop_on_signals

#: How many builds run at once when no -j/--jobs says (invoke's core -j sets it too).
JOBS_ENV = "INVOKE_BUILD_JOBS"
#: Where builds keep Packer's downloads (ISOs) unless PACKER_CACHE_DIR says otherwise.
PACKER_CACHE = ".packer_cache"


def job_count(jobs: object) -> int:
    """``-j/--jobs`` when given, else INVOKE_BUILD_JOBS (core ``-j``), else 1.

    invoke's task flag is checked when invoke parses it already."""
    if jobs is not None:
        return parse_jobs(jobs, "-j/--jobs")
    env = os.environ.get(JOBS_ENV)
    return 1 if env is None else parse_jobs(env, f"{JOBS_ENV} (or -j)")


def _say(text: str) -> None:
    print(text, flush=True)


def clean_ova() -> int:
    """Remove the output, work files and logs of every target (refused while one builds)."""
    from imagebuilder import api
    with stop_on_signals():
        for path in api.clean(api.targets_of()):
            _say(f"removed {path}")
    return 0


def clean() -> int:
    """clean-ova, then the contents of our Packer cache (upstream: ``packer_cache/*``).
    A PACKER_CACHE_DIR of your own is yours: it is left alone."""
    clean_ova()
    cache = find_checkout().output_dir / PACKER_CACHE
    if cache.is_dir() and not cache.is_symlink():
        for entry in sorted(cache.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            _say(f"removed {entry}")
    return 0


def ova_assemble(build_dir: str, manifest_digest: str = "sha256") -> int:
    """The OVA of a Packer build directory."""
    from imagebuilder.ova import AssembleOptions, assemble_from_packer
    from imagebuilder.ova.progress import TqdmByteProgress
    from imagebuilder.running.stopping import stop_on_signals
    with stop_on_signals():  # SIGTERM/SIGHUP clean up like Ctrl-C (partial files, work dir)
        result = assemble_from_packer(
            Path(build_dir), AssembleOptions.from_env(manifest_algorithm=manifest_digest),
            TqdmByteProgress(), lambda text: print(text, file=sys.stderr))
    if result is not None:
        _say(result.summary())
    return 0


def ova_verify(ova: str, ca: str | None = None, provenance: bool = False) -> int:
    """Check a finished OVA."""
    from imagebuilder.ova.check import check_ova
    from imagebuilder.ova.progress import TqdmByteProgress
    _say(check_ova(Path(ova), TqdmByteProgress(), ca_file=Path(ca) if ca else None,
                   provenance=provenance))
    return 0


def deploy_ova(ova: str, name: str, folder: str | None = None, datastore: str | None = None,
               network: str | None = None, template: bool = False, snapshot: str | None = None,
               from_library: bool = False) -> int:
    """Import an OVA (or a Content Library item) into vCenter."""
    from imagebuilder.ova.progress import TqdmByteProgress
    from imagebuilder.vsphere.deploy import deploy_ova as deploy
    from imagebuilder.vsphere.session import VSphereSettings
    settings = VSphereSettings.from_checkout(find_checkout(), Knobs.from_env())
    place = dict(folder=folder, datastore=datastore, network=network, template=template,
                 snapshot=snapshot, report=_say)
    with stop_on_signals():
        if from_library:  # deploy-ova --from-library LIB/ITEM NAME
            from imagebuilder.vsphere.library_deploy import (
                deploy_from_library,
                split_library_item,
            )
            deploy_from_library(settings, *split_library_item(ova), name, **place)
        else:
            deploy(settings, Path(ova), name, progress=TqdmByteProgress(),
                   on_task=TqdmTaskProgress(), **place)
    return 0


def render(target: str, output: str) -> int:
    """Write what a build would use, without building."""
    from imagebuilder.planning.inspect import render_target
    for path in render_target(target, Path(output)):
        _say(str(path))
    return 0


def deps_ova() -> int:
    """Check the tools; 2 when one is missing."""
    from imagebuilder.running import tools
    report = tools.check()
    _say(report.text())
    return report.exit_code


def vcsim_build(target: str, jobs: object = None) -> int:
    """Builds against a simulator of their own, their OVAs deployed back."""
    from imagebuilder import api
    from imagebuilder.vcsim import simulation
    targets = api.resolve_targets([t for t in target.split(",") if t.strip()])
    report = simulation.build_against_simulator(targets, jobs=job_count(jobs),
                                                progress=default_progress())
    say_summary(report)
    return report.exit_code


def say_summary(report: object) -> None:
    """The path of the run's summary JSON, when it was written (scripts read it)."""
    path = getattr(report, "summary_path", None)
    if path:
        _say(f"summary: {path}")


def vcsim(vsphere_json: str = "output/vcsim/vsphere.json") -> int:
    """The simulator in the foreground, until Ctrl-C (or SIGTERM/SIGHUP)."""
    from imagebuilder.vcsim import simulation
    with stop_on_signals():
        simulation.serve(Path(vsphere_json).absolute())
    return 0


def cloudinit_keys() -> int:
    """The example key pair."""
    from imagebuilder.imagetest import access
    _say(str(access.ensure_keys(find_checkout())))
    return 0


def image_cloudinit(vm: str, user_data: str | None = None, meta_data: str | None = None) -> int:
    """Cloud-init data into a vCenter VM."""
    from imagebuilder.imagetest import access
    with stop_on_signals():
        access.cloudinit_vm(find_checkout(), Knobs.from_env(), vm,
                            Path(user_data) if user_data else None,
                            Path(meta_data) if meta_data else None, on_task=TqdmTaskProgress())
    return 0


def image_ssh(build_dir: str, user: str = "capv") -> int:
    """Log in to a local build's VM with ssh; returns ssh's exit code."""
    from imagebuilder.imagetest import access
    return _interactive(access.local_ssh_argv(find_checkout(), Path(build_dir), user))


def image_ssh_vm(vm: str, user: str = "capv") -> int:
    """Log in to a vCenter VM with ssh; returns ssh's exit code."""
    from imagebuilder.imagetest import access
    return _interactive(access.vm_ssh_argv(find_checkout(), Knobs.from_env(), vm, user))


def help(program: str = "invoke") -> int:  # noqa: A001 (the command's name)
    """The ``make help`` style overview."""
    from imagebuilder import api
    _say(api.help_text(program=program))
    return 0


def _interactive(argv: list[str]) -> int:
    """Run ``argv`` on this terminal (ssh) and return its exit code; it dies with us,
    also on SIGTERM/SIGHUP (stop_on_signals), never left running behind."""
    from imagebuilder.processes import start_child
    from imagebuilder.running.stopping import stop_on_signals
    with stop_on_signals():
        child = start_child(argv)
        try:
            return child.wait()
        except BaseException:
            child.terminate()
            child.wait()
            raise
