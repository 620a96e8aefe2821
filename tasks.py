"""invoke tasks: the upstream Makefile's OVA targets, wired to the imagebuilder library.

    invoke --list
    invoke build-node-ova-vsphere-ubuntu-2204 --dry-run
    invoke -j 4 build-node-ova-vsphere-all      (needs the image-builder program, see README)
    INVOKE_BUILD_JOBS=4 invoke build-node-ova-vsphere-all
    invoke build-all --hypervisor vsphere --jobs 4

Every task here only translates flags and exit codes; the work is in imagebuilder.
"""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
from pathlib import Path

from invoke import Collection, Exit, Task

from imagebuilder.config.catalog import HYPERVISORS, Target, buildable, windows_refusal
from imagebuilder.config.checkout import find_checkout
from imagebuilder.config.options import (
    BUILD,
    BY_NAME,
    VALIDATE,
    BuildOptions,
    options_for,
    parse_jobs,
)
from imagebuilder.errors import ImageBuilderError

# Only what listing the tasks needs is imported here; the modules that pull in
# pyVmomi and jsonschema (api, simulation, deps) are imported by the task that
# runs (invoke --list stays fast; tests/cli/test_invoke_list.py checks it).
from imagebuilder.imagetest import access as imagetest
from imagebuilder.running.progress import (
    LineProgress,
    TqdmTaskProgress,
    default_progress,
)
from imagebuilder.running.stopping import exit_code_of

HYPERVISOR_HELP = "local (default), local-base, local-vmx, vsphere, vsphere-base or vsphere-clone"


def _user_facing(body):
    """ImageBuilderError -> its message and exit code; Ctrl-C -> 130 (SIGTERM 143, SIGHUP 129)."""
    @functools.wraps(body)
    def wrapper(c, *args, **kwargs):
        try:
            return body(c, *args, **kwargs)
        except ImageBuilderError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise Exit("interrupted", code=exit_code_of(exc)) from None
    return wrapper


def _jobs(c, jobs) -> int:
    """Task flag, then invoke config ``build.jobs`` (INVOKE_BUILD_JOBS, core -j), then 1."""
    if jobs is not None:
        return parse_jobs(jobs, "--jobs")
    jobs = c.config.get("build", {}).get("jobs")
    return 1 if jobs is None else parse_jobs(jobs, "INVOKE_BUILD_JOBS (or -j)")


def _run(c, targets: list[Target], action: str, dry_run=False, jobs=None,
         fail_fast=False, stream=False, **options) -> None:
    from imagebuilder import api
    progress = LineProgress() if stream else default_progress()
    report = api.run(targets, action, jobs=_jobs(c, jobs), fail_fast=fail_fast,
                     dry_run=dry_run, progress=progress, stream=stream,
                     options=BuildOptions.from_flags(options))
    if report.exit_code:
        raise Exit(code=report.exit_code)


def _make(name: str, doc: str, body, help: dict | None = None) -> Task:
    body.__doc__ = doc
    body.__name__ = name.replace("-", "_")
    return Task(_user_facing(body), name=name, help=help or {})


def _with_options(body, action: str, several: bool, extra: tuple[inspect.Parameter, ...] = ()):
    """``body(c, **flags)`` given the signature invoke reads a task's flags from (its
    own ``extra`` parameters, then the options of OPTIONS for ``action``), and their help."""
    options = options_for(action, several)
    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD), *extra]
    params += [inspect.Parameter(o.attr, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=o.default) for o in options]
    body.__signature__ = inspect.Signature(params)
    return body, {o.name: o.help for o in options}


def refused_task(target: Target, action: str) -> Task:
    """A target upstream names but cannot build (Windows base, clone, vmx): exit 2, one line."""
    def body(c):
        from imagebuilder.errors import InputError
        raise InputError(windows_refusal(target.task_name(action), target.os_name))
    return _make(target.task_name(action), "Refused: Windows images are built from the ISO "
                 "only (local, vsphere).", body)


