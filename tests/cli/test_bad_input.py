"""The bad-input corpus: every case exits 2 with one line per problem naming
file and field, starts no Packer, prints no secret and leaves nothing behind.

Each case runs through the command line of ``python -m imagebuilder`` (its
``main``, in-process, with the stand-in packer first on PATH, building for
real unless the case says ``--dry-run``); a sample runs as real subprocesses
through ``python -m imagebuilder`` and ``invoke``.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from helpers.common import BIN, REPO, VSPHERE, events, write_json

from imagebuilder.cli import main as cli
from imagebuilder.vsphere import session

#: Secrets planted in every case's configuration: none may ever be printed.
VC_PASSWORD = "vc-Secret-1234"
ENV_PASSWORD = "env-Secret-5678"
RHSM_PASSWORD = "rhsm-Secret-9012"
FLAG_PASSWORD = "flag-Secret-3456"
WINDOWS_PASSWORD = "Windows-Secret-7890"
PRIVATE_KEY_LINE = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + PRIVATE_KEY_LINE
               + "\n-----END OPENSSH PRIVATE KEY-----\n")
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly me@host\n"
BRACE_PASSWORD = "Brace-Secret-{{ .Pass }}"
SECRETS = (VC_PASSWORD, ENV_PASSWORD, RHSM_PASSWORD, FLAG_PASSWORD, WINDOWS_PASSWORD,
           PRIVATE_KEY_LINE, BRACE_PASSWORD, "Brace-Secret",
           "MyS3cretPassw0rd", "Rhsm-L1st-Secret", "S3cr3t-Number")

VSPHERE_TARGET = "node-ova-vsphere-ubuntu-2204"


def fifo(path: Path) -> None:
    os.mkfifo(path)


@dataclass
class Case:
    """One bad input: ``expect`` holds one substring per problem line, in any
    order; the run must report exactly that many problems."""

    id: str
    expect: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, object] = field(default_factory=dict)
    vsphere: dict[str, object] = field(default_factory=dict)
    target: str = VSPHERE_TARGET
    args: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


CASES = [
    # 4: PACKER_FLAGS
    Case("flags-only", ["PACKER_FLAGS: -only: the target chooses the builder"],
         env={"PACKER_FLAGS": "-only=vsphere-iso"}),
    Case("flags-except", ["PACKER_FLAGS: -except: the target chooses the builder"],
         env={"PACKER_FLAGS": "-except=ova"}),
    Case("flags-only-two-tokens", ["PACKER_FLAGS: -only: the target chooses"],
         env={"PACKER_FLAGS": "-only vsphere-iso-noexport"}),
    Case("flags-unknown", ["PACKER_FLAGS: -frobnicate: not a flag of 'packer build'"],
         env={"PACKER_FLAGS": "-frobnicate"}),
    Case("flags-validate-only-flag", ["PACKER_FLAGS: -syntax-only: not a flag of 'packer build'"],
         env={"PACKER_FLAGS": "-syntax-only"}),
    Case("flags-bare-var", ["PACKER_FLAGS: -var needs a value"],
         env={"PACKER_FLAGS": "-var", "FOREGROUND": "1", "DEBUG": "1"}),
    Case("flags-var-without-value", ["PACKER_FLAGS: -var needs name=value"],
         env={"PACKER_FLAGS": "-var headless"}),
    Case("flags-var-empty-name", ["PACKER_FLAGS: -var needs name=value"],
         env={"PACKER_FLAGS": "-var =x"}),
    Case("flags-on-error", ["PACKER_FLAGS: -on-error=explode: on-error is one of cleanup"],
         env={"PACKER_FLAGS": "-on-error=explode"}),
    Case("flags-parallel-builds", ["PACKER_FLAGS: -parallel-builds=many: parallel-builds is a "
                                   "whole number"],
         env={"PACKER_FLAGS": "-parallel-builds many"}),
    Case("flags-bool-value", ["PACKER_FLAGS: -force=maybe: force is true or false"],
         env={"PACKER_FLAGS": "-force=maybe"}),
    Case("flags-bool-value-2", ["PACKER_FLAGS: -timestamp-ui=yes: timestamp-ui is true or false"],
         env={"PACKER_FLAGS": "-timestamp-ui=yes"}),
    Case("flags-positional", ["PACKER_FLAGS: 'other.json' is not a flag"],
         env={"PACKER_FLAGS": "-force other.json"}),
    Case("flags-stray-word", ["PACKER_FLAGS: -var needs name=value",
                              "PACKER_FLAGS: word 3 is not a flag"],
         env={"PACKER_FLAGS": f"-var password {FLAG_PASSWORD}"}),
    Case("flags-unbalanced-quote", ["PACKER_FLAGS: cannot split it like a shell would"],
         env={"PACKER_FLAGS": f'-var password={FLAG_PASSWORD} -var "headless=false'}),
    Case("flags-typo-variable", ["PACKER_FLAGS: memroy: unknown variable; did you mean 'memory'?"],
         env={"PACKER_FLAGS": "-var memroy=1024"}),
    Case("flags-var-file-missing", ["{d}/gone.json: var file not found"],
         env={"PACKER_FLAGS": "-var-file={d}/gone.json"}),
    Case("flags-several", ["-only: the target", "-frobnicate: not a flag", "-force=maybe"],
         env={"PACKER_FLAGS": "-only=vsphere-iso -frobnicate -force=maybe"}),
    Case("packer-color", ["environment: PACKER_COLOR: 'maybe' is not true or false"],
         env={"PACKER_COLOR": "maybe"}),
    # 5, 8: var files that cannot be read
    Case("utf16", ["{d}/v.json: is UTF-16 text; Packer reads UTF-8"],
         files={"v.json": json.dumps({"cpu": "2"}).encode("utf-16")},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("utf16-no-bom", ["{d}/v.json: is UTF-16 text"],
         files={"v.json": json.dumps({"cpu": "2"}).encode("utf-16-le")},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("latin1", ["{d}/v.json: not UTF-8 (byte 0xe9 on line 2"],
         files={"v.json": '{\n"build_name_extra": "caf\u00e9"}'.encode("latin-1")},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("utf8-bom", ["{d}/v.json: starts with a byte order mark"],
         files={"v.json": b"\xef\xbb\xbf" + json.dumps({"cpu": "2"}).encode()},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("deeply-nested", ["{d}/v.json: nested too deeply to be a var file"],
         files={"v.json": nested(200_000)}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("nested-value", ["{d}/v.json: cpu: " + "[" * 57 + "... is not a whole number"],
         files={"v.json": nested(500).replace(b'"a"', b'"cpu"')},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("fifo", ["{d}/pipe.json: is a FIFO (named pipe), not a file"],
         setup=lambda d: fifo(d / "pipe.json"), env={"PACKER_VAR_FILES": "{d}/pipe.json"}),
    Case("fifo-in-flags", ["{d}/pipe.json: is a FIFO (named pipe), not a file"],
         setup=lambda d: fifo(d / "pipe.json"), env={"PACKER_FLAGS": "-var-file {d}/pipe.json"}),
    Case("directory", ["{d}/dir.json: is a directory, not a file"],
         setup=lambda d: (d / "dir.json").mkdir(), env={"PACKER_VAR_FILES": "{d}/dir.json"}),
    Case("device", ["/dev/null: is a device, not a file"],
         env={"PACKER_VAR_FILES": "/dev/null"}),
    Case("too-big", ["{d}/big.json: larger than 16 MiB"],
         setup=lambda d: os.truncate(d / "big.json", 17 * 1024 * 1024),
         files={"big.json": b""}, env={"PACKER_VAR_FILES": "{d}/big.json"}),
    Case("invalid-json", ["{d}/v.json: not valid JSON (line 1, column 13"],
         files={"v.json": '{"cpu": "2",,}'}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("json-array", ["{d}/v.json: a var file must hold a JSON object"],
         files={"v.json": "[1, 2]"}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("var-file-missing", ["{d}/gone.json: var file not found (named in PACKER_VAR_FILES)"],
         env={"PACKER_VAR_FILES": "{d}/gone.json"}),
    Case("var-file-space-unquoted", ["{d}/my: var file not found (named in PACKER_VAR_FILES, "
                                     "which is split at spaces: '{d}/my vars.json' exists; quote"],
         files={"my vars.json": {"cpu": "2"}}, env={"PACKER_VAR_FILES": "{d}/my vars.json"}),
    Case("var-files-unbalanced-quote", ["PACKER_VAR_FILES: cannot split it"],
         env={"PACKER_VAR_FILES": '"{d}/a.json'}),
    Case("os-file-latin1", ["ova/photon-5.json: not UTF-8"], target="node-ova-local-photon-5",
         setup=lambda d: (d.parent / "checkout/ova/photon-5.json").write_bytes(
             b'{"build_name": "phot\xe9n"}')),
    # 9: messages
    Case("empty-key", ["{d}/v.json: a variable with an empty name ''; remove it"],
         files={"v.json": {"": "x"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("typo-variable", ["{d}/v.json: vcenter_sever: unknown variable; did you mean "
                           "'vcenter_server'?"],
         files={"v.json": {"vcenter_sever": "vc.example.com"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("bad-file-no-false-empty-lines", ["{d}/v.json: not valid JSON"],
         vsphere={"vcenter_server": "", "datastore": ""},
         files={"v.json": "{"}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("bad-key-file-hides-nothing", ["SSH_PUBLIC_KEY_FILE: {d}/id: holds a private key",
                                        "ova/vsphere.json: datastore: is empty",
                                        "PACKER_FLAGS: -only"],
         vsphere={"datastore": ""}, files={"id": PRIVATE_KEY},
         env={"SSH_PUBLIC_KEY_FILE": "{d}/id", "PACKER_FLAGS": "-only=vsphere-iso"}),
    # 7: vsphere.json's rules, wherever the settings come from
    Case("datastore-bool-in-user-file", ["{d}/v.json: datastore: true is not a string"],
         files={"v.json": {"datastore": True}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("cluster-number-in-user-file", ["{d}/v.json: cluster: 5 is not a string"],
         files={"v.json": {"cluster": 5}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("server-null-in-user-file", ["{d}/v.json: vcenter_server: null is not a string"],
         files={"v.json": {"vcenter_server": None}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("datastore-bool-in-flags-file", ["{d}/v.json: datastore: true is not a string"],
         files={"v.json": {"datastore": True}}, env={"PACKER_FLAGS": "-var-file={d}/v.json"}),
    Case("datastore-empty-flag", ["PACKER_FLAGS: datastore: is empty; set it"],
         env={"PACKER_FLAGS": "-var datastore="}),
    Case("vsphere-missing-network", ["ova/vsphere.json: network: is empty; set it"],
         vsphere={"network": None}),
    Case("cluster-and-host", ["ova/vsphere.json: cluster/host: set exactly one"],
         vsphere={"host": "esx-1"}),
    Case("linked-clone-not-bool", ["ova/vsphere.json: linked_clone: 'sure' is not a boolean"],
         vsphere={"linked_clone": "sure"}, target="node-ova-vsphere-clone-ubuntu-2204"),
    # 6: secrets
    Case("password-list", ["ova/vsphere.json: password: must be a string (its value is not "
                           "shown"], vsphere={"password": ["MyS3cretPassw0rd"]}),
    Case("password-number-user-file", ["{d}/v.json: password: must be a string (its value"],
         files={"v.json": {"password": 12345678}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("rhsm-pass-list", ["{d}/v.json: rhsm_pass: must be a string, boolean, number or null "
                            "(its value is not shown"],
         files={"v.json": {"rhsm_pass": ["Rhsm-L1st-Secret"]}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("misspelt-password-object", ["{d}/v.json: pasword: must be a string",
                                      "{d}/v.json: pasword: unknown variable"],
         files={"v.json": {"pasword": {"x": "S3cr3t-Number"}}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("public-key-is-private", ["SSH_PUBLIC_KEY_FILE: {d}/id_ed25519: holds a private key"],
         files={"id_ed25519": PRIVATE_KEY}, env={"SSH_PUBLIC_KEY_FILE": "{d}/id_ed25519"}),
    Case("public-key-garbage", ["SSH_PUBLIC_KEY_FILE: {d}/k.pub: no OpenSSH public key"],
         files={"k.pub": "hello\n"}, env={"SSH_PUBLIC_KEY_FILE": "{d}/k.pub"}),
    Case("public-key-two-lines", ["SSH_PUBLIC_KEY_FILE: {d}/k.pub: 2 lines"],
         files={"k.pub": PUBLIC_KEY * 2}, env={"SSH_PUBLIC_KEY_FILE": "{d}/k.pub"}),
    Case("public-key-quote", ["SSH_PUBLIC_KEY_FILE: {d}/k.pub: no OpenSSH public key"],
         files={"k.pub": PUBLIC_KEY.replace("me@host", "me'; reboot; '")},
         env={"SSH_PUBLIC_KEY_FILE": "{d}/k.pub"}),
    Case("public-key-missing", ["SSH_PUBLIC_KEY_FILE: {d}/gone.pub does not exist"],
         env={"SSH_PUBLIC_KEY_FILE": "{d}/gone.pub"}),
    Case("public-key-directory", ["SSH_PUBLIC_KEY_FILE: {d} is not a regular file"],
         env={"SSH_PUBLIC_KEY_FILE": "{d}"}),
    Case("public-key-fifo", ["SSH_PUBLIC_KEY_FILE: {d}/k.pub is not a regular file"],
         setup=lambda d: fifo(d / "k.pub"), env={"SSH_PUBLIC_KEY_FILE": "{d}/k.pub"}),
    Case("private-key-missing", ["SSH_PRIVATE_KEY_FILE: {d}/id does not exist"],
         env={"SSH_PRIVATE_KEY_FILE": "{d}/id"}),
    Case("rhel-without-rhsm", ["environment: RHSM_USER: RHEL builds register",
                               "environment: RHSM_PASS: RHEL builds register"],
         target="node-ova-vsphere-rhel-9", env={"RHSM_USER": "", "RHSM_PASS": ""}),
    # 11: values that pass the schema but cannot work
    Case("cpu-zero", ["{d}/v.json: cpu: 0 is below the minimum of 1 CPU"],
         files={"v.json": {"cpu": 0}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("cpu-cores-zero", ["PACKER_FLAGS: cpu_cores: 0 is below the minimum of 1"],
         env={"PACKER_FLAGS": "-var cpu_cores=0"}),
    Case("memory-one", ["{d}/v.json: memory: 1 is below the minimum of 1024 MiB of memory for "
                        "ubuntu installs"],
         files={"v.json": {"memory": "1"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("memory-rhel", ["{d}/v.json: memory: 1024 is below the minimum of 1536 MiB"],
         target="node-ova-vsphere-rhel-9",
         files={"v.json": {"memory": "1024"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("s3-ceph-without-endpoint", ["{d}/v.json: additional_s3_ceph: Ceph RGW has no default "
                                      "endpoint; set additional_s3_endpoint"],
         files={"v.json": {"load_additional_components": "true", "additional_s3": "true",
                           "additional_s3_ceph": "true", "additional_s3_bucket": "b",
                           "additional_s3_object": "o"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("disk-zero", ["{d}/v.json: disk_size: 0 is below the minimum of 5120 MiB of disk"],
         files={"v.json": {"disk_size": 0}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("disk-below-rhel-installer", ["{d}/v.json: disk_size: 8192 is below the minimum of "
                                       "10240 MiB of disk for rhel installs"],
         target="node-ova-vsphere-rhel-9",
         files={"v.json": {"disk_size": "8192"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("disk-below-flatcar-installer", ["{d}/v.json: disk_size: 6000 is below the minimum of "
                                          "8192 MiB of disk for flatcar installs"],
         target="node-ova-vsphere-flatcar",
         files={"v.json": {"disk_size": "6000"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("series-mismatch", ["{d}/v.json: kubernetes_series: v1.30 does not match "
                             "kubernetes_semver v1.37.1 (set in packer/config/kubernetes.json); "
                             "set it to v1.37"],
         files={"v.json": {"kubernetes_series": "v1.30"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("semver-without-series", ["packer/config/kubernetes.json: kubernetes_series: v1.37 "
                                   "does not match kubernetes_semver v1.31.4 (set in "
                                   "{d}/v.json); set it to v1.31",
                                   "packer/config/kubernetes.json: kubernetes_deb_version: "
                                   "1.37.1-1.1 is not a package of kubernetes_semver v1.31.4; "
                                   "set it to 1.31.4-1.1 (or the package revision you want)"],
         files={"v.json": {"kubernetes_semver": "v1.31.4"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("flatcar-channel", ["environment: FLATCAR_CHANNEL: 'stable; reboot' is not a Flatcar "
                             "release name"],
         target="node-ova-vsphere-flatcar", env={"FLATCAR_CHANNEL": "stable; reboot"}),
    Case("flatcar-version", ["environment: FLATCAR_VERSION: '3975.2.0<enter>reboot' is not a "
                             "Flatcar release name"],
         target="node-ova-vsphere-flatcar", env={"FLATCAR_VERSION": "3975.2.0<enter>reboot"}),
    Case("flatcar-version-in-file", ["{d}/v.json: flatcar_version: '../../x' is not a Flatcar"],
         target="node-ova-local-flatcar",
         files={"v.json": {"flatcar_version": "../../x"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("vmx-version-below-minimum", ["{d}/v.json: vmx_version: 15 is below the minimum 18"],
         target="node-ova-local-rhel-9",
         files={"v.json": {"vmx_version": "15"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("vmx-source-missing", ["{d}/vmx.json: source_path: {d}/gone.vmx does not exist"],
         target="node-ova-local-vmx-ubuntu-2204",
         files={"vmx.json": {"source_path": "{d}/gone.vmx"}},
         env={"PACKER_VAR_FILES": "{d}/vmx.json"}),
    # 5: where output goes
    Case("output-dir-is-file", ["environment: IB_OUTPUT_DIR={d}/out: not a directory"],
         files={"out": "x"}, env={"IB_OUTPUT_DIR": "{d}/out"}),
    Case("output-dir-under-file", ["environment: IB_OUTPUT_DIR={d}/out/sub: not a directory "
                                   "({d}/out is a file)"],
         files={"out": "x"}, env={"IB_OUTPUT_DIR": "{d}/out/sub"}),
    Case("output-dir-unwritable", ["environment: IB_OUTPUT_DIR=/sys/ib-output: cannot write in "
                                   "/sys"],
         env={"IB_OUTPUT_DIR": "/sys/ib-output"}),
    # 9: -all says each problem once, naming the targets it affects
    Case("all-targets-once", ["ova/vsphere.json: datastore: is empty; set it [all 17 targets]"],
         vsphere={"datastore": ""}, target="", args=("--all", "--hypervisor", "vsphere")),
    Case("two-targets-one-bad", ["environment: RHSM_USER: RHEL builds register with Red Hat "
                                 "Subscription Manager; export RHSM_USER "
                                 "[build-node-ova-local-rhel-9]"],
         target="node-ova-local-ubuntu-2204", args=("node-ova-local-rhel-9",),
         env={"RHSM_USER": ""}),
    # issue 16, 1: values that would reach shell text, host names or paths
    Case("ssh-username-shell", ["{d}/v.json: ssh_username: 'builder; reboot' is not a Linux "
                                "user name"],
         files={"v.json": {"ssh_username": "builder; reboot"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("ssh-username-dash", ["PACKER_FLAGS: ssh_username: '-oProxyCommand=x' is not a Linux"],
         env={"PACKER_FLAGS": "-var ssh_username=-oProxyCommand=x"}),
    Case("ssh-public-key-in-file", ["{d}/v.json: ssh_public_key: not one OpenSSH public key "
                                    "line"],
         files={"v.json": {"ssh_public_key": PUBLIC_KEY.strip().replace("me@host",
                                                                        "x'; reboot; '")}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("build-name-newline", ["{d}/v.json: build_name: 'node\\ninstance-id: x' is not a host "
                                "name"],
         files={"v.json": {"build_name": "node\ninstance-id: x"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("build-name-quote", ["{d}/v.json: build_name: \"o'brien\" is not a host name"],
         files={"v.json": {"build_name": "o'brien"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("distro-version-traversal", ["{d}/v.json: distro_version: '../../../tmp' cannot be a "
                                      "directory name"],
         target="node-ova-local-rhel-9",
         files={"v.json": {"distro_version": "../../../tmp"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("secret-with-braces-flag", ["PACKER_FLAGS: ssh_password: holds '{{', which Packer "
                                     "reads as the start of a template"],
         env={"PACKER_FLAGS": f"-var 'ssh_password={BRACE_PASSWORD}'"}),
    Case("secret-with-braces-file", ["{d}/v.json: remote_password: holds '{{'"],
         files={"v.json": {"remote_password": BRACE_PASSWORD}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("rhsm-pass-with-braces", ["environment: RHSM_PASS: holds '{{'"],
         env={"RHSM_PASS": BRACE_PASSWORD}),
    # issue 16, 5: where output goes
    Case("output-dir-dangling-link", ["environment: IB_OUTPUT_DIR={d}/out: {d}/out is a "
                                      "dangling symbolic link"],
         setup=lambda d: (d / "out").symlink_to(d / "gone"), env={"IB_OUTPUT_DIR": "{d}/out"}),
    # issue 16, 6: the OVA's inputs and the VM's name, before the VM
    Case("ovf-properties-fifo", ["environment: OVF_CUSTOM_PROPERTIES={d}/p.json: is a FIFO"],
         setup=lambda d: fifo(d / "p.json"), env={"OVF_CUSTOM_PROPERTIES": "{d}/p.json"}),
    Case("ovf-properties-directory", ["environment: OVF_CUSTOM_PROPERTIES={d}: is a directory"],
         env={"OVF_CUSTOM_PROPERTIES": "{d}"}),
    Case("ovf-properties-device", ["environment: OVF_CUSTOM_PROPERTIES=/dev/zero: is a device"],
         env={"OVF_CUSTOM_PROPERTIES": "/dev/zero"}),
    Case("ovf-properties-missing", ["environment: OVF_CUSTOM_PROPERTIES={d}/gone.json: custom "
                                    "properties file not found"],
         env={"OVF_CUSTOM_PROPERTIES": "{d}/gone.json"}),
    Case("ovf-properties-too-big", ["environment: OVF_CUSTOM_PROPERTIES={d}/p.json: larger "
                                    "than 1 MiB"],
         files={"p.json": b"{" + b" " * (2 * 1024 * 1024) + b"}"},
         env={"OVF_CUSTOM_PROPERTIES": "{d}/p.json"}),
    Case("ovf-properties-array", ["environment: OVF_CUSTOM_PROPERTIES={d}/p.json: must hold "
                                  "one JSON object"],
         files={"p.json": [1, 2]}, env={"OVF_CUSTOM_PROPERTIES": "{d}/p.json"}),
    Case("ovf-properties-not-json", ["environment: OVF_CUSTOM_PROPERTIES={d}/p.json: not "
                                     "UTF-8 JSON"],
         files={"p.json": "{'a': 1}"}, env={"OVF_CUSTOM_PROPERTIES": "{d}/p.json"}),
    Case("ovf-properties-reserved", ["environment: OVF_CUSTOM_PROPERTIES={d}/p.json: "
                                     "DISTRO_NAME: the build sets this property"],
         files={"p.json": {"DISTRO_NAME": "mine", "OWNER": "team-a"}},
         env={"OVF_CUSTOM_PROPERTIES": "{d}/p.json"}),
    Case("ovf-properties-object-value", ["environment: OVF_CUSTOM_PROPERTIES={d}/p.json: "
                                         "OWNER: dict is not a scalar"],
         files={"p.json": {"OWNER": {"team": "a"}}},
         env={"OVF_CUSTOM_PROPERTIES": "{d}/p.json"}),
    Case("source-date-epoch", ["environment: SOURCE_DATE_EPOCH"],
         env={"SOURCE_DATE_EPOCH": "yesterday"}),
    Case("vm-name-empty", ["{d}/v.json: vm_name: is empty; a VM needs a name"],
         files={"v.json": {"vm_name": " "}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("vm-name-slash", ["{d}/v.json: vm_name: 'nodes/ubuntu' cannot be a VM's name"],
         files={"v.json": {"vm_name": "nodes/ubuntu"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("vm-name-dotdot", ["PACKER_FLAGS: vm_name: '..' cannot be a VM's name"],
         env={"PACKER_FLAGS": "-var vm_name=.."}),
    Case("vm-name-too-long", ["{d}/v.json: vm_name: 'nnnnnnnnnnnnnnnnnnnn'... is 81 "
                              "characters long; vCenter takes at most 80"],
         files={"v.json": {"vm_name": "n" * 81}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("build-version-traversal", ["{d}/v.json: build_version: '../../etc' cannot be a VM's "
                                     "name: no '/', '\\', '.' or '..' (it makes the VM's "
                                     "name '../../etc')"],
         files={"v.json": {"build_version": "../../etc"}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("vm-name-local", ["{d}/v.json: vm_name: '../escape' cannot be a VM's name"],
         target="node-ova-local-ubuntu-2204",
         files={"v.json": {"vm_name": "../escape"}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    # issue 16, 8: messages name the value as its file spells it
    Case("insecure-connection-null", ["{d}/v.json: insecure_connection: null is not a "
                                      "boolean"],
         files={"v.json": {"insecure_connection": None}},
         env={"PACKER_VAR_FILES": "{d}/v.json"}),
    Case("create-snapshot-number", ["{d}/v.json: create_snapshot: 1 is not a boolean"],
         files={"v.json": {"create_snapshot": 1}}, env={"PACKER_VAR_FILES": "{d}/v.json"}),
    # the same corpus entries, as dry runs: the same lines, nothing run
    Case("dry-run-flags-only", ["PACKER_FLAGS: -only: the target chooses the builder"],
         env={"PACKER_FLAGS": "-only=vsphere-iso"}, args=("--dry-run",)),
    Case("dry-run-private-key", ["SSH_PUBLIC_KEY_FILE: {d}/id: holds a private key"],
         files={"id": PRIVATE_KEY}, env={"SSH_PUBLIC_KEY_FILE": "{d}/id"}, args=("--dry-run",)),
    Case("dry-run-password-list", ["ova/vsphere.json: password: must be a string"],
         vsphere={"password": ["MyS3cretPassw0rd"]}, args=("--dry-run",)),
    Case("validate-unknown-flag", ["PACKER_FLAGS: -frobnicate: not a flag of 'packer validate'"],
         env={"PACKER_FLAGS": "-frobnicate"}, args=("--validate",)),
]


def fill(text: str, d: Path) -> str:
    return text.replace("{d}", str(d))


def prepare(case: Case, checkout, tmp_path: Path, monkeypatch) -> Path:
    """Write the case's files and vsphere.json, set its environment; returns its input dir."""
    d = tmp_path / "in"
    d.mkdir()
    vsphere = {**VSPHERE, "vcenter_server": "127.0.0.1:9", "password": VC_PASSWORD,
               **case.vsphere}
    write_json(checkout.ova_dir / "vsphere.json", {k: v for k, v in vsphere.items()
                                                   if v is not None})
    for name, content in case.files.items():
        path = d / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(fill(content, d))
        else:
            path.write_text(fill(json.dumps(content), d))
    if case.setup:
        case.setup(d)
    env = {"VSPHERE_PASSWORD": ENV_PASSWORD, "RHSM_USER": "someone", "RHSM_PASS": RHSM_PASSWORD,
           "WINDOWS_ADMIN_PASSWORD": WINDOWS_PASSWORD}
    env.update(case.env)
    for key, value in env.items():
        monkeypatch.setenv(key, fill(value, d))
    return d


