"""Writing files safely: atomically, and private when they hold secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from imagebuilder.errors import BuildError


def write_private_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON readable by its owner only (0600), atomically.

    A failed write (full disk, no permission) leaves no temporary file behind
    and raises BuildError naming the path.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # also when a stale temp file existed
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise BuildError(f"{path}: cannot write it ({exc.strerror or exc})") from None
