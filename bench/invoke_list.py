"""Benchmark: how long ``invoke --list`` takes, side by side with a bare invoke
listing as many trivial tasks.

    python bench/invoke_list.py [--runs 15]

Times (median of ``--runs``, in rotating order, each a fresh process):

  ours         .venv's ``invoke --list`` (the image-builder program, tasks.py)
  plain        invoke's own program on tasks.py
  bare         invoke's own program on a generated tasks file with the same
               number of do-nothing tasks (the floor: invoke itself)

The goal is ``ours`` <= 0.25 s. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def task_count() -> int:
    out = subprocess.run([str(BIN / "invoke"), "--list", "--list-format", "json"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return len(json.loads(out)["tasks"])


def bare_tasks(directory: Path, count: int) -> None:
    lines = ["from invoke import task\n"]
    for i in range(count):
        lines.append(f"@task\ndef task_{i}(c, dry_run=False):\n    \"\"\"Task {i}.\"\"\"\n")
    (directory / "tasks.py").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    count = task_count()
    plain = [sys.executable, "-c", "import sys; from invoke.main import program; "
             "program.run()", "--list"]
    with tempfile.TemporaryDirectory() as bare_dir:
        bare_tasks(Path(bare_dir), count)
        variants = {"ours": ([str(BIN / "invoke"), "--list"], REPO),
                    "plain": (plain, REPO), "bare": (plain, Path(bare_dir))}
        times: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for run in range(args.runs):
            for key in order[run % 3:] + order[:run % 3]:
                argv, cwd = variants[key]
                start = time.perf_counter()
                subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
                times[key].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"invoke --list, {count} tasks, median of {args.runs} runs")
    for key, value in median.items():
        print(f"  {key:6s} {value:6.3f} s   {value / median['bare']:5.2f}x bare   "
              f"(min {min(times[key]):.3f})")
    print(f"  goal ours <= 0.25 s: {'met' if median['ours'] <= 0.25 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
