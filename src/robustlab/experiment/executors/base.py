"""The executor contract: the driver submits tasks, then takes finished ones back one by one.

An executor runs functions of `robustlab.experiment.tasks` somewhere (this process, a Ray
cluster) and returns their outputs; it never touches the run directory. Failures come
back as values (`Done.error`), so one failing task does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from robustlab.core.registry import Registry

if TYPE_CHECKING:
    from robustlab.experiment.spec_parts import ExecutorSpec


@dataclass(frozen=True)
class Resources:
    """What one task asks of a worker (Ray's `num_cpus` / `num_gpus`; fractions allowed)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class Done:
    """A finished task: its `tag` (given at submit), and its `value` or its `error` (one line)."""

    tag: Any
    value: Any = None
    error: str | None = None


class Executor(Protocol):
    name: str

    def share(self, value: Any) -> Any:
        """A handle to `value` that tasks take as an argument (Ray: one object-store copy)."""
        ...

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        tag: Any,
        resources: Resources = Resources(),
        priority: int = 0,
        progress: Callable[..., None] | None = None,
    ) -> None:
        """Queue `fn(*args)`. `priority`: lower runs first where tasks wait for one worker.
        `progress`: passed as `fn(..., progress=...)` by executors that run in this process."""
        ...

    def pending(self) -> int:
        """Tasks submitted and not yet taken back by `next_done`."""
        ...

    def next_done(self) -> Done:
        """Block until a task has finished; return it (in completion order)."""
        ...

    def close(self) -> None:
        """Cancel what is still queued and release the workers."""
        ...


def describe(exc: BaseException) -> str:
    """One line for a failed task: the exception type and message."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


ExecutorFactory = Callable[["ExecutorSpec", bool], Executor]
EXECUTORS: Registry[ExecutorFactory] = Registry("executor")
"""name -> `factory(spec, debug) -> Executor` (`robustlab.experiment.executors` registers local and ray)."""
