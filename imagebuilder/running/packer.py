"""Running Packer: finding it, streaming its output to a log, stopping it cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from imagebuilder.errors import InputError
from imagebuilder.files import open_append
from imagebuilder.processes import start_child
from imagebuilder.redaction import Redactor  # logs are redacted by the one set of rules

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP = re.compile(r"^==> [^:]+: (?P<msg>.+)$")

#: Seconds Packer gets after SIGINT to clean up (destroy its VM) before SIGTERM.
INTERRUPT_GRACE = float(os.environ.get("IB_INTERRUPT_GRACE", "60"))
TERMINATE_GRACE = 10.0

INSTALL_HINT = ("install Packer: 'apt-get install packer' on Debian, or HashiCorp's "
                "release from their download page, then put it on PATH (or set PACKER)")


def find_packer(env: Mapping[str, str] | None = None) -> str:
    """The Packer executable: ``$PACKER`` or ``packer`` on PATH."""
    env = os.environ if env is None else env
    name = env.get("PACKER") or "packer"
    path = shutil.which(name, path=env.get("PATH"))
    if not path:
        raise InputError(f"packer: not found ({name!r} is not on PATH); {INSTALL_HINT}")
    return path


def step_of(line: str) -> str | None:
    """The step Packer reports in a ``==> builder: message`` line, if it is one."""
    match = _STEP.match(_ANSI.sub("", line).rstrip())
    return match.group("msg") if match else None


class PackerProcess:
    """One Packer run in its own process group, its output going to ``log_path``.

    Packer dies with us: if we are killed outright (SIGKILL), the kernel sends
    it DEATH_SIGNAL (see _Launcher). ``on_line`` sees every (redacted,
    colour-stripped) line; ``on_step`` sees each new step. ``interrupt()``
    asks Packer to stop the way Ctrl-C does, so it cleans up after itself, and
    escalates if it does not exit in time. (Also runs the custom
    post-processor's shell: any command whose output goes to a build's log.)
    """

    def __init__(self, argv: list[str], log_path: Path, cwd: Path,
                 env: Mapping[str, str], secrets: Sequence[str] = (),
                 on_step: Callable[[str], None] | None = None,
                 on_line: Callable[[str], None] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.env = dict(env)
        self.redact = Redactor(secrets)
        self.on_step = on_step
        self.on_line = on_line
        self.tail: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._interrupted = threading.Event()

    def start(self) -> None:
        """Start the process (in a session of its own) and the thread that logs its output."""
        log = open_append(self.log_path)  # never through a link; BuildError here, not later
        try:
            self._proc = start_child(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            log.close()
            raise
        self._reader = threading.Thread(target=self._pump, args=(log,), daemon=True,
                                        name=f"packer-log-{self.log_path.stem}")
        self._reader.start()

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return self._proc.pid if self._proc else None

    def _pump(self, log: IO[str]) -> None:
        assert self._proc and self._proc.stdout
        with log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} "
                      f"{' '.join(self.redact(a) for a in self.argv)}\n")
            for raw in iter(self._proc.stdout.readline, b""):
                line = self.redact(_ANSI.sub("", raw.decode("utf-8", "replace")))
                log.write(line)
                log.flush()
                self.tail = (self.tail + [line.rstrip("\n")])[-40:]
                if self.on_line:
                    self.on_line(line.rstrip("\n"))
                step = step_of(line)
                if step and self.on_step:
                    self.on_step(step)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit code, and for the last line to reach the log."""
        assert self._proc
        code = self._proc.wait(timeout)
        if self._reader:
            self._reader.join()
        return code

    def poll(self) -> int | None:
        """The exit code, or None while it runs (or before it started)."""
        return self._proc.poll() if self._proc else None

    @property
    def interrupted(self) -> bool:
        """Whether ``interrupt()`` was called."""
        return self._interrupted.is_set()

    def interrupt(self, grace: float = INTERRUPT_GRACE) -> None:
        """Stop Packer and every process it started: SIGINT, then SIGTERM, then SIGKILL."""
        self._interrupted.set()
        if not self._proc or self._proc.poll() is not None:
            return
        for sig, wait_for in ((signal.SIGINT, grace), (signal.SIGTERM, TERMINATE_GRACE),
                              (signal.SIGKILL, TERMINATE_GRACE)):
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self._proc.wait(wait_for)
                break
            except subprocess.TimeoutExpired:
                continue
        self._reap_group()

    def _reap_group(self) -> None:
        """Packer has exited; make sure nothing it started lives on (plugins, ansible)."""
        assert self._proc
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
