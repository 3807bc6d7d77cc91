"""Progress on the terminal for long runs: one rich bar on stderr, shared by the CLI and the
Python API (`evaluate_model`, `evaluate_grid`, `run_experiment`, an attack called on a large
batch).

The API's ``progress=`` takes True (the default: a bar when stderr is a terminal; silent when
it is a pipe, a file, or under pytest), False / None (silent) or a callback
``progress(message, done, total)``. `show_progress(False)` turns the default bars off for the
whole process; the environment variable ``ROBUSTLAB_PROGRESS=0`` does the same.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressFn = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""

_SHOWN = {"default": True}


def show_progress(enabled: bool) -> None:
    """Turn the Python API's default progress bars on or off for this process."""
    _SHOWN["default"] = bool(enabled)


def on_terminal() -> bool:
    """Whether a default bar is drawn: stderr is a terminal, not under pytest, and neither
    `show_progress(False)` nor ``ROBUSTLAB_PROGRESS=0`` turned bars off."""
    if not _SHOWN["default"] or os.environ.get("ROBUSTLAB_PROGRESS", "1") in ("0", "false", "no"):
        return False
    if "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return sys.stderr.isatty()


@contextmanager
def terminal_bar(console: Any = None) -> Iterator[ProgressFn]:
    """A transient rich bar on stderr (or on `console`); yields its ``update(message, done, total)``.
    Training messages ("train ...") get a bar per model; everything else shares one bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console if console is not None else Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(message: str, done: int, total: int) -> None:
            group = message.split(" eps=")[0] if message.startswith("train") else "evaluate"
            if group not in tasks:
                tasks[group] = bar.add_task(message, total=total)
            bar.update(tasks[group], completed=done, total=total, description=message)

        yield update


@contextmanager
def resolve_progress(progress: ProgressFn | bool | None) -> Iterator[ProgressFn | None]:
    """The callback a run reports to: `progress` itself when it is one; a `terminal_bar` for True
    when `on_terminal()`; None (silent) otherwise."""
    if callable(progress):
        yield progress
    elif progress is True and on_terminal():
        with terminal_bar() as update:
            yield update
    else:
        yield None
