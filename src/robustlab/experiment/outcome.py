"""What a run of the grid did (`GridOutcome`: counts, summary rows) and what failed in it
(`TaskFailure`, `GridFailed`): a failed task is listed, the others complete."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustlab.core.errors import RobustlabError


@dataclass
class TaskFailure:
    """A task that failed: what it was (`kind`: train, probe or cell; `label`) and why (one line).
    `cells`: how many grid cells it leaves without a row (1 for a cell, all of a model's
    for its training)."""

    kind: str
    label: str
    error: str
    cells: int = 0

    def line(self) -> str:
        lost = f" ({self.cells} cells not run)" if self.kind == "train" and self.cells else ""
        return f"{self.kind} {self.label}: {self.error}{lost}"


@dataclass
class GridOutcome:
    """What a run did. `rows`: the summary table (`robustlab.evaluate.summarize`) of every
    model that is ready; `cells`: cells in the grid; `stored_before`: already in the store;
    `computed`: written by this run; `selftests`: binarization self-test rows written by this run;
    `keys`: each ready model's store label (by model id); `samples`: its samples digest."""

    rows: list[dict[str, Any]]
    failures: list[TaskFailure] = field(default_factory=list)
    cells: int = 0
    stored_before: int = 0
    computed: int = 0
    trained: int = 0
    reused: int = 0
    executor: str = "local"
    selftests: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {"cells": self.cells, "stored_before": self.stored_before, "computed": self.computed,
                "failed": sum(f.cells for f in self.failures), "trained": self.trained, "reused": self.reused,
                "executor": self.executor, "selftests": self.selftests}


class GridFailed(RobustlabError):
    """Some tasks of the grid failed (the others completed and are stored)."""

    def __init__(self, outcome: GridOutcome) -> None:
        self.outcome = outcome
        n = len(outcome.failures)
        super().__init__(f"{n} task{'s' if n != 1 else ''} failed: " + "; ".join(f.line() for f in outcome.failures))
