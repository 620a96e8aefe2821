"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

A CI cancel, ``kill`` or a closed terminal must not leave Packer running, a
VM in vCenter or the 0600 var files on disk. While a run is under way these
signals raise ``Stopped`` (a KeyboardInterrupt, so every place that handles
Ctrl-C handles them too): every Packer is stopped, every cleanup runs, the
summary is printed and the process exits 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Iterator

#: The signals treated like Ctrl-C (SIGINT already raises KeyboardInterrupt).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(exc: BaseException) -> int:
    """The signal behind an interruption: Stopped's, else SIGINT (Ctrl-C)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_code_of(exc: BaseException) -> int:
    """The shell's convention: 128 + the signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signal_of(exc))


#: Whether a stop_on_signals block is open (in the main thread).
_active: list[bool] = []


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Stopped in the main thread.

    Only the first one raises: a repeated signal (CI sends SIGTERM again, a
    shell sends SIGHUP to everything) must not abandon the cleanups the first
    one started; they run to the end. Within another such block (a command that
    starts a simulator, then builds) the outer one's handlers stay: one signal,
    one Stopped. Outside the main thread (where Python cannot install handlers)
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or _active:
        yield
        return
    raised = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if not raised.is_set():
            raised.set()
            raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    _active.append(True)
    try:
        yield
    finally:
        _active.pop()
        for sig, old in previous.items():
            signal.signal(sig, old)
