"""No shell ever sees a path or value as text (issue 16, item 1).

The templates hand values to shell-local and to the guest's shell as data: Packer's
``environment_vars`` (which it quotes), or, where only text can carry them (the
shutdown command run over SSH), quoted by Packer's ``replace_all`` into single quotes.
A scan of every template keeps it so; the real Packer 1.6.6 runs the template's
``ova`` post-processor and its shutdown command with values no shell may interpret.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import REPO
from helpers.ova import make_vmdk

from imagebuilder.ova import verify_ova

PACKER_DIR = REPO / "packer"
#: Variables whose value is the user's own shell text, by upstream's design.
USER_SHELL_TEXT = {"custom_post_processor_command", "shutdown_command"}
#: Block types whose fields hold shell text, and those fields.
SHELL_FIELDS = {"shell-local": ("inline", "command", "execute_command"),
                "shell": ("inline", "execute_command"),
                "powershell": ("inline", "execute_command", "elevated_execute_command"),
                "windows-shell": ("inline", "execute_command"),
                "windows-restart": ("restart_command", "restart_check_command")}
#: Builder fields run by a shell on the guest.
BUILDER_SHELL_FIELDS = ("shutdown_command",)
#: The one way a value may stand in shell text: Packer quotes it into single quotes.
QUOTED = re.compile(r"""'\{\{ replace_all "'" "'\\\\''" \(user `(?P<name>[^`]+)`\) \}\}'""")
REFERENCE = re.compile(r"(?:user|env)\s+`(?P<name>[^`]+)`")
BARE = re.compile(r"\{\{\s*user\s+`(?P<name>[^`]+)`\s*\}\}")
HOSTILE = "o'brien $(touch PWNED1) `touch PWNED2` \"$(touch PWNED3)\" -x"


def templates() -> list[Path]:
    return sorted(p for p in PACKER_DIR.rglob("*.json")
                  if any(k in json.loads(p.read_text()) for k in
                         ("builders", "provisioners", "post-processors", "type")))


def shell_texts(template: dict) -> list[tuple[str, str]]:
    """(where, text) of every shell text in a template (or a lone block, as goss/*.json)."""
    blocks = [template] if "type" in template else []
    blocks += template.get("builders", []) + template.get("provisioners", [])
    if "error-cleanup-provisioner" in template:
        blocks.append(template["error-cleanup-provisioner"])
    for entry in template.get("post-processors", []):
        blocks += entry if isinstance(entry, list) else [entry]
    found = []
    for block in blocks:
        label = block.get("name", block.get("type"))
        fields = SHELL_FIELDS.get(block.get("type"), ())
        if block in template.get("builders", []):
            fields = BUILDER_SHELL_FIELDS
        for key in fields:
            value = block.get(key)
            for text in value if isinstance(value, list) else [value] if value else []:
                found.append((f"{label}.{key}", text))
    return found


def values_in_shell_text(text: str) -> list[str]:
    """The variables ``text`` puts into shell text other than as a quoted value or the
    user's own shell text."""
    rest = QUOTED.sub("", text)
    rest = BARE.sub(lambda m: "" if m["name"] in USER_SHELL_TEXT else m[0], rest)
    return [m["name"] for m in REFERENCE.finditer(rest)]


@pytest.mark.parametrize("template", templates(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_template_interpolates_a_value_into_shell_text(template):
    data = json.loads(template.read_text())
    offenders = [f"{where}: {name}" for where, text in shell_texts(data)
                 for name in values_in_shell_text(text)]
    assert offenders == [], "hand these to the shell as data (environment_vars, argv)"


def test_the_scan_finds_what_it_must():
    """The scan itself: a path in shell text is found; quoted values and the user's own
    shell text are not."""
    assert values_in_shell_text("ova --from-packer '{{user `output_directory`}}'") == \
        ["output_directory"]
    assert values_in_shell_text("x {{ user `a` }} {{env `B`}}") == ["a", "B"]
    assert values_in_shell_text("""echo '{{ replace_all "'" "'\\\\''" (user `ssh_password`) }}'"""
                                " && {{user `shutdown_command`}}") == []
    node = json.loads((PACKER_DIR / "node.json").read_text())
    assert ("ova.inline", node["post-processors"][0][1]["inline"][0]) in shell_texts(node)


def packer_or_skip() -> str:
    packer = shutil.which("packer")
    if packer is None:
        pytest.skip("packer is not installed")
    return packer


def write_tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.mark.packer
def test_the_shutdown_command_takes_its_values_as_data(tmp_path):
    """node.json's shutdown command, rendered by the real Packer and run by a shell
    (here, with a stand-in sudo and usermod): the password reaches sudo's stdin and the
    user usermod's argv exactly as they are; nothing in them runs."""
    packer = packer_or_skip()
    node = json.loads((PACKER_DIR / "node.json").read_text())
    command = {b["shutdown_command"] for b in node["builders"] if "shutdown_command" in b}
    assert len(command) == 1  # every Linux builder shuts down the same way
    tools = tmp_path / "bin"
    tools.mkdir()
    write_tool(tools, "sudo", 'cat > "$RECORD/stdin"; shift 2; exec "$@"\n')
    write_tool(tools, "usermod", 'printf "%s\\n" "$@" > "$RECORD/usermod"\n')
    template = {"variables": {"ssh_password": "", "ssh_username": "", "shutdown_command": ""},
                "builders": [{"type": "null", "communicator": "none"}],
                "post-processors": [{"type": "shell-local",
                                     "environment_vars": [f"PATH={tools}:/usr/bin:/bin",
                                                          f"RECORD={tmp_path}"],
                                     "inline": [command.pop()]}]}
    (tmp_path / "t.json").write_text(json.dumps(template))
    password = "pa'ss $(touch PWNED1) `touch PWNED2` \\ \"q\""
    (tmp_path / "v.json").write_text(json.dumps({
        "ssh_password": password, "ssh_username": "builder",
        "shutdown_command": 'echo halted > "$RECORD/halted"'}))
    run = subprocess.run([packer, "build", "-color=false", f"-var-file={tmp_path / 'v.json'}",
                          str(tmp_path / "t.json")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "stdin").read_text() == password + "\n"
    assert (tmp_path / "usermod").read_text() == "-L\nbuilder\n"
    assert (tmp_path / "halted").read_text() == "halted\n"
    assert not list(tmp_path.rglob("PWNED*"))


@pytest.mark.packer
def test_packer_alone_makes_the_ova_in_a_directory_no_shell_may_see(checkout, tmp_path):
    """``packer build`` run on node.json directly ends with its ``ova`` post-processor:
    an output directory holding quotes, $(...), backticks, blanks and a leading dash
    after a space simply works, and nothing in it runs."""
    packer = packer_or_skip()
    stem = "ubuntu-2204-kube-v1.37.1"
    out = tmp_path / HOSTILE / stem
    out.mkdir(parents=True)
    disk = make_vmdk(tmp_path / "built.vmdk", "monolithicSparse")
    node = json.loads(checkout.node_template.read_text())
    template = tmp_path / "template.json"
    template.write_text(json.dumps({
        "variables": node["variables"],
        "builders": [{"type": "file", "source": str(disk),
                      "target": "{{user `output_directory`}}/{{user `vm_name`}}.vmdk"}],
        "post-processors": node["post-processors"]}))
    generated = {"vm_name": stem, "output_directory": str(out),
                 "manifest_output": str(out / "packer-manifest.json"),
                 "build_timestamp": "1767225600", "build_date": "2026-01-01T00:00:00Z",
                 "ib_version": "0.1.0", "ib_python": sys.executable,
                 "ib_target": "node-ova-local-ubuntu-2204"}
    var_files = []
    for i, path in enumerate(checkout.common_var_files() + [
            checkout.packer_common, checkout.os_file("ubuntu-2204")]):
        data = {k: v if isinstance(v, str) else json.dumps(v)
                for k, v in json.loads(path.read_text()).items()}
        var_files.append(tmp_path / f"vars-{i}.json")
        var_files[-1].write_text(json.dumps(data))
    (tmp_path / "generated.json").write_text(json.dumps(generated))
    var_files.append(tmp_path / "generated.json")
    run = subprocess.run([packer, "build", "-color=false",
                          *[f"-var-file={p}" for p in var_files], str(template)],
                         cwd=checkout.root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Running post-processor: ova" in run.stdout
    assert verify_ova(out / f"{stem}.ova").ovf.properties["KUBERNETES_SEMVER"] == "v1.37.1"
    assert not list(tmp_path.rglob("PWNED*")) and not list(checkout.root.rglob("PWNED*"))
