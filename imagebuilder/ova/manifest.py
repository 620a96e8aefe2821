"""OVF manifests (``.mf``): one ``SHA256(<file>)= <hex>`` line per file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from imagebuilder.ova.hashing import LABELS

_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\((.+)\)\s?=\s?([0-9A-Fa-f]+)$")


@dataclass
class Manifest:
    """File name -> (algorithm, lower-case hex digest); unreadable lines in ``problems``."""

    entries: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_manifest(text: str, shown: str) -> Manifest:
    """Read manifest lines; problems name ``shown`` and the line number."""
    out = Manifest()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        match = _LINE.match(line)
        if not match:
            out.problems.append(f"{shown} line {number}: {line[:80]!r} is not "
                                "'SHA256(<file>)= <hex>'")
            continue
        label, name, hexdigest = match.groups()
        if name in out.entries:
            out.problems.append(f"{shown} line {number}: {name} is listed twice")
        out.entries[name] = (LABELS[label], hexdigest.lower())
    return out
