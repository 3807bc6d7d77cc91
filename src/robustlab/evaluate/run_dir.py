"""The run-directory rules every command that writes results follows: `check_run_dir` (writes
nothing: may results go there, and is it new, to resume or to replace) and `clear_store`
(``--overwrite``: the database alone is deleted, at the first write)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from robustlab.core.errors import ConfigError
from robustlab.store.results import ResultStore, StoreError, check_writable, inspect_store
from robustlab.store.temporaries import temporary_pid

_STORE_FILES = (ResultStore.FILENAME, ResultStore.FILENAME + "-wal", ResultStore.FILENAME + "-shm")


def check_run_dir(run_dir: str | Path, *, overwrite: bool = False, allow: Sequence[str] = ()) -> str:
    """Check that results may be written to `run_dir`, writing nothing; return "new", "resume"
    (it holds robustlab results to extend) or "replace" (``overwrite``: they will be deleted).

    Refused (`StoreError` / `ConfigError`): a path naming a file; a results file that is not a
    robustlab database or comes from an older robustlab (unless ``overwrite``); a non-empty
    directory without results (unless ``overwrite``; names in `allow` and robustlab's own
    temporary files, such as another process's database being created, do not count); a
    read-only location.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"{run_dir} is a file, not a run directory")
    try:
        state = inspect_store(run_dir)
    except StoreError:
        if not overwrite:
            raise
        state = "replace"
    if state == "absent" and run_dir.is_dir():
        # another process's database being created (or one a kill left) is ours, not foreign
        others = sorted(p.name for p in run_dir.iterdir() if p.name not in allow and temporary_pid(p.name) is None)
        if others and not overwrite:
            raise ConfigError(
                f"{run_dir} is not empty and holds no robustlab results ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): choose a new or empty --out, or pass --overwrite"
            )
    if state == "robustlab" and overwrite:
        state = "replace"
    if state == "replace":
        for name in _STORE_FILES:
            if (run_dir / name).is_dir():
                raise StoreError(f"{run_dir / name} is a directory, not a results database")
        if not os.access(run_dir, os.W_OK):
            raise StoreError(f"{run_dir} is read-only: cannot write results there")
        return "replace"
    check_writable(run_dir)
    return "new" if state == "absent" else "resume"


def clear_store(run_dir: str | Path) -> None:
    """Delete the results database of `run_dir` (and its WAL files); nothing else."""
    for name in _STORE_FILES:
        path = Path(run_dir) / name
        if path.exists() or path.is_symlink():
            path.unlink()

__all__ = ["check_run_dir", "clear_store"]
