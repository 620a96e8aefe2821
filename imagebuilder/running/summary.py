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
from imagebuilder.files import WriteError, write_file
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
    tmp_link = latest.with_name(f".{LATEST}.{os.getpid()}.tmp")
    try:
        run_file.parent.mkdir(parents=True, exist_ok=True)
        # Created exclusively and renamed into place: never written through a link.
        write_file(run_file, json.dumps(doc, indent=2) + "\n", mode=0o644)
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(run_file.relative_to(logs_dir))
        tmp_link.replace(latest)
    except (OSError, WriteError) as exc:
        try:
            tmp_link.unlink(missing_ok=True)
        except OSError:
            pass
        where, why = (exc.path, exc.reason) if isinstance(exc, WriteError) else \
            (exc.filename or run_file, exc.strerror or exc)
        raise BuildError(f"{where}: cannot write the run's summary ({why}); the table above "
                         "is all there is") from None
    return run_file
