"""OVF manifests (``.mf``): one ``SHA256(<file>)= <hex>`` line per file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from imagebuilder.ova.hashing import LABELS, digest_length
from imagebuilder.ova.limits import shown_name, shown_value

_LINE = re.compile(r"(SHA1|SHA256|SHA512)\((.+)\)\s?=\s?([0-9A-Fa-f]+)", re.ASCII)
#: A manifest with more unreadable lines than this is not read further.
MAX_BAD_LINES = 5


@dataclass
class Manifest:
    """File name -> (algorithm, lower-case hex digest); unreadable lines in ``problems``."""

    entries: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_manifest(text: str, shown: str) -> Manifest:
    """Read manifest lines; problems name ``shown`` and the line number. After
    ``MAX_BAD_LINES`` unreadable lines the rest is not read (one more problem says so)."""
    out = Manifest()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        problem = _entry(out, line)
        if problem:
            out.problems.append(f"{shown} line {number}: {problem}")
            if len(out.problems) >= MAX_BAD_LINES:
                out.problems.append(f"{shown}: not read past line {number}; is it a manifest?")
                break
    return out


def _entry(out: Manifest, line: str) -> str:
    """Add the entry of ``line``; what is wrong with it, if anything."""
    match = _LINE.fullmatch(line)
    if not match:
        return f"{shown_value(line, 80)} is not 'SHA256(<file>)= <hex>'"
    label, name, hexdigest = match.groups()
    algorithm = LABELS[label]
    if len(hexdigest) != digest_length(algorithm):
        return (f"{shown_name(name)}: a {label} digest has {digest_length(algorithm)} hex "
                f"digits, not {len(hexdigest)}")
    if name in out.entries:
        return f"{shown_name(name)} is listed twice"
    out.entries[name] = (algorithm, hexdigest.lower())
    return ""