def target_task(target: Target, action: str) -> Task:
    hv = target.hypervisor
    if action == "clean":
        def body(c):
            from imagebuilder import api
            for path in api.clean([target]):
                print(f"removed {path}")
        return _make(target.task_name(action),
                     f"Remove the output, work files and logs of {target.name}.", body)

    if action == "publish":
        def body(c, library="", item="", create=False, force=False):
            from imagebuilder.ova.progress import TqdmByteProgress
            from imagebuilder.running.stopping import stop_on_signals
            from imagebuilder.vsphere.library_deploy import publish_target
            with stop_on_signals():
                done = publish_target(target, library, item, create=create, force=force,
                                      progress=TqdmByteProgress(), report=print)
            print(f"{done.library.name}/{done.item.name}")
        return _make(target.task_name(action), f"Publish {target.name}'s OVA to a vSphere "
                     "Content Library (content_library, or --library).", body,
                     {"library": "the library (default: content_library / vsphere_library_name)",
                      "item": "the item's name (default: the OVA's name)",
                      "create": "create a missing library on the build's datastore",
                      "force": "replace an item of the same name"})

    if action == VALIDATE:
        def body(c, **flags):
            _run(c, [target], action, **flags)
        return _make(target.task_name(action), f"Run packer validate for {target.os_name}: "
                     f"{hv.summary}.", *_with_options(body, VALIDATE, several=False))

    def batch(c, targets, **flags):
        _run(c, targets, action, **flags)

    def body(c, **flags):
        batch(c, [target], **flags)
    task = _make(target.task_name(action), f"Build {target.os_name}: {hv.summary}.",
                 *_with_options(body, BUILD, several=False))
    # Several build targets on one command line run as one batch (see executor.py).
    task.ib_target = target
    task.ib_batch = _user_facing(batch)
    return task


def hypervisor_all_task(hv_name: str) -> Task:
    def body(c, **flags):
        from imagebuilder import api
        _run(c, api.targets_of(hv_name), BUILD, **flags)
    return _make(f"build-node-ova-{hv_name}-all",
                 f"Build every OS with {hv_name}: {HYPERVISORS[hv_name].summary}.",
                 *_with_options(body, BUILD, several=True))


def build_all(c, hypervisor="local", **flags):
    from imagebuilder import api
    _run(c, api.targets_of(hypervisor), BUILD, **flags)


def vcsim_build(c, target="build-node-ova-vsphere-clone-ubuntu-2204", jobs=None):
    from imagebuilder import api
    from imagebuilder.vcsim import simulation
    report = simulation.build_against_simulator(api.resolve_targets(target.split(",")),
                                                jobs=_jobs(c, jobs), progress=default_progress())
    if report.exit_code:
        raise Exit(code=report.exit_code)


def vcsim(c, vsphere_json="output/vcsim/vsphere.json"):
    from imagebuilder.vcsim import simulation
    simulation.serve(Path(vsphere_json).absolute())


def cloudinit_keys(c):
    print(imagetest.ensure_keys(find_checkout()))


def image_cloudinit(c, vm, user_data=None, meta_data=None):
    imagetest.cloudinit_vm(find_checkout(), _knobs(), vm,
                           Path(user_data) if user_data else None,
                           Path(meta_data) if meta_data else None, on_task=TqdmTaskProgress())


def _knobs():
    from imagebuilder.config.knobs import Knobs
    return Knobs.from_env()


def _ssh(argv: list[str]) -> None:
    code = subprocess.call(argv)
    if code:
        raise Exit(code=code)


def image_ssh(c, build_dir, user=imagetest.DEFAULT_USER):
    _ssh(imagetest.local_ssh_argv(find_checkout(), Path(build_dir), user))


def image_ssh_vm(c, vm, user=imagetest.DEFAULT_USER):
    _ssh(imagetest.vm_ssh_argv(find_checkout(), _knobs(), vm, user))


def ova_assemble(c, build_dir, manifest_digest="sha256"):
    from imagebuilder.ova import AssembleOptions, assemble_from_packer
    from imagebuilder.ova.progress import TqdmByteProgress
    result = assemble_from_packer(Path(build_dir),
                                  AssembleOptions.from_env(manifest_algorithm=manifest_digest),
                                  TqdmByteProgress(), lambda text: print(text, file=sys.stderr))
    if result is not None:
        print(result.summary())


def ova_verify(c, ova, ca=None, provenance=False):
    from imagebuilder.ova.check import check_ova
    from imagebuilder.ova.progress import TqdmByteProgress
    print(check_ova(Path(ova), TqdmByteProgress(), ca_file=Path(ca) if ca else None,
                    provenance=provenance))


def deploy_ova(c, ova, name, folder=None, datastore=None, network=None, template=False,
               snapshot=None, from_library=False):
    from imagebuilder.ova.progress import TqdmByteProgress
    from imagebuilder.vsphere.deploy import deploy_ova as deploy
    from imagebuilder.vsphere.session import VSphereSettings
    settings = VSphereSettings.from_checkout(find_checkout(), _knobs())
    if from_library:  # deploy-ova --from-library LIB/ITEM NAME
        from imagebuilder.vsphere.library_deploy import deploy_from_library, split_library_item
        deploy_from_library(settings, *split_library_item(ova), name, folder=folder,
                            datastore=datastore, network=network, template=template,
                            snapshot=snapshot, report=print)
        return
    deploy(settings, Path(ova), name, folder=folder, datastore=datastore, network=network,
           template=template, snapshot=snapshot, progress=TqdmByteProgress(), report=print,
           on_task=TqdmTaskProgress())


def render(c, target, output):
    from imagebuilder.planning.inspect import render_target
    for path in render_target(target, output):
        print(path)


