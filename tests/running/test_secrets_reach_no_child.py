"""One redaction, and secrets kept out of children (issue 16, item 7): a secret ``-var``
of PACKER_FLAGS reaches Packer in its 0600 file, never as the raw value of PACKER_FLAGS
in Packer's (or a custom post-processor's) environment; a build's error and cleanup
errors, in the table and the JSON summary, go through the same redaction as its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers.common import REPO, write_json
from helpers.planning import plan_for

from imagebuilder.errors import BuildError
from imagebuilder.redaction import REDACTED
from imagebuilder.running import build

SECRET = "Flag-Secret-0042"
FLAGS = f"-var password={SECRET} -var headless=false -force"


def test_no_child_sees_the_secret_of_packer_flags(checkout, standin, tmp_path):
    env_dump = tmp_path / "custom-env.txt"
    extra = write_json(tmp_path / "custom.json", {
        "custom_post_processor": "true",
        "custom_post_processor_command": f"env > '{env_dump}'"})
    result = subprocess.run(
        [sys.executable, "-m", "imagebuilder", "build", "node-ova-local-ubuntu-2204"], cwd=REPO,
        env=dict(os.environ, PACKER_FLAGS=FLAGS, PACKER_VAR_FILES=str(extra),
                 STANDIN_SECONDS="0.3"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = json.loads((standin / "build-node-ova-local-ubuntu-2204.argv").read_text())
    assert recorded["env_packer_flags"] == "-var=headless=false -force"
    assert SECRET not in json.dumps(recorded)
    dumped = env_dump.read_text()
    assert "PACKER_FLAGS=-var=headless=false -force\n" in dumped and SECRET not in dumped
    assert SECRET not in result.stdout + result.stderr


class _Failing:
    """A step that fails, and whose cleanup fails, each naming the build's secret (as an
    exception from a library might quote what it was given)."""

    name = "failing"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def run(self, state) -> None:
        raise BuildError(f"vCenter said: bad login {self.secret}")

    def cleanup(self, state) -> None:
        raise RuntimeError(f"could not log out with {self.secret}")


def test_errors_and_cleanup_errors_are_redacted(checkout, monkeypatch):
    plan = plan_for(checkout, "node-ova-local-ubuntu-2204", {"PACKER_FLAGS": FLAGS})
    monkeypatch.setattr(build, "steps_for", lambda plan, on_line=None: [_Failing(SECRET)])
    result = build.run_plan(plan)
    assert result.result == build.FAILED
    assert result.error == f"vCenter said: bad login {REDACTED}"
    assert result.cleanup_errors == [f"cleanup of failing: could not log out with {REDACTED}"]
