"""Progress reporting: the library calls a Progress; the front ends choose which.

``TqdmProgress`` draws one redrawn line per running build (its current
Packer step and elapsed time) when output is a terminal, and falls back to
plain start/step/finish lines otherwise (CI logs stay readable).
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Protocol


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


class LineProgress:
    """One plain line per event, for logs and non-terminals."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def started(self, name: str) -> None:
        """``[name] started``."""
        self._say(f"[{name}] started")

    def step(self, name: str, text: str) -> None:
        """``[name] text``."""
        self._say(f"[{name}] {text}")

    def finished(self, name: str, result: str, seconds: float) -> None:
        """``[name] result after Ns``."""
        self._say(f"[{name}] {result} after {seconds:.0f}s")

    def close(self) -> None:
        """Nothing to release: every line is already out."""


class TqdmProgress:
    """A tqdm line per running build: name, current step, elapsed time."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from tqdm import tqdm  # only the front ends need it

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self._bars: dict[str, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                for bar in self._bars.values():
                    bar.refresh()

    def started(self, name: str) -> None:
        """A new line for the build, below the running ones."""
        with self._lock:
            self._bars[name] = self._tqdm(
                total=None, desc=f"{name}: starting", file=self.stream, leave=False,
                bar_format="{desc} [{elapsed}]", position=len(self._bars), dynamic_ncols=True)

    def step(self, name: str, text: str) -> None:
        """Redraw the build's line with what it does now."""
        with self._lock:
            bar = self._bars.get(name)
            if bar is not None:
                bar.set_description_str(f"{name}: {text}"[:160])

    def finished(self, name: str, result: str, seconds: float) -> None:
        """Remove the build's line; print how it ended above the others."""
        with self._lock:
            bar = self._bars.pop(name, None)
            if bar is not None:
                bar.close()
            self._tqdm.write(f"{name}: {result} after {seconds:.0f}s", file=self.stream)

    def close(self) -> None:
        """Stop redrawing; remove the lines still shown."""
        self._stop.set()
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()


def default_progress(stream: IO[str] | None = None) -> Progress:
    """Tqdm lines on a terminal, plain lines elsewhere."""
    stream = stream or sys.stderr
    return TqdmProgress(stream) if stream.isatty() else LineProgress(stream)


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
