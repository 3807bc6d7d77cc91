"""What an evaluation will cost, said before it starts: cells, samples, and the model passes
the attacks may make (an upper bound: early stopping only lowers it), timed on the model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from robustlab.core.contract import RobustModel


@dataclass
class GridPlan:
    """``cells`` (attack, eps) to run (``done`` of them already stored), ``samples`` each, and
    at most ``fb`` forward+backward and ``f`` forward-only passes per sample over the cells to
    run (None when an attack cannot say); ``seconds``: the bound at the measured pass times."""

    cells: int
    done: int
    samples: int
    fb: int | None
    f: int | None
    seconds: float | None

    def describe(self) -> str:
        todo = self.cells - self.done
        head = f"plan: {self.cells} cells ({self.done} already stored), {self.samples} samples each"
        if todo == 0:
            return head + "; nothing to run"
        if self.fb is None or self.f is None:
            return head + "; passes unknown (an attack without a fixed budget is in the grid)"
        passes = f"at most {self.fb:,} forward+backward and {self.f:,} forward passes per sample"
        eta = f", at most {_duration(self.seconds)} at the measured pass times" if self.seconds is not None else ""
        return f"{head}; {passes}{eta} (early stopping makes it less)"


def pass_seconds(model: RobustModel, x: torch.Tensor, repeats: int = 2) -> tuple[float, float]:
    """Seconds per sample of one forward+backward (input gradient) and of one forward pass of
    `model` on `x` (a batch on the model's device), the faster of `repeats` runs."""
    y = model.predict(x)

    def fb() -> None:
        xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xr)[:, : model.num_classes], y.clamp_min(0), reduction="sum")
            torch.autograd.grad(loss, xr)

    def fwd() -> None:
        with torch.no_grad():
            model.forward_decide(x) if hasattr(model, "forward_decide") else model(x)

    out = []
    for fn in (fb, fwd):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        out.append(best / max(len(x), 1))
    return out[0], out[1]


def plan_grid(
    attacks: Sequence[tuple[object, bool]], samples: int, costs: tuple[float, float] | None = None
) -> GridPlan:
    """The plan of cells given as (attack instance, already stored) pairs on `samples` samples;
    `costs`: seconds per sample of a forward+backward and a forward pass (`pass_seconds`)."""
    fb_total, f_total, known = 0, 0, True
    for attack, stored in attacks:
        if stored:
            continue
        passes = attack.planned_passes() if hasattr(attack, "planned_passes") else None
        if passes is None:
            known = False
            continue
        if getattr(attack, "eps", 1.0) == 0:  # eps 0: only the clean check runs
            passes = (0, 1)
        fb_total += passes[0]
        f_total += passes[1]
    done = sum(1 for _, stored in attacks if stored)
    seconds = None
    if known and costs is not None:
        seconds = samples * (fb_total * costs[0] + f_total * costs[1])
    return GridPlan(len(attacks), done, samples, fb_total if known else None, f_total if known else None, seconds)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
