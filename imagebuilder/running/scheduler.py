"""Running many builds at once, the way ``make -j`` does.

``jobs`` caps how many run at once (0 or None: no cap, like a bare ``-j``);
a failing build leaves the others to finish unless ``fail_fast``; Ctrl-C
(or SIGTERM/SIGHUP, see stopping.py) stops every running Packer (which
cleans up its VM), runs every build's cleanups and reports the run as
interrupted, with the signal that stopped it.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from imagebuilder.running.build import FAILED, SKIPPED, BuildResult
from imagebuilder.running.progress import NullProgress, Progress
from imagebuilder.running.stopping import signal_of

J = TypeVar("J")


def run_jobs(jobs: Sequence[J],
             run: Callable[[J, threading.Event, Callable[[str], None]], BuildResult],
             name_of: Callable[[J], str], max_jobs: int | None = 1, fail_fast: bool = False,
             progress: Progress | None = None) -> tuple[list[BuildResult], int]:
    """Run ``run(job, cancel, on_step)`` for every job, at most ``max_jobs`` at once.

    Returns the results in the jobs' order and the signal that interrupted
    the run (KeyboardInterrupt or stopping.Stopped in the calling thread), 0
    when nothing did.
    """
    progress = progress or NullProgress()
    width = len(jobs) if not max_jobs or max_jobs <= 0 else min(max_jobs, len(jobs)) or 1
    cancel = threading.Event()
    results: dict[int, BuildResult] = {}
    interrupted = 0

    def one(index: int, job: J) -> BuildResult:
        name = name_of(job)
        if cancel.is_set():
            return BuildResult(name, "", SKIPPED, 0.0, "", "", "not started: run was stopped")
        progress.started(name)
        result = run(job, cancel, lambda text: progress.step(name, text))
        progress.finished(name, result.result, result.seconds)
        if result.result == FAILED and fail_fast:
            cancel.set()
        return result

    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="build")
    futures: dict[Future, int] = {}
    pending: set[Future] = set()
    try:
        for i, job in enumerate(jobs):  # inside the try: a signal may arrive meanwhile
            fut = pool.submit(one, i, job)
            futures[fut] = i
            pending.add(fut)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                results[futures[fut]] = fut.result()
    except KeyboardInterrupt as exc:
        interrupted = int(signal_of(exc))
        cancel.set()
        # Ctrl-C again must not abandon running cleanups: keep waiting for them.
        while pending:
            try:
                done, pending = wait(pending, timeout=0.2)
                for fut in done:
                    results[futures[fut]] = fut.result()
            except KeyboardInterrupt:
                continue
    finally:
        pool.shutdown(wait=True)
        progress.close()
    ordered = [results.get(i) or BuildResult(name_of(job), "", SKIPPED, 0.0, "", "", "not started")
               for i, job in enumerate(jobs)]
    return ordered, interrupted