def argv_of(case: Case) -> list[str]:
    args = list(case.args)
    action = "build"
    if "--validate" in args:
        args.remove("--validate")
        action = "validate"
    return [action] + ([case.target] if case.target else []) + args


def check_outcome(case: Case, code: int, out: str, err: str, d: Path, checkout,
                  standin: Path) -> None:
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("error: "), err
    problems = [line[4:] for line in lines if line.startswith("  - ")]
    if problems:
        assert "nothing was started" in lines[0], err
    else:  # one problem found before the configuration was read: one line
        assert len(lines) == 1, err
        problems = [lines[0][len("error: "):]]
    assert len(problems) == len(case.expect), err
    for expected in case.expect:
        matching = [p for p in problems if fill(expected, d) in p]
        assert len(matching) == 1, (fill(expected, d), err)
    assert "Traceback" not in out + err
    for secret in SECRETS:
        assert secret not in out + err
    assert events(standin) == []  # no packer started
    assert not (checkout.root / "output").exists()  # nothing left behind


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, checkout, standin, tmp_path, monkeypatch, capsys):
    d = prepare(case, checkout, tmp_path, monkeypatch)
    code = cli.main(argv_of(case))
    out, err = capsys.readouterr()
    check_outcome(case, code, out, err, d, checkout, standin)
    if case.id.startswith("output-dir"):
        assert not Path(fill(case.env["IB_OUTPUT_DIR"], d)).is_dir()