def deps_ova(c):
    from imagebuilder.running import tools as deps
    report = deps.check()
    print(report.text())
    if report.exit_code:
        raise Exit(code=report.exit_code)


def help_(c):
    from imagebuilder import api
    print(api.help_text())


def namespace() -> Collection:
    ns = Collection()
    os_names = find_checkout().os_names()
    for hv_name in HYPERVISORS:
        for os_name in os_names:
            target = Target(HYPERVISORS[hv_name], os_name)
            for action in ("build", "validate", "clean"):
                ns.add_task(target_task(target, action) if buildable(target)
                            else refused_task(target, action))
            if not HYPERVISORS[hv_name].base and buildable(target):  # base builds make no OVA
                ns.add_task(target_task(target, "publish"))
        ns.add_task(hypervisor_all_task(hv_name))
    body, options_help = _with_options(build_all, BUILD, several=True, extra=(
        inspect.Parameter("hypervisor", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default="local"),))
    ns.add_task(_make("build-all", "Build every OS of one hypervisor (default: local).", body,
                      dict(options_help, hypervisor=HYPERVISOR_HELP)))
    ns.add_task(_make("ova-assemble", "Make the OVA of a Packer build directory (what the "
                      "build's ova post-processor runs).", ova_assemble,
                      {"build-dir": "e.g. output/ubuntu-2204-kube-v1.37.1",
                       "manifest-digest": "sha256 (default), sha1 for old targets, sha512"}))
    ns.add_task(_make("ova-verify", "Check a finished OVA: member order, manifest digests, "
                      "descriptor, VMDKs, signature, .sha256.", ova_verify,
                      {"ova": "the .ova file",
                       "ca": "PEM CA file: the OVA must be signed by a chain leading to it",
                       "provenance": "check <name>.provenance.json names this OVA"}))
    ns.add_task(_make("deploy-ova", "Import an OVA into vCenter (placement from vsphere.json), "
                      "optionally snapshot it and mark it as a template.", deploy_ova,
                      {"ova": "the .ova file", "name": "the VM's name",
                       "folder": "VM folder (default: vsphere.json's)",
                       "datastore": "default: vsphere.json's", "network": "default: vsphere.json's",
                       "template": "mark the VM as a template afterwards",
                       "snapshot": "take a snapshot of this name afterwards",
                       "from-library": "the OVA argument is LIB/ITEM, a Content Library item"}))
    ns.add_task(_make("render", "Write the install files and variables a build would use, "
                      "without building (secrets redacted).", render,
                      {"target": "e.g. node-ova-vsphere-ubuntu-2404",
                       "output": "directory to write into"}))
    ns.add_task(_make("deps-ova", "Check Packer and its plugins, ansible, ovftool; "
                      "say what is missing.", deps_ova))
    ns.add_task(_make("vcsim-build", "Run builds against the embedded vCenter simulator "
                      "(starts and stops it), verify their OVAs and deploy them back as "
                      "templates.", vcsim_build,
                      {"target": "comma-separated targets (default: "
                       "build-node-ova-vsphere-clone-ubuntu-2204)", "jobs": BY_NAME["jobs"].help}))
    ns.add_task(_make("vcsim", "Run the vCenter simulator in the foreground and write a "
                      "vsphere.json for it.", vcsim,
                      {"vsphere-json": "where to write it (default output/vcsim/vsphere.json)"}))
    ns.add_task(_make("cloudinit-keys", "Generate cloudinit/id_rsa.capi (0600, git-ignored) "
                      "if it does not exist.", cloudinit_keys))
    ns.add_task(_make("image-cloudinit", "Give a vCenter VM cloud-init data: snapshot 'new', "
                      "guestinfo keys, snapshot 'cloudinit'.", image_cloudinit,
                      {"vm": "the VM's name", "user-data": "default cloudinit/user-data "
                       "(with the generated key)", "meta-data": "default cloudinit/meta-data"}))
    ns.add_task(_make("image-ssh", "ssh into a local build's VM (IP from vmrun).", image_ssh,
                      {"build-dir": "e.g. output/ubuntu-2204-kube-v1.37.1",
                       "user": "default capv"}))
    ns.add_task(_make("image-ssh-vm", "ssh into a vCenter VM (IP from its guest info).",
                      image_ssh_vm, {"vm": "the VM's name", "user": "default capv"}))
    ns.add_task(_make("help", "List the targets with one-line descriptions (like make help).",
                      help_))
    # None, not 1: invoke casts INVOKE_BUILD_JOBS to the default's type, and
    # int("abc") would end in a traceback inside invoke instead of our message.
    ns.configure({"build": {"jobs": None}})
    return ns


try:
    ns = namespace()
except ImageBuilderError as exc:  # invoke --list from outside a checkout, a bad IB_ROOT
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
