"""Temporary files of interrupted writes: robustlab writes every file under a temporary name that
holds the writer's process id (``.<name>.<pid>.tmp``, ``.weights-<pid>.tmp``) and renames it into
place. A process killed mid-write (``kill -9``, power loss) leaves that temporary behind; it is
harmless, and the next writer into the same folder removes those of processes that no longer run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TEMPORARY = re.compile(r"\..+[.-](\d+)\.tmp(-wal|-shm|-journal)?")
"""Our temporary names: a leading dot, the pid before ``.tmp`` (SQLite side files included)."""


def temporary_pid(name: str) -> int | None:
    """The writer's pid if `name` is one of robustlab's temporary file names, else None."""
    match = TEMPORARY.fullmatch(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """True when process `pid` runs (or cannot be signalled by us, so may run)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid != 0
    return True


def remove_stale(directory: Path) -> list[str]:
    """Delete robustlab temporaries in `directory` whose writer no longer runs; return their names.
    Temporaries of running processes (a concurrent writer) are left alone."""
    removed: list[str] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for path in entries:
        pid = temporary_pid(path.name)
        if pid is None or pid == os.getpid() or pid_alive(pid) or not path.is_file() or path.is_symlink():
            continue
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    return removed
