"""Progress reporting: the library calls a Progress; the front ends choose which.

``LiveProgress`` draws one redrawn line per running build (name, elapsed time,
current step, fitted to the terminal's width) when output is a terminal, and
``LineProgress`` plain start/step/finish lines otherwise (CI logs stay readable).
Both say each warning once, at the end of the run, with the builds it concerns.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import threading
import time
from typing import IO, Callable, Protocol


class Progress(Protocol):
    """What the scheduler tells a front end about the builds of a run (from worker threads)."""

    def started(self, name: str) -> None:
        """Build ``name`` started."""

    def step(self, name: str, text: str) -> None:
        """Build ``name`` is now doing ``text`` (a step, Packer's step, a percentage)."""

    def finished(self, name: str, result: str, seconds: float) -> None:
        """Build ``name`` ended with ``result`` (ok, failed, ...) after ``seconds``."""

    def close(self) -> None:
        """The run is over: release the display."""


class NullProgress:
    """Reports nothing (library use, machine-readable output)."""

    def started(self, name: str) -> None:
        """Say nothing."""

    def step(self, name: str, text: str) -> None:
        """Say nothing."""

    def finished(self, name: str, result: str, seconds: float) -> None:
        """Say nothing."""

    def close(self) -> None:
        """Nothing to release."""


#: A step text that starts with this is a warning: said once per run, at its end, with
#: the builds it concerns (``goss: the image will not be validated``), not as a step.
WARNING = "warning: "


def duration(seconds: float) -> str:
    """``3m05s``: how long a build took or runs, the same in its line and the summary."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class _Warnings:
    """The warnings of a run, each once, with the builds that reported it."""

    def __init__(self) -> None:
        self._seen: dict[str, list[str]] = {}

    def add(self, name: str, text: str) -> bool:
        """Record ``text`` if it is a warning (WARNING prefix); whether it was one."""
        if not text.startswith(WARNING):
            return False
        names = self._seen.setdefault(text[len(WARNING):], [])
        if name not in names:
            names.append(name)
        return True

    def lines(self) -> list[str]:
        """``warning: <text> [<builds>]``, one per warning."""
        return [f"{WARNING}{text} [{', '.join(names)}]" for text, names in self._seen.items()]


class LineProgress:
    """One plain line per event, for logs and non-terminals; warnings once, at the end."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._warnings = _Warnings()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def started(self, name: str) -> None:
        """``[name] started``."""
        self._say(f"[{name}] started")

    def step(self, name: str, text: str) -> None:
        """``[name] text``."""
        with self._lock:
            if self._warnings.add(name, text):
                return
        self._say(f"[{name}] {text}")

    def finished(self, name: str, result: str, seconds: float) -> None:
        """``[name] result after 0m05s``."""
        self._say(f"[{name}] {result} after {duration(seconds)}")

    def close(self) -> None:
        """Say each warning of the run once."""
        for line in self._warnings.lines():
            self._say(line)


_PERCENT = re.compile(r"\s\d{1,3}%$")


def fit(text: str, room: int) -> str:
    """``text`` in at most ``room`` characters, cut between words (never inside one) and
    ended with ``...``; a trailing percentage (``ova: writing x.ova 45%``) stays."""
    if len(text) <= room:
        return text
    tail = _PERCENT.search(text)
    if tail and room > len(tail.group()) + 3:
        return fit(text[:tail.start()], room - len(tail.group())) + tail.group()
    if room < 3:
        return ""
    cut = text[:room - 2]  # room for "..." after the space the cut drops
    space = cut.rfind(" ")
    return (cut[:space].rstrip() + "..." if space > 0 else "...")[:room]


def build_line(name: str, text: str, seconds: float, width: int, name_width: int = 0) -> str:
    """One build's line at ``width`` columns: its name (padded to ``name_width``), its time,
    what it does. The time always shows; the text is cut between words; a name too long
    for the width loses its ``build-node-ova-`` prefix first. Never more than width - 1
    characters (the last column would wrap on some terminals)."""
    room = width - 1
    timer = duration(seconds)
    label = name.ljust(name_width)
    if len(label) + 2 + len(timer) > room:
        label = name.split("node-ova-", 1)[-1]
    label = label[:max(room - 2 - len(timer), 0)]
    line = f"{label}  {timer}"
    rest = room - len(line) - 2
    return f"{line}  {fit(text, rest)}".rstrip() if rest > 3 else line[:room]


def wrap(text: str, width: int) -> str:
    """``text`` as lines of at most width - 1 characters, broken between words (never
    inside one, a long path or name included), continued with an indent; each line ends
    with a newline."""
    lines = textwrap.wrap(text, max(width - 1, 20), subsequent_indent="    ",
                          break_long_words=False, break_on_hyphens=False)
    return "".join(f"{line}\n" for line in lines or [""])


def terminal_size(stream: IO[str]) -> tuple[int, int]:
    """(columns, lines) of the terminal ``stream`` writes to; (80, 24) when unknown."""
    try:
        return tuple(os.get_terminal_size(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return (80, 24)


class LiveProgress:
    """A line per running build, redrawn in place on a terminal (name, time, step), the
    builds that ended printed above them with their result and duration. Reads the
    width at each redraw; leaves no line behind when closed (Ctrl-C included)."""

    def __init__(self, stream: IO[str] | None = None,
                 size: Callable[[], tuple[int, int]] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._size = size or (lambda: terminal_size(self.stream))
        self._running: dict[str, list] = {}  # name -> [start (monotonic), text]
        self._name_width = 0  # the longest name of the run so far: one column for all
        self._drawn = 0
        self._lock = threading.Lock()
        self._warnings = _Warnings()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._running:
                    self._redraw()

    def _erase(self) -> str:
        return f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "\r\x1b[J"

    def _redraw(self, above: str = "") -> None:
        """Erase the block, print ``above`` (lines that stay), draw the block again."""
        width, height = self._size()
        names = list(self._running)
        shown = names if len(names) <= max(height - 2, 1) else names[:max(height - 3, 0)]
        now = time.monotonic()
        lines = [build_line(n, self._running[n][1], now - self._running[n][0], width,
                            self._name_width) for n in shown]
        if len(shown) < len(names):
            lines.append(fit(f"... and {len(names) - len(shown)} more running", width - 1))
        self.stream.write(self._erase() + above + "".join(f"{line}\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)

    def started(self, name: str) -> None:
        """A new line for the build, below the running ones."""
        with self._lock:
            self._running[name] = [time.monotonic(), "starting"]
            self._name_width = max(self._name_width, len(name))
            self._redraw()

    def step(self, name: str, text: str) -> None:
        """Redraw the build's line with what it does now (a warning is kept for the end)."""
        with self._lock:
            if self._warnings.add(name, text) or name not in self._running:
                return
            self._running[name][1] = " ".join(text.split())
            self._redraw()

    def finished(self, name: str, result: str, seconds: float) -> None:
        """Remove the build's line; print how it ended above the others."""
        with self._lock:
            self._running.pop(name, None)
            width, _ = self._size()
            line = f"{name.ljust(self._name_width)}  {duration(seconds)}  {result}"
            self._redraw(wrap(line, width))

    def close(self) -> None:
        """Stop redrawing; remove the lines still shown; say each warning once."""
        self._stop.set()
        with self._lock:
            self._running.clear()
            width, _ = self._size()
            self._redraw("".join(wrap(line, width) for line in self._warnings.lines()))


#: The earlier name of LiveProgress.
TqdmProgress = LiveProgress


def default_progress(stream: IO[str] | None = None) -> Progress:
    """Live lines on a terminal, plain lines elsewhere."""
    stream = stream or sys.stderr
    return LiveProgress(stream) if stream.isatty() else LineProgress(stream)


class TqdmTaskProgress:
    """A tqdm bar in percent per vCenter task (``Driver(on_task=...)``); silent off a terminal."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self._bar = None
        self._what = ""

    def __call__(self, what: str, percent: int) -> None:
        """Task ``what`` is at ``percent``: draw (or start, or end) its bar."""
        if not self.stream.isatty():
            return
        if self._bar is None or what != self._what:
            if self._bar is not None:
                self._bar.close()
            self._bar = self._tqdm(total=100, desc=what, unit="%", file=self.stream, leave=False,
                                   mininterval=0)
            self._what = what
        self._bar.update(max(0, percent - self._bar.n))
        if percent >= 100:
            self._bar.close()
            self._bar = None
