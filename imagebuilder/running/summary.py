"""The end-of-run summary: a table for people, JSON for machines.

Every run keeps its own JSON under ``logs/summaries/`` (concurrent runs of
different targets must not overwrite each other's); ``logs/summary.json`` is
a symbolic link to the latest run's, replaced atomically.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Iterable

from imagebuilder.errors import BuildError
from imagebuilder.running.build import BuildResult
from imagebuilder.running.progress import duration

#: The latest run's summary, a link into RUNS_DIR.
LATEST = "summary.json"
RUNS_DIR = "summaries"


def table(results: Iterable[BuildResult], width: int | None = None) -> str:
    """A fixed-width table: target, result, duration, artifact directory. When a row would
    be wider than ``width`` (a terminal's columns), its artifact directory goes on a line
    of its own below it, indented; None: no limit (logs, pipes)."""
    rows = [("TARGET", "RESULT", "DURATION", "ARTIFACTS")] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
        if width and row is not rows[0] and len(head) + 2 + len(row[3]) >= width:
            lines += [head.rstrip(), f"    {row[3]}"]
        else:
            lines.append(f"{head}  {row[3]}")
    return "\n".join(lines)


def _row(r: BuildResult) -> tuple[str, str, str, str]:
    result = r.result
    if r.ok and r.validation.startswith("skipped"):
        result += " (not validated)"  # goss did not run: see the build's log
    return (r.target, result, duration(r.seconds), r.artifact_dir or "-")


def write_json(results: list[BuildResult], logs_dir: Path, signum: int = 0) -> Path:
    """Write this run's summary as JSON and point ``logs_dir/summary.json`` at it.

    Atomic: readers never see half a file, and a failed write (full disk, no
    permission) leaves no temporary file; it raises BuildError naming the path.
    ``signum`` is the signal that interrupted the run (0: none). Returns the
    run's own file.
    """
    now = time.time()
    doc = {"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
           "interrupted": bool(signum),
           "signal": signal.Signals(signum).name if signum else None,
           "builds": [vars(r) for r in results]}
    run_file = logs_dir / RUNS_DIR / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
                                      + f"-{os.getpid()}.json")
    latest = logs_dir / LATEST
    tmp_file = run_file.with_name(run_file.name + ".tmp")
    tmp_link = latest.with_name(f".{LATEST}.{os.getpid()}.tmp")
    try:
        run_file.parent.mkdir(parents=True, exist_ok=True)
        tmp_file.write_text(json.dumps(doc, indent=2) + "\n")
        tmp_file.replace(run_file)
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(run_file.relative_to(logs_dir))
        tmp_link.replace(latest)
    except OSError as exc:
        for tmp in (tmp_file, tmp_link):
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        raise BuildError(f"{exc.filename or run_file}: cannot write the run's summary "
                         f"({exc.strerror or exc}); the table above is all there is") from None
    return run_file