def test_corpus_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


#: A sample of the corpus through the real front ends, as a user runs them.
FRONT_END_SAMPLE = ("flags-only", "utf16", "fifo", "deeply-nested", "public-key-is-private",
                    "password-list", "datastore-bool-in-user-file", "memory-one",
                    "all-targets-once", "output-dir-is-file", "flags-bare-var")


@pytest.mark.parametrize("front_end", ["python -m imagebuilder", "invoke"])
@pytest.mark.parametrize("case_id", FRONT_END_SAMPLE)
def test_bad_input_through_front_ends(case_id, front_end, checkout, standin, tmp_path,
                                      monkeypatch):
    case = next(c for c in CASES if c.id == case_id)
    d = prepare(case, checkout, tmp_path, monkeypatch)
    if front_end == "invoke":
        task = ("build-node-ova-vsphere-all" if case.args[:1] == ("--all",)
                else f"build-{case.target}")
        argv = [str(BIN / "invoke"), task] + [a for a in case.args if a == "--dry-run"]
    else:
        argv = [sys.executable, "-m", "imagebuilder", *argv_of(case)]
    result = subprocess.run(argv, cwd=REPO, env=dict(os.environ), capture_output=True,
                            text=True, timeout=300)
    check_outcome(case, result.returncode, result.stdout, result.stderr, d, checkout, standin)


