"""Writing files safely: never through a link we did not make, atomically, private when
they hold secrets.

Every file imagebuilder generates goes through these helpers. A symbolic link found
where a file or directory of ours goes (planted in ``output/.work/``, say) is removed,
never followed: a new file is created exclusively (``O_EXCL|O_NOFOLLOW``) under a
random name in its directory and renamed over the path (a rename replaces a link, it
does not write through it); logs and locks are opened with ``O_NOFOLLOW``; a build's
work directory is made fresh and private (0700) for each build.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, BinaryIO, Callable

from imagebuilder.errors import BuildError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class WriteError(BuildError):
    """A file or directory of ours could not be written: ``path`` and ``reason``."""

    def __init__(self, path: Path, reason: str, what: str = "write it") -> None:
        super().__init__(f"{path}: cannot {what} ({reason})")
        self.path = path
        self.reason = reason


def _failed(path: Path, exc: OSError, what: str = "write it") -> WriteError:
    return WriteError(Path(path), str(exc.strerror or exc), what)


def remove_link(path: Path) -> bool:
    """Remove ``path`` if it is a symbolic link (the link, never its target);
    whether there was one."""
    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            return False
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def remove_path(path: Path) -> bool:
    """Remove ``path`` without following links: a link is unlinked (its target
    stays), a directory removed with everything in it, a file unlinked. Whether
    anything was there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)  # removes the links inside it, never what they point to
    else:
        os.unlink(path)
    return True


def private_dir(path: Path, fresh: bool = False) -> Path:
    """Make ``path`` a real directory, 0700, and return it; its parents are made
    as needed. A link or file where it goes is removed first; with ``fresh`` an
    existing directory is removed with its contents too, so that nothing planted
    in it beforehand is ever written through."""
    path = Path(path)
    try:
        if fresh:
            remove_path(path)
        else:
            mode = os.lstat(path).st_mode if os.path.lexists(path) else None
            if mode is not None and not stat.S_ISDIR(mode):
                os.unlink(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # planted meanwhile
                raise WriteError(path, "something else appeared there meanwhile; run again",
                                 "make it a directory") from None
        os.chmod(path, 0o700)  # a directory, not a link: checked just above or made here
    except OSError as exc:
        raise _failed(path, exc, "make it a directory") from None
    return path


def write_file(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically, readable per ``mode`` (0600: its owner only).

    The new content goes into a file created exclusively (``O_EXCL|O_NOFOLLOW``,
    a random name in the same directory) and is renamed over ``path``: a link
    at ``path`` is replaced, never written through; readers see the old file or
    the new one. A failed write (full disk, no permission) leaves no temporary
    file behind and raises BuildError naming the path.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return _write_atomically(Path(path), mode, lambda fh: fh.write(payload))


def _write_atomically(path: Path, mode: int, fill: Callable[[BinaryIO], object]) -> Path:
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fill(fh)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise _failed(path, exc) from None
    return path


def write_private_json(path: Path, data: object) -> Path:
    """Write ``data`` as JSON readable by its owner only (0600), as ``write_file`` does."""
    return write_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def create_exclusive(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Create ``path`` anew with ``data`` (``O_CREAT|O_EXCL|O_NOFOLLOW``); whatever was
    there, a link included, is removed first (never followed)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if os.path.lexists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
    except OSError as exc:
        raise _failed(path, exc) from None
    return path


def _open_own(path: Path, flags: int, mode: int) -> int:
    """``os.open`` of a file of ours that must not be a link: a link there is removed
    and the file made anew (``O_NOFOLLOW`` makes a link planted meanwhile an error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_link(path)
    fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW | _CLOEXEC, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    return fd


def open_append(path: Path) -> IO[str]:
    """Open a log of ours for appending (UTF-8 text), never through a link."""
    path = Path(path)
    try:
        fd = _open_own(path, os.O_WRONLY | os.O_APPEND, 0o644)
    except OSError as exc:
        raise _failed(path, exc, "open it for writing") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def open_lock(path: Path) -> IO[bytes]:
    """Open (creating it) a lock file of ours, never through a link; its content is
    never written."""
    path = Path(path)
    try:
        fd = _open_own(path, os.O_RDWR, 0o644)
    except OSError as exc:
        raise _failed(path, exc, "open it as a lock") from None
    return os.fdopen(fd, "r+b", buffering=0)


def copy_into(source: Path, directory: Path) -> list[Path]:
    """Copy the file or tree ``source`` into ``directory`` (as ``directory/<name>``),
    each file with ``write_file`` (its mode kept): never through a link found at a
    destination. Returns the files written."""
    source, target = Path(source), Path(directory) / Path(source).name
    if not source.is_dir():
        with open(source, "rb") as src:
            mode = stat.S_IMODE(os.fstat(src.fileno()).st_mode)
            return [_write_atomically(target, mode, lambda fh: shutil.copyfileobj(src, fh))]
    private_dir(target)
    written = []
    for child in sorted(source.iterdir()):
        written += copy_into(child, target)
    return written
