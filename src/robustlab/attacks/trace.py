"""An optional per-step record of an iterative attack's run, for the indicators of attack failure.

Off by default; ``with tracing(): attack(model, x, y)`` switches it on for that block. PGD and
APGD (and their subclasses) then put into ``AttackResult.extras``:

- ``loss_trace`` (N, runs, steps): each sample's attack loss at each step of each run
  (restart, or APGD-T target), NaN once the sample was frozen or dropped, or not run;
- ``found_during_run`` (N,): an iterate was judged adversarial during the run.

Recording is index writes into preallocated device tensors: no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

_ACTIVE: ContextVar[bool] = ContextVar("robustlab_attack_trace", default=False)


@contextmanager
def tracing() -> Iterator[None]:
    """Record the per-step trace of every PGD / APGD run inside the block."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class Trace:
    """Per-sample, per-step losses of one `_run` on `n` samples: `runs` runs of `steps` steps."""

    def __init__(self, n: int, runs: int, steps: int, device: torch.device) -> None:
        self.loss = torch.full((n, runs, steps), float("nan"), device=device)
        self.hits = torch.zeros(n, dtype=torch.int64, device=device)

    @classmethod
    def start(cls, n: int, runs: int, steps: int, device: torch.device) -> Trace | None:
        """A trace when tracing is on, else None (the attack then records nothing)."""
        return cls(n, runs, steps, device) if _ACTIVE.get() else None

    def record(self, rows: torch.Tensor, run: int | torch.Tensor, step: int, loss: torch.Tensor,
               live: torch.Tensor, success: torch.Tensor) -> None:
        """Losses of the samples `rows` in `run` (one per row when a tensor: runs batched together)
        at `step`; `live` marks the rows not yet frozen (their loss is recorded), `success` the
        iterates judged adversarial. (sample, run) pairs are distinct within a call."""
        old = self.loss[rows, run, step]
        self.loss[rows, run, step] = torch.where(live, loss.detach().float(), old)
        self.hits.index_add_(0, rows, success.long())

    def at(self, samples: torch.Tensor, runs: torch.Tensor) -> TraceView:
        """A recorder for a batch whose row i is sample `samples[i]` in run `runs[i]`."""
        return TraceView(self, samples, runs)

    def extras(self) -> dict[str, Any]:
        return {"loss_trace": self.loss, "found_during_run": self.hits > 0}


class TraceView:
    """`Trace.record` for a batch of (sample, run) rows, as APGD runs several runs at once."""

    def __init__(self, trace: Trace, samples: torch.Tensor, runs: torch.Tensor) -> None:
        self.trace, self.samples, self.runs = trace, samples, runs

    def record(self, rows: torch.Tensor, step: int, loss: torch.Tensor, live: torch.Tensor,
               success: torch.Tensor) -> None:
        self.trace.record(self.samples[rows], self.runs[rows], step, loss, live, success)
