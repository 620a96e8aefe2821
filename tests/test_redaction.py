"""One set of redaction rules for logs, dry runs, render output and messages
(imagebuilder/redaction.py): free text, structured data, secret names."""

from __future__ import annotations

import io
import json

from helpers.common import VSPHERE, write_json

from imagebuilder.config.catalog import parse_target
from imagebuilder.config.knobs import Knobs
from imagebuilder.planning.inspect import dry_run_plans, render_target
from imagebuilder.redaction import REDACTED, SECRET_VARIABLES, Redactor, is_secret_name
from imagebuilder.running.packer import Redactor as LogRedactor


def strings(value: object) -> list[str]:
    """Every string in JSON-shaped ``value``, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_logs_use_the_one_redactor():
    assert LogRedactor is Redactor


def test_short_secrets_are_redacted_in_text_only_where_they_stand_alone():
    redact = Redactor(["ab", "Long-Secret-1", "x"])
    assert redact("password=ab user=abbot pw: ab") == \
        f"password={REDACTED} user=abbot pw: {REDACTED}"
    assert redact.text("Long-Secret-1Long-Secret-1") == REDACTED * 2
    assert redact("xen x") == f"xen {REDACTED}"
    assert Redactor([""])("nothing to hide") == "nothing to hide"


def test_structured_data_keeps_its_keys_and_hides_values():
    redact = Redactor(["p", "Long-Secret-1"])
    data = {"provisioners": [{"type": "ansible", "password": "anything",
                              "extra": "p", "args": ["--pw=p", "pp", "x Long-Secret-1 y"]}],
            "post-processors": [], "empty": {"ssh_password": ""}, "count": 3}
    assert redact.data(data) == {
        "provisioners": [{"type": "ansible", "password": REDACTED, "extra": REDACTED,
                          "args": [f"--pw={REDACTED}", "pp", f"x {REDACTED} y"]}],
        "post-processors": [], "empty": {"ssh_password": ""}, "count": 3}
    assert redact.variables({"rhsm_pass": "p", "vm_name": "p"}) == \
        {"rhsm_pass": REDACTED, "vm_name": REDACTED}


def test_secret_names_are_decided_in_one_place():
    assert all(is_secret_name(name) for name in SECRET_VARIABLES)
    assert is_secret_name("pasword") and is_secret_name("api_token")
    assert not is_secret_name("vm_name")


def test_render_with_a_one_character_secret(checkout, tmp_path, monkeypatch):
    """A one-character RHEL password never shows, and never eats into a key
    (it was once replaced inside JSON keys: ``<sensitive>rovisioners``)."""
    out = tmp_path / "render"
    monkeypatch.setenv("RHSM_USER", "someone")
    monkeypatch.setenv("RHSM_PASS", "p")  # node.json reads it with {{env `RHSM_PASS`}}
    render_target("node-ova-local-rhel-9", out, checkout=checkout)
    blocks = json.loads((out / "packer-blocks.json").read_text())
    assert set(blocks) == {"builders", "provisioners", "post-processors"}
    assert all("playbook_file" in p or "type" in p for p in blocks["provisioners"])
    variables = json.loads((out / "packer-variables.json").read_text())
    assert variables["rhsm_pass"] == REDACTED
    for name in ("packer-blocks.json", "packer-variables.json", "ansible-vars.json",
                 "downloads.json"):
        data = json.loads((out / name).read_text())
        assert "p" not in strings(data), name
    env = [s for s in strings(blocks) if s.startswith("RHSM_PASS=")]
    assert env and set(env) == {f"RHSM_PASS={REDACTED}"}


def test_dry_run_hides_secrets_wherever_they_are(checkout, tmp_path):
    vsphere = write_json(tmp_path / "v.json", VSPHERE)
    knobs = Knobs.from_env({"PACKER_VAR_FILES": str(vsphere),
                            "VSPHERE_PASSWORD": "env-Secret-1",
                            "PACKER_FLAGS": "-var remote_password=Esx-Secret-99 "
                                            "-var remote_host=Esx-Secret-99.example.com"})
    out = io.StringIO()
    target = parse_target("node-ova-vsphere-ubuntu-2204", checkout.os_names())
    dry_run_plans([target], "build", out, checkout, knobs)
    text = out.getvalue()
    for secret in ("env-Secret-1", "Esx-Secret-99", VSPHERE["password"]):
        assert secret not in text
    assert f"password={REDACTED}" in text and f"ssh_password={REDACTED}" in text
    assert f"-var=remote_host={REDACTED}.example.com" in text
