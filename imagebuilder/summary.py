"""The end-of-run summary: a table for people, JSON for machines."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

from .build import BuildResult


def table(results: Iterable[BuildResult]) -> str:
    """A fixed-width table: target, result, duration, artifact directory."""
    rows = [("TARGET", "RESULT", "DURATION", "ARTIFACTS")]
    for r in results:
        minutes, seconds = divmod(int(r.seconds), 60)
        result = r.result
        if r.ok and r.validation.startswith("skipped"):
            result += " (not validated)"  # goss did not run: see the build's log
        rows.append((r.target, result, f"{minutes}m{seconds:02d}s", r.artifact_dir or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row))
        for row in rows)


def write_json(results: list[BuildResult], path: Path, interrupted: bool) -> None:
    """Write the summary as JSON (atomically: readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "interrupted": interrupted,
           "builds": [vars(r) for r in results]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