# 5: a vCenter address where no vCenter answers. Only 127.0.0.1 is used: the
# network is never probed.

class _NotVSphere(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def local_server(tls_dir: Path | None = None) -> Iterator[int]:
    """A tiny web server on 127.0.0.1 that is not a vCenter; HTTPS with ``tls_dir``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotVSphere)
    if tls_dir is not None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(tls_dir / "key.pem"),
                        "-out", str(tls_dir / "cert.pem")], check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_port() -> Iterator[int]:
    """A port whose listen queue is full: connections get no answer, as
    from a host that drops packets (without sending any off this machine)."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())
        yield server.getsockname()[1]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind,expected", [
    ("closed port", "ova/vsphere.json: vcenter_server: cannot connect to 127.0.0.1:{port} "
                    "(Connection refused)"),
    ("no answer", "ova/vsphere.json: vcenter_server: no answer from 127.0.0.1:{port} within 1s "
                  "(unreachable or filtered)"),
    ("plain http", "ova/vsphere.json: vcenter_server: 127.0.0.1:{port} does not speak TLS"),
    ("https, not vSphere", "ova/vsphere.json: vcenter_server: 127.0.0.1:{port} answers, but "
                           "not as a vCenter or ESXi"),
])
def test_no_vcenter_at_the_address(kind, expected, checkout, standin, tmp_path, monkeypatch,
                                   capsys):
    monkeypatch.setattr(session, "CONNECT_TIMEOUT", 1.0)
    servers = {"closed port": nullcontext(unused_port()), "no answer": silent_port(),
               "plain http": local_server(), "https, not vSphere": local_server(tmp_path)}
    with servers[kind] as port:
        case = Case("vcenter", [expected.format(port=port)],
                    vsphere={"vcenter_server": f"127.0.0.1:{port}"})
        d = prepare(case, checkout, tmp_path, monkeypatch)
        code = cli.main(argv_of(case))
    out, err = capsys.readouterr()
    assert "vSphere preflight: 1 problem; nothing was started" in err
    check_outcome(case, code, out, err, d, checkout, standin)
    assert f"build-{VSPHERE_TARGET}: ova/vsphere.json" in err


