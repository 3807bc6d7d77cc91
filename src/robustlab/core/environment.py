"""What a run ran on, recorded beside its results, and the torch thread count pinned for it.

The torch intra-op thread count changes float reductions (a convolution's sums are split
differently across threads), so a model trained, or an attack run, at 2 threads can differ in
its last bits from one at 1 thread: different weights digests, and sometimes different rows.
Runs therefore pin it (`pinned_threads`, `DEFAULT_THREADS` unless the user sets ``--threads``)
rather than leave it to the machine's core count, and record it (`environment`).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from robustlab.core.errors import ConfigError

DEFAULT_THREADS = 1
"""torch intra-op threads of a run when none is asked for: the same numbers on any machine."""


def check_threads(threads: int | None) -> int:
    """`threads` (None: `DEFAULT_THREADS`) as a positive int; `ConfigError` otherwise."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    return threads


@contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Run the block at `threads` torch intra-op threads (None: `DEFAULT_THREADS`), then restore."""
    n = check_threads(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit robustlab runs from ("<sha>", "+dirty" appended when the tree has changes),
    or None when it is not a git checkout (an installed wheel) or git is absent."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def environment(device: str | torch.device | None, threads: int, data: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    """The record of a run's environment: robustlab version and git commit, torch version, torch
    threads (the pinned intra-op count, and the inter-op count), device, CUDA when used, Python,
    platform, CPU count, and the data (name, version = digest of its test split, digest of the
    evaluated samples)."""
    from robustlab import __version__

    dev = str(device) if device is not None else "cpu"
    env: dict[str, Any] = {
        "robustlab": __version__,
        "commit": source_commit(),
        "torch": torch.__version__,
        "threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "device": dev,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    if dev.startswith("cuda") and torch.cuda.is_available():
        env["cuda"] = {"version": torch.version.cuda, "gpu": torch.cuda.get_device_name(torch.device(dev))}
    if data is not None:
        env["data"] = {k: data.get(k) for k in ("name", "version", "samples", "n_eval") if k in data}
    return {**env, **extra}


def command_line(argv: list[str] | None) -> str | None:
    """The shell command that reproduces a CLI invocation ("robustlab evaluate --model ..."), quoted."""
    import shlex

    return None if argv is None else "robustlab " + shlex.join(argv)


__all__ = ["DEFAULT_THREADS", "check_threads", "command_line", "environment", "pinned_threads", "source_commit"]
