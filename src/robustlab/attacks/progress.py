"""Progress from inside an attack run, for a caller that wants it (`evaluate_grid`'s bar).

Attacks call `report(member, done, total, standing)` at points where they already hold the
numbers on the host (APGD's checkpoints, Square's every-10-queries compaction), so reporting
adds no device syncs. Nothing is reported unless a caller opened `reporting(callback)`; a
caller that opens ``reporting(None)`` claims the run silent (`claimed`), so an attack called
on a large batch outside any such block draws its own bar (`Attack.__call__`) and one inside
it never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ProgressFn = Callable[[str, int, int, int], None]
"""callback(member, done, total, standing): e.g. ("apgd-t target 2/9", 40, 100, 212)."""

_CURRENT: ContextVar[ProgressFn | None] = ContextVar("robustlab_attack_progress", default=None)
_CLAIMED: ContextVar[bool] = ContextVar("robustlab_attack_progress_claimed", default=False)


@contextmanager
def reporting(callback: ProgressFn | None) -> Iterator[None]:
    """Send the progress of every attack run inside the block to `callback`."""
    token, claim = _CURRENT.set(callback), _CLAIMED.set(True)
    try:
        yield
    finally:
        _CLAIMED.reset(claim)
        _CURRENT.reset(token)


def claimed() -> bool:
    """Whether a caller opened `reporting` around this run (with a callback or None: silent)."""
    return _CLAIMED.get()


def enabled() -> bool:
    """Whether a caller listens (attacks skip computing what they would report otherwise)."""
    return _CURRENT.get() is not None


def report(member: str, done: int, total: int, standing: int) -> None:
    """Tell the listening caller, if any: `member` has done `done` of `total` steps or queries,
    with `standing` samples not yet fooled."""
    callback = _CURRENT.get()
    if callback is not None:
        callback(member, int(done), int(total), int(standing))