def test_no_vcenter_is_said_once_for_every_build(checkout, standin, tmp_path, monkeypatch, capsys):
    port = unused_port()
    case = Case("vcenter-all", [f"cannot connect to 127.0.0.1:{port}"], target="",
                vsphere={"vcenter_server": f"127.0.0.1:{port}"},
                args=(f"build-{VSPHERE_TARGET}", "build-node-ova-vsphere-photon-5"))
    d = prepare(case, checkout, tmp_path, monkeypatch)
    code = cli.main(argv_of(case))
    out, err = capsys.readouterr()
    check_outcome(case, code, out, err, d, checkout, standin)
    assert f"[build-{VSPHERE_TARGET}, build-node-ova-vsphere-photon-5]" in err


def test_no_vcenter_names_the_file_that_set_it(checkout, standin, tmp_path, monkeypatch,
                                              capsys):
    """The message names the var file that set vcenter_server (here PACKER_VAR_FILES'),
    not ova/vsphere.json (issue 16, item 8)."""
    port = unused_port()
    case = Case("vcenter-in-user-file", [f"{{d}}/v.json: vcenter_server: cannot connect to "
                                         f"127.0.0.1:{port}"],
                files={"v.json": {"vcenter_server": f"127.0.0.1:{port}"}},
                env={"PACKER_VAR_FILES": "{d}/v.json"})
    d = prepare(case, checkout, tmp_path, monkeypatch)
    code = cli.main(argv_of(case))
    out, err = capsys.readouterr()
    check_outcome(case, code, out, err, d, checkout, standin)
    assert "ova/vsphere.json" not in err


@pytest.mark.parametrize("name, expected", [
    ("", "--name: is empty; a VM needs a name"),
    ("nodes/ubuntu", "--name: 'nodes/ubuntu' cannot be a VM's name"),
    ("..", "--name: '..' cannot be a VM's name"),
    ("n" * 81, "is 81 characters long; vCenter takes at most 80"),
])
def test_a_library_deploy_refuses_a_name_before_vcenter(name, expected, checkout, standin,
                                                        tmp_path, monkeypatch):
    """``deploy-ova --from-library LIB/ITEM NAME``: a name vCenter cannot take is exit 2
    with one line, before any call to vCenter (none answers at 127.0.0.1:9 here)."""
    prepare(Case("deploy", []), checkout, tmp_path, monkeypatch)
    result = subprocess.run([str(BIN / "invoke"), "deploy-ova", "--from-library", "lib/item",
                             name], cwd=REPO, env=dict(os.environ), capture_output=True,
                            text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "cannot connect" not in result.stderr and VC_PASSWORD not in result.stderr
    assert not (checkout.root / "output").exists()
