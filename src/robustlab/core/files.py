"""Atomic file writes: temporary file in the same folder, fsync, one rename per file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def publish(files: Mapping[Path, bytes]) -> None:
    """Write every file to a temporary name beside it first, then rename them all into place.

    A full disk or a kill while writing leaves the previous versions whole (never a truncated
    file); the temporary files are removed on failure.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temps.append((tmp, path))
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in temps:
            tmp.replace(path)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
