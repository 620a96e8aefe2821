"""Outputs written under temporary names and renamed into place only when complete.

A reader (or a later step) never sees a partial file under a final name:
not after Ctrl-C, a full disk or a failed check. Temporary names are hidden
files in the final directory, so the rename stays on one filesystem.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class Staging:
    """Temporary files for final paths; ``commit()`` renames them in the order
    they were asked for, leaving the event a reader waits for (the checksum) last.

    As a context manager, every temporary file still present at exit is removed.
    """

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path]] = []
        self._dirs: list[Path] = []
        self._made: list[Path] = []

    def file_for(self, final: Path) -> Path:
        """An empty temporary file beside ``final``."""
        final = Path(final)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial",
                                   dir=final.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)
        self._files.append((Path(tmp), final))
        return Path(tmp)

    def write(self, final: Path, data: bytes) -> Path:
        """Stage ``data`` for ``final``."""
        tmp = self.file_for(final)
        tmp.write_bytes(data)
        return tmp

    def adopt(self, tmp: Path, final: Path) -> None:
        """Stage an already written file (on the same filesystem as ``final``)."""
        self._files.append((Path(tmp), Path(final)))

    def output_directory(self, path: Path) -> Path:
        """Make ``path`` (and missing parents); the ones made here are removed again
        (when still empty) unless the staged files are committed."""
        path = Path(path)
        missing = []
        probe = path
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        path.mkdir(parents=True, exist_ok=True)
        self._made = missing + self._made
        return path

    def directory(self, near: Path, label: str) -> Path:
        """A scratch directory beside ``near`` (for converted disks, ovftool's output)."""
        path = Path(tempfile.mkdtemp(prefix=f".{label}.", dir=near))
        self._dirs.append(path)
        return path

    def commit(self) -> list[Path]:
        """Rename every staged file to its final name; return the final paths."""
        done = []
        for tmp, final in self._files:
            os.replace(tmp, final)
            done.append(final)
        self._files = []
        self._made = []
        return done

    def discard(self) -> None:
        """Remove every temporary file and scratch directory."""
        for tmp, _ in self._files:
            tmp.unlink(missing_ok=True)
        self._files = []
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self._dirs = []
        for directory in self._made:  # deepest first; never one holding anything
            try:
                directory.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *_: object) -> None:
        self.discard()

