#!/usr/bin/python
"""Ansible module: fetch one object from S3-compatible storage.

Standard library only (no boto3 on the node, nothing to install and purge):
a GET signed with AWS Signature Version 4, addressed as upstream's
amazon.aws.s3_object (boto3) addresses it; see ``object_url``. The keys are
module arguments marked no_log, so Ansible
censors them in every result and log line; error messages carry the HTTP
status and S3's error code, never the response body (S3 echoes the access
key in some error bodies).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: imagebuilder_s3_get
short_description: Fetch one object from S3-compatible storage (SigV4)
options:
  endpoint: {description: "URL of the S3 endpoint, e.g. https://s3.example.com; empty for AWS S3 in region", type: str, default: ""}
  ceph: {description: "Ceph RGW (amazon.aws.s3_object's ceph): an endpoint is then required", type: bool, default: false}
  bucket: {description: Bucket name, required: true, type: str}
  object: {description: Object key, required: true, type: str}
  dest: {description: File to write, or a directory to write the object's base name into, required: true, type: path}
  access_key: {description: Access key ID; empty for an anonymous request, type: str, default: ""}
  secret_key: {description: Secret access key, type: str, default: ""}
  region: {description: Region of the signature scope, type: str, default: us-east-1}
  mode: {description: Mode of the written file, type: str, default: "0644"}
"""

UNSIGNED = "UNSIGNED-PAYLOAD"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(url: str, access_key: str, secret_key: str, region: str,
                   now: datetime.datetime) -> dict[str, str]:
    """The headers of a SigV4-signed GET of ``url`` (no body, unsigned payload)."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": parts.netloc, "x-amz-content-sha256": UNSIGNED, "x-amz-date": amz_date}
    if not access_key:
        return {k: v for k, v in headers.items() if k != "host"}
    names = sorted(headers)
    canonical = "\n".join(["GET", parts.path or "/", parts.query,
                           "".join(f"{n}:{headers[n]}\n" for n in names),
                           ";".join(names), UNSIGNED])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), amz_date[:8])
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    del headers["host"]  # urllib sends the same value itself
    return headers


#: A bucket name usable as one DNS label of a virtual-hosted HTTPS URL (no dots:
#: those break the TLS wildcard certificate, and so no IP address either).
_VIRTUAL_HOSTABLE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def object_url(endpoint: str, bucket: str, key: str, region: str = "us-east-1",
               ceph: bool = False) -> str:
    """URL of an object, addressed as amazon.aws.s3_object (boto3) addresses it.

    - An endpoint given (Ceph RGW, MinIO, any S3-compatible server, or an AWS
      endpoint named explicitly): path-style, ``<endpoint>/<bucket>/<key>``.
      botocore forces path-style for every custom ``endpoint_url`` unless told
      ``addressing_style: virtual``, which s3_object never does, with or without
      ``ceph``.
    - No endpoint: AWS S3 in ``region`` (``s3.<region>.amazonaws.com``; for
      us-east-1 the global ``s3.amazonaws.com``), virtual-hosted
      (``https://<bucket>.<host>/<key>``) for DNS-compatible bucket names,
      path-style for the rest (dots, capitals, fewer than 3 characters), as
      botocore's endpoint rules do.
    - ``ceph`` without an endpoint: ValueError, as s3_object's
      ``required_if: ceph -> endpoint_url``.
    """
    quoted_key = urllib.parse.quote(key, safe="/~")
    if endpoint:
        base = endpoint.rstrip("/")
        return f"{base}/{urllib.parse.quote(bucket, safe='')}/{quoted_key}"
    if ceph:
        raise ValueError("ceph is true but no endpoint is given (Ceph RGW has no default endpoint)")
    aws = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
    if _VIRTUAL_HOSTABLE.match(bucket):
        return f"https://{bucket}.{aws}/{quoted_key}"
    return f"https://{aws}/{urllib.parse.quote(bucket, safe='')}/{quoted_key}"


def _error_code(body: bytes) -> str:
    found = re.search(rb"<Code>([A-Za-z0-9.]{1,64})</Code>", body)
    return found.group(1).decode() if found else "no S3 error code"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "endpoint": {"type": "str", "default": ""},
            "ceph": {"type": "bool", "default": False},
            "bucket": {"type": "str", "required": True},
            "object": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "access_key": {"type": "str", "default": "", "no_log": True},
            "secret_key": {"type": "str", "default": "", "no_log": True},
            "region": {"type": "str", "default": "us-east-1"},
            "mode": {"type": "str", "default": "0644"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["endpoint"] and not p["endpoint"].startswith(("http://", "https://")):
        module.fail_json(msg=f"endpoint must be an http:// or https:// URL (is {p['endpoint']!r})",
                         reason="bad endpoint")
    if bool(p["access_key"]) != bool(p["secret_key"]):
        module.fail_json(msg="give both the access key and the secret key, or neither",
                         reason="incomplete credentials")
    dest = p["dest"]
    if os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(p["object"]))
    try:
        url = object_url(p["endpoint"], p["bucket"], p["object"], p["region"], p["ceph"])
    except ValueError as exc:
        module.fail_json(msg=str(exc), reason="ceph needs an endpoint")
    if module.check_mode:
        module.exit_json(changed=True, dest=dest, url=url)
    headers = signed_headers(url, p["access_key"], p["secret_key"], p["region"],
                             datetime.datetime.now(datetime.timezone.utc))
    digest = hashlib.sha256()
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=".s3-")
    try:
        with os.fdopen(fd, "wb") as out, \
                urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                       timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
        os.chmod(partial, int(p["mode"], 8))
        os.replace(partial, dest)
    except urllib.error.HTTPError as exc:
        os.unlink(partial)
        reason = f"HTTP {exc.code} ({_error_code(exc.read(4096))})"
        module.fail_json(msg=f"GET {url}: {reason}", reason=reason)
    except (OSError, ValueError) as exc:
        if os.path.exists(partial):
            os.unlink(partial)
        reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        module.fail_json(msg=f"GET {url}: {reason}", reason=reason)
    module.exit_json(changed=True, dest=dest, sha256=digest.hexdigest(),
                     size=os.path.getsize(dest))


if __name__ == "__main__":
    main()
