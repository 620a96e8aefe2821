"""Child processes that die with us, and never see PACKER_FLAGS' secrets.

Every tool imagebuilder runs (Packer, ansible through it, qemu-img, ovftool, ssh,
the simulator, ...) is started here: from one long-lived launcher thread, with
Linux's parent-death signal set, so that not even a SIGKILL of ours leaves a child
running; and with an environment whose PACKER_FLAGS holds no secret ``-var``.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any, Callable

from imagebuilder.config.knobs import child_env

#: What Packer gets when we die without stopping it (SIGKILL): it handles SIGTERM
#: like Ctrl-C, stopping its build and destroying its VM.
DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1


def _death_signal_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to send DEATH_SIGNAL to the child when
    its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(DEATH_SIGNAL))
        if os.getppid() != parent:  # we died before the request took effect
            os.kill(os.getpid(), DEATH_SIGNAL)
    return hook


class _Launcher:
    """Starts child processes from one thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not
    the process. Our builds run in the scheduler's worker threads, which end
    when a batch is done (and a future scheduler may end them sooner): a Packer
    forked there would be killed mid-build when its worker exits. Forking every
    child here instead ties its death signal to the process's lifetime. (A
    launcher process between us and Packer would only move the problem: its
    own death signal would follow our worker thread just the same.)
    """

    def __init__(self) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """``subprocess.Popen(argv, **kwargs)``, forked from the launcher thread."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, daemon=True,
                                                name="child-launcher")
                self._thread.start()
        done: Future = Future()
        self._requests.put((argv, kwargs, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            argv, kwargs, done = self._requests.get()
            try:
                done.set_result(subprocess.Popen(argv, preexec_fn=_death_signal_hook(),
                                                 **kwargs))
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


_launcher = _Launcher()


def start_child(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)`` for a child that must die with us,
    even when we are killed outright: it gets DEATH_SIGNAL then (see _Launcher).
    Its environment (``env``, default ours) never holds PACKER_FLAGS' secrets."""
    kwargs["env"] = child_env(kwargs.get("env"))
    return _launcher.popen(argv, **kwargs)


def run_child(argv: list[str], timeout: float | None = None,
              **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, **kwargs)`` for a child that dies with us (start_child):
    on the timeout, Ctrl-C or SIGTERM/SIGHUP (Stopped) it is killed before we go on."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc = start_child(argv, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
