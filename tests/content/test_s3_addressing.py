"""additional_s3_ceph and the addressing of S3 requests (issue 8, no silent ignores).

Upstream fetches the additional S3 object with amazon.aws.s3_object (boto3);
we sign the request with our own module (roles/s3_download). The module must
send the request to the URL boto3 would: the addressing decision is compared
with the URL real botocore builds for the client amazon.aws configures (no
request leaves the process), and the path-style branch is run for real,
through the role, against an S3-compatible server on 127.0.0.1 (moto).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import REPO, write_json

ROLES = REPO / "packer" / "ansible" / "roles"
MODULE = ROLES / "s3_download" / "library" / "imagebuilder_s3_get.py"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
OBJECT = b"#!/bin/sh\necho 'from the bucket'\n"


def _module():
    spec = importlib.util.spec_from_file_location("imagebuilder_s3_get", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Sent(Exception):
    """Raised in place of sending: carries the URL botocore would request."""


def boto3_url(endpoint: str, bucket: str, key: str, region: str, ceph: bool) -> str:
    """The URL of the GET amazon.aws.s3_object makes for these options: its own
    client options (s3_extra_params), a real botocore client, the request stopped
    just before it is sent."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    s3 = pytest.importorskip("ansible_collections.amazon.aws.plugins.module_utils.s3")

    params = s3.s3_extra_params({"endpoint_url": endpoint or None, "ceph": ceph,
                                 "dualstack": False}, sigv4=True)
    kwargs = {}
    if params.get("endpoint"):
        kwargs["endpoint_url"] = params["endpoint"]
    if "use_ssl" in params:
        kwargs["use_ssl"] = params["use_ssl"]
    if "config" in params:
        kwargs["config"] = Config(**params["config"])
    client = boto3.client("s3", region_name=region, aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="example", **kwargs)

    def stop(request, **_):
        raise _Sent(request.url)

    client.meta.events.register("before-send.s3.GetObject", stop)
    with pytest.raises(_Sent) as sent:
        client.get_object(Bucket=bucket, Key=key)
    return str(sent.value)


ENDPOINTS = ["https://rgw.example.com", "http://rgw.example.com:7480/", "http://127.0.0.1:9000", ""]
BUCKETS = ["components", "my.bucket", "Caps", "ab", "a-b-c"]


#: s3_object refuses ceph without an endpoint: test_ceph_needs_an_endpoint.
CASES = [(e, c) for e in ENDPOINTS for c in (False, True) if e or not c]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
@pytest.mark.parametrize("bucket", BUCKETS)
@pytest.mark.parametrize(("endpoint", "ceph"), CASES)
def test_addressed_as_boto3_addresses_it(endpoint, bucket, region, ceph):
    key = "dir/tool v1~.sh"
    ours = _module().object_url(endpoint, bucket, key, region, ceph)
    assert ours == boto3_url(endpoint, bucket, key, region, ceph)


def test_every_endpoint_is_path_style_and_aws_itself_virtual_hosted():
    """What the comparison above covers, spelled out."""
    url = _module().object_url
    assert url("https://rgw.example.com", "components", "a/b") == "https://rgw.example.com/components/a/b"
    assert url("", "components", "a/b", "eu-west-1") == "https://components.s3.eu-west-1.amazonaws.com/a/b"
    assert url("", "my.bucket", "a/b", "eu-west-1") == "https://s3.eu-west-1.amazonaws.com/my.bucket/a/b"


def test_ceph_needs_an_endpoint():
    """amazon.aws.s3_object: required_if ceph -> endpoint_url; ours refuses the same."""
    with pytest.raises(ValueError, match="ceph is true but no endpoint"):
        _module().object_url("", "components", "a/b", "us-east-1", ceph=True)


# --- through the role, against a real S3-compatible server -----------------------------

@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("moto")
    from helpers.chroot import LocalS3

    with LocalS3() as server:
        server.put("tools/from-s3.sh", OBJECT)
        yield server


def run_role(tmp_path: Path, variables: dict, secrets: dict) -> subprocess.CompletedProcess:
    """load_additional_components' S3 task file on this machine (connection local), the
    keys in ansible-playbook's environment as Packer's ansible_env_vars pass them."""
    playbook = tmp_path / "s3.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: The S3 object\n      ansible.builtin.include_role:\n"
        "        name: load_additional_components\n        tasks_from: s3\n")
    extra = write_json(tmp_path / "vars.json", variables)
    env = {**os.environ, **secrets, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_ROLES_PATH": str(ROLES),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"), "ANSIBLE_VERBOSITY": "3"}
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           "-e", f"@{extra}", str(playbook)],
                          capture_output=True, text=True, env=env, timeout=300)


def _vars(s3, dest: Path, ceph: str, endpoint: str | None = None) -> dict:
    return {"additional_s3": "true", "additional_s3_ceph": ceph,
            "additional_s3_endpoint": s3.url if endpoint is None else endpoint,
            "additional_s3_bucket": s3.bucket, "additional_s3_object": "tools/from-s3.sh",
            "additional_s3_destination_path": str(dest)}


@pytest.mark.parametrize("ceph", ["true", "false"])
def test_path_style_fetch_with_and_without_ceph(s3, tmp_path, ceph):
    dest = tmp_path / "out" / "from-s3.sh"
    keys = {"ADDITIONAL_S3_ACCESS": s3.access_key, "ADDITIONAL_S3_SECRET": s3.secret_key}
    run = run_role(tmp_path, _vars(s3, dest, ceph), keys)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert dest.read_bytes() == OBJECT
    out = run.stdout + run.stderr
    assert s3.access_key not in out and s3.secret_key not in out


def test_ceph_without_endpoint_stops_the_build(s3, tmp_path):
    dest = tmp_path / "out" / "from-s3.sh"
    run = run_role(tmp_path, _vars(s3, dest, "true", endpoint=""), {})
    assert run.returncode != 0
    assert "an endpoint when ceph is true" in run.stdout, run.stdout[-3000:]
    assert not dest.exists()
