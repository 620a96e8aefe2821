"""A relative output directory means what it says (issue 16, item 6): IB_OUTPUT_DIR is
relative to where the user ran the command (Packer itself runs in the checkout), and a
var file's relative ``output_directory`` to the checkout, where Packer resolves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers.common import REPO, write_json

TARGET = "node-ova-local-ubuntu-2204"


def run(cwd, **env):
    return subprocess.run([sys.executable, "-m", "imagebuilder", "build", TARGET], cwd=cwd,
                          env=dict(os.environ, STANDIN_SECONDS="0.3",
                                   PYTHONPATH=str(REPO), **env),
                          capture_output=True, text=True, timeout=300)


def test_a_relative_ib_output_dir_is_relative_to_where_the_user_is(checkout, standin):
    here = checkout.root / "packer"
    result = run(here, IB_OUTPUT_DIR="rel-out")
    assert result.returncode == 0, result.stdout + result.stderr
    out = here / "rel-out"
    assert (out / "ubuntu-2204-kube-v1.37.1" / "build-info.json").is_file()
    assert (out / "logs" / f"build-{TARGET}.log").is_file()
    argv = json.loads((standin / f"build-{TARGET}.argv").read_text())["argv"]
    assert f"-var-file={out}/.work/{TARGET}/build-vars.json" in argv
    assert not (checkout.root / "rel-out").exists()


def test_a_relative_output_directory_is_relative_to_the_checkout(checkout, standin, tmp_path):
    extra = write_json(tmp_path / "out.json", {"output_directory": "mine/ubuntu"})
    result = run(checkout.root / "packer", PACKER_VAR_FILES=str(extra))
    assert result.returncode == 0, result.stdout + result.stderr
    made = checkout.root / "mine" / "ubuntu"
    assert (made / "packer-manifest.json").is_file()  # Packer's (the stand-in's) file
    assert (made / "build-info.json").is_file()       # and ours, in the same directory
    assert str(made) in result.stdout
