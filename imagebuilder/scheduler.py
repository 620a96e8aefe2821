"""Running many builds at once, the way ``make -j`` does.

``jobs`` caps how many run at once (0 or None: no cap, like a bare ``-j``);
a failing build leaves the others to finish unless ``fail_fast``; Ctrl-C
stops every running Packer (which cleans up its VM), runs every build's
cleanups and reports the run as interrupted.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from .build import FAILED, SKIPPED, BuildResult
from .progress import NullProgress, Progress

J = TypeVar("J")


def run_jobs(jobs: Sequence[J], run: Callable[[J, threading.Event, Callable[[str], None]], BuildResult],
             name_of: Callable[[J], str], max_jobs: int | None = 1, fail_fast: bool = False,
             progress: Progress | None = None) -> tuple[list[BuildResult], bool]:
    """Run ``run(job, cancel, on_step)`` for every job, at most ``max_jobs`` at once.

    Returns the results in the jobs' order and whether the run was
    interrupted (KeyboardInterrupt in the calling thread).
    """
    progress = progress or NullProgress()
    width = len(jobs) if not max_jobs or max_jobs <= 0 else min(max_jobs, len(jobs)) or 1
    cancel = threading.Event()
    results: dict[int, BuildResult] = {}
    interrupted = False

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
    futures: dict[Future, int] = {pool.submit(one, i, job): i for i, job in enumerate(jobs)}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                results[futures[fut]] = fut.result()
    except KeyboardInterrupt:
        interrupted = True
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
