"""Byte progress of long copies and hashing passes; the front end picks the display."""

from __future__ import annotations

import sys
from typing import IO, Protocol


class ByteProgress(Protocol):
    """Told about one pass at a time, from the thread that does the reading."""

    def begin(self, label: str, total: int) -> None:
        """A pass of ``total`` bytes starts, described by ``label``."""

    def advance(self, count: int) -> None:
        """``count`` more bytes of the pass are done."""

    def end(self) -> None:
        """The pass is over (also after an error)."""


class NoByteProgress(ByteProgress):
    """Reports nothing (library default): the protocol's methods do nothing."""



class TqdmByteProgress:
    """A tqdm bar in bytes per pass; silent when ``stream`` is not a terminal."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        from tqdm import tqdm  # only front ends need it

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._bar = None

    def begin(self, label: str, total: int) -> None:
        """A new bar (closing the previous one)."""
        self.end()
        self._bar = self._tqdm(total=total, desc=label, unit="B", unit_scale=True,
                               unit_divisor=1024, file=self.stream, leave=False,
                               disable=not self.enabled, dynamic_ncols=True)

    def advance(self, count: int) -> None:
        """Move the bar on."""
        if self._bar is not None:
            self._bar.update(count)

    def end(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
