"""vsphere.json's shape is defined once (vsphere/settings.py): the schema, the shipped
ova/vsphere.json, the plan's required fields and the simulator's settings all agree with it."""

from __future__ import annotations

import json
from importlib import resources

from helpers.common import REPO

from imagebuilder.planning import rules
from imagebuilder.vsphere import settings
from imagebuilder.vsphere.settings import VSphereSettings

BOOLEAN_REF = "defs.schema.json#/$defs/boolean"


def schema() -> dict:
    text = resources.files("imagebuilder.config.schemas").joinpath("vsphere.schema.json")
    return json.loads(text.read_text())


def test_the_schema_has_the_same_fields_and_required_set():
    found = schema()
    assert set(found["properties"]) == {f.name for f in settings.FIELDS}
    assert found["x-required-after-layering"] == list(settings.REQUIRED)
    assert "required" not in found  # a single var file may leave any field out
    for f in settings.FIELDS:
        expected = {"$ref": BOOLEAN_REF} if f.boolean else {"type": "string"}
        assert found["properties"][f.name] == expected, f.name


def test_the_shipped_vsphere_json_is_the_defaults():
    shipped = json.loads((REPO / "ova" / "vsphere.json").read_text())
    assert shipped == settings.defaults()


def test_the_plan_checks_the_required_fields_of_settings():
    assert rules.VSPHERE_REQUIRED is settings.REQUIRED
    assert settings.REQUIRED == ("vcenter_server", "username", "password", "datastore",
                                 "network")
    assert settings.SECRETS == ("password",)
    assert set(settings.BOOLEANS) == {"insecure_connection", "create_snapshot",
                                      "linked_clone", "convert_to_template"}
    assert all(f.meaning and "\n" not in f.meaning for f in settings.FIELDS)


def test_the_template_declares_every_field():
    declared = json.loads((REPO / "packer" / "node.json").read_text())["variables"]
    assert {f.name for f in settings.FIELDS} <= set(declared)


def test_settings_read_a_builds_variables_and_hide_the_password():
    values = dict(settings.defaults(), vcenter_server="[fd00::1]:8443", username="u",
                  password="vc-Secret-1", insecure_connection="true", cluster=" C1 ")
    read = VSphereSettings.from_vars(values, env={})
    assert read.host_port == ("fd00::1", 8443)
    assert (read.insecure, read.cluster, read.password) == (True, "C1", "vc-Secret-1")
    assert "vc-Secret-1" not in repr(read)
    env = {"VSPHERE_PASSWORD": "from-env", "VSPHERE_CA_FILE": "/ca.pem"}
    from_env = VSphereSettings.from_vars(values, env=env)
    assert (from_env.password, from_env.ca_file) == ("from-env", "/ca.pem")
    assert VSphereSettings.from_vars({"vcenter_server": "vc"}, env={}).host_port == ("vc", 443)
