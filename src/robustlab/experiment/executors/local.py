"""The in-process executor: tasks run one at a time in the calling process (the default)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from robustlab.core.errors import RobustlabError
from robustlab.experiment.executors.base import Done, Resources, describe


class LocalExecutor:
    """Runs each task when the driver asks for the next finished one, lowest `priority` first,
    then in submission order. No threads, no processes: numbers and tracebacks as in a plain
    call. `KeyboardInterrupt` stops the run; any other exception becomes `Done.error`."""

    name = "local"

    def __init__(self, debug: bool = False) -> None:
        self._queue: list[tuple[int, int, Callable[..., Any], tuple, Any, Any]] = []
        self._order = itertools.count()
        self.debug = debug

    def share(self, value: Any) -> Any:
        return value

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        tag: Any,
        resources: Resources = Resources(),
        priority: int = 0,
        progress: Callable[..., None] | None = None,
    ) -> None:
        heapq.heappush(self._queue, (priority, next(self._order), fn, args, tag, progress))

    def pending(self) -> int:
        return len(self._queue)

    def next_done(self) -> Done:
        if not self._queue:
            raise RobustlabError("next_done() with no task pending")
        _, _, fn, args, tag, progress = heapq.heappop(self._queue)
        kwargs = {"progress": progress} if progress is not None else {}
        try:
            return Done(tag, value=fn(*args, **kwargs))
        except Exception as exc:
            if self.debug:
                raise
            return Done(tag, error=describe(exc))

    def close(self) -> None:
        self._queue.clear()
