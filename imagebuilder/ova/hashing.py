"""Digests for manifests, and hashing chunks on worker threads as they are read.

hashlib releases the GIL while it hashes a large buffer, so a thread per
digest lets two digests (or a digest and a write) use two cores while the
main thread reads the next chunk into another buffer.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from imagebuilder.errors import BuildError, InputError

#: Manifest algorithms: our name -> the label in ``<LABEL>(<file>)= <hex>`` lines.
ALGORITHMS = {"sha256": "SHA256", "sha1": "SHA1", "sha512": "SHA512"}
LABELS = {label: name for name, label in ALGORITHMS.items()}

#: Chunks small enough to stay in a core's L2 cache between the read and the
#: hashes (1 MiB took about a tenth less CPU than 8 MiB on the OVA benchmark).
CHUNK = 1 << 20


def new_hash(algorithm: str) -> Any:
    """A hashlib object for a manifest algorithm name (``sha256``, ``sha1``, ``sha512``)."""
    if algorithm not in ALGORITHMS:
        raise InputError(f"manifest digest {algorithm!r} is not supported; use one of "
                         + ", ".join(ALGORITHMS))
    return hashlib.new(algorithm)


def digest_length(algorithm: str) -> int:
    """Hex digits of an algorithm's digest."""
    return new_hash(algorithm).digest_size * 2


class HashPipeline:
    """Rotating read buffers whose chunks are hashed in order on worker threads.

    Each *lane* is one worker thread; chunks fed to a lane are hashed in the
    order they were fed. A buffer is handed out again only when every lane
    has finished with it, so chunks are never copied::

        with HashPipeline(lanes=2) as pipe:
            buf = pipe.next_buffer()
            n = f.readinto(buf)
            pipe.feed(0, whole, buf[:n])
            pipe.feed(1, part, buf[:n])
    """

    def __init__(self, lanes: int, buffers: int = 8, chunk: int = CHUNK) -> None:
        self.lanes = lanes
        self._pools = [ThreadPoolExecutor(1, thread_name_prefix=f"ova-hash-{i}")
                       for i in range(lanes)]
        self._buffers = [memoryview(bytearray(chunk)) for _ in range(buffers)]
        self._pending: list[list[Future]] = [[] for _ in range(buffers)]
        self._next = 0
        self._current = 0

    def next_buffer(self) -> memoryview:
        """A free buffer (waits for the workers still hashing its last chunk)."""
        slot = self._next
        self._next = (slot + 1) % len(self._buffers)
        self._wait(slot)
        self._current = slot
        return self._buffers[slot]

    def feed(self, lane: int, hasher: Any, chunk: memoryview | bytes) -> None:
        """Hash ``chunk`` (a slice of the current buffer, or immutable bytes) on ``lane``."""
        if len(chunk):
            self._pending[self._current].append(self._pools[lane].submit(hasher.update, chunk))

    def _wait(self, slot: int) -> None:
        futures, self._pending[slot] = self._pending[slot], []
        for future in futures:
            future.result()

    def drain(self) -> None:
        """Wait until every chunk fed so far is hashed."""
        for slot in range(len(self._buffers)):
            self._wait(slot)

    def close(self) -> None:
        """Stop the worker threads (after the chunks they hold)."""
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> HashPipeline:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.drain()
        finally:
            self.close()


class _Stopped(Exception):
    """The other lane failed (or Ctrl-C came): this one gives up."""


def _read_chunk(src: int, buffer: memoryview, index: int, size: int, shown: Path) -> memoryview:
    """Chunk ``index`` of a file of ``size`` bytes, read into ``buffer``."""
    want = min(CHUNK, size - index * CHUNK)
    got = os.preadv(src, [buffer[:want]], index * CHUNK)
    if got != want:
        raise BuildError(f"{shown}: the file became shorter while it was being read "
                         f"({index * CHUNK + got} of {size} bytes); is something writing it?")
    return buffer[:got]


def _write_at(dst: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(dst, data, offset)
        data, offset = data[written:], offset + written


def copy_hashing(src: int, dst: int, dst_offset: int, size: int, disk: Any,
                 whole: Any | None, on_chunk: Callable[[int], None], shown: Path) -> None:
    """Copy the first ``size`` bytes of file descriptor ``src`` into ``dst`` at
    ``dst_offset``, reading them once: ``disk`` gets every byte, in order, and so
    does ``whole`` when given.

    Two lanes (threads) share the work evenly: each keeps one digest over every
    chunk and reads and writes every other chunk, so on two cores the two
    digests, the read and the write take about the time of one digest pass
    (bench/ova_assembly.py). A chunk is handed from its reader to the other
    lane through a lock and never copied. ``on_chunk(n)`` is called in order
    from a worker thread. The first error of either lane (an OSError, a
    BuildError for a file that became shorter, a KeyboardInterrupt from
    ``on_chunk``) is raised here once both lanes have stopped; so is a Ctrl-C
    that reaches this thread while it waits.
    """
    count = -(-size // CHUNK)
    slots = 6  # even: each slot always holds the chunks of one lane
    buffers = [memoryview(bytearray(CHUNK)) for _ in range(slots)]
    lengths = [0] * slots
    filled = [threading.Lock() for _ in range(slots)]   # held until its chunk is read
    free = [threading.Lock() for _ in range(slots)]     # held until the other lane is done
    for lock in filled:
        lock.acquire()
    stop = threading.Event()
    errors: list[BaseException] = []

    def take(lock: threading.Lock) -> None:
        while not lock.acquire(timeout=0.2):
            if stop.is_set():
                raise _Stopped

    def lane(index: int, hasher: Any | None) -> None:
        try:
            for i in range(count):
                slot = i % slots
                if i % 2 == index:
                    take(free[slot])
                    chunk = _read_chunk(src, buffers[slot], i, size, shown)
                    lengths[slot] = length = len(chunk)
                    filled[slot].release()
                    if hasher is not None:
                        hasher.update(chunk)
                    _write_at(dst, chunk, dst_offset + i * CHUNK)
                else:
                    take(filled[slot])
                    length = lengths[slot]
                    if hasher is not None:
                        hasher.update(buffers[slot][:length])
                    free[slot].release()
                if hasher is disk:
                    on_chunk(length)
                if stop.is_set():
                    raise _Stopped
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=lane, args=(0, whole), name="ova-copy-0", daemon=True),
               threading.Thread(target=lane, args=(1, disk), name="ova-copy-1", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]
