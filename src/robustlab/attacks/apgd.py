"""APGD (Croce & Hein 2020): PGD with AutoAttack's step-size schedule and momentum.

Each run starts at step size 2 * eps and halves it at checkpoints w_j (p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), as fractions of ``steps``) when the loss
rose in fewer than ``rho`` of the steps since the last checkpoint, or when the step size
was not halved at the last checkpoint and the best loss has not improved since. A halving
restarts the sample from its best point. Steps mix the projected gradient step with the
previous move: x_{k+1} = P(x_k + a (z_{k+1} - x_k) + (1 - a)(x_k - x_{k-1})), a = ``momentum``.

`APGDT` is the targeted version of AutoAttack: one run per runner-up class (the top
``n_targets`` wrong classes of the clean scores) with the targeted DLR loss, each run on
the samples still standing; success stays "misclassified".

Restarts and targets run side by side: the runs of a batch go through the model as one batch of
copies (up to `MAX_ROWS` rows), each sample keeping its best copy, so the 9 targets of APGD-T
cost one step loop, not nine; a sample fooled by an earlier group is not attacked by later ones.
Every ``compact_every`` steps (and at each checkpoint) the rows of samples already fooled, by
that row or by a sibling run (another target or restart of the same sample), leave the batch:
the verdicts are those of running every row to the end, for fewer passes.
"""

from __future__ import annotations

import torch

from robustlab.attacks import progress
from robustlab.attacks.base import (
    FixedBudgetAttack,
    RunOutput,
    forward_loss,
    input_gradient_decide,
    judge,
    rows_to_drop,
)
from robustlab.attacks.eot import EOT
from robustlab.attacks.objectives import bind_loss, get_attack_loss
from robustlab.attacks.registry import register_attack
from robustlab.attacks.trace import Trace, TraceView
from robustlab.core.errors import ConfigError
from robustlab.core.norms import normalize_direction, project, random_in_ball
from robustlab.core.scores import runner_up_targets
from robustlab.core.threat import Norm

MAX_ROWS = 512
"""Runs (restarts, targets) of one sample batch share a forward pass while their rows fit in this:
a batch of n samples runs max(1, MAX_ROWS // n) runs at once, so memory grows at most to that
many copies of a batch smaller than MAX_ROWS (none for batches of MAX_ROWS samples or more)."""


def run_groups(runs: list, n: int) -> list[tuple[int, list]]:
    """`runs` cut into consecutive groups of at most max(1, MAX_ROWS // n) runs, each with the index
    of its first run: a group's runs go through the model as one batch (one Python step loop for
    all of them); the next group attacks only the samples its predecessors left standing."""
    per = max(1, MAX_ROWS // max(n, 1))
    return [(i, runs[i : i + per]) for i in range(0, len(runs), per)]


def checkpoint_intervals(steps: int) -> list[int]:
    """Lengths of the intervals between APGD checkpoints for a run of `steps` iterations."""
    first, least, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    intervals, total, k = [], 0, first
    while total + k <= steps:
        intervals.append(k)
        total += k
        k = max(k - shrink, least)
    return intervals


@register_attack
class APGD(FixedBudgetAttack):
    """Auto-PGD in Linf or L2 with the "ce" or "dlr" loss; targeted when given ``targets=``.

    - ``steps``: gradient steps per run (one forward+backward each, plus a final forward);
    - ``restarts``: runs from random starts, each on the samples not yet fooled;
    - ``rho``: fraction of loss-increasing steps below which the step size halves;
    - ``momentum``: weight a of the new step (1 - a on the previous move).
    """

    name = "apgd"
    aliases = ("apgd-ce",)

    def __init__(
        self,
        eps: float,
        norm: Norm | str = Norm.LINF,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        **kwargs,
    ) -> None:
        super().__init__(eps, norm, **kwargs)
        if steps < 1 or restarts < 1:
            raise ConfigError(f"{self.name}: steps and restarts must be >= 1")
        if not 0 < rho <= 1 or not 0 < momentum <= 1:
            raise ConfigError(f"{self.name}: rho and momentum must lie in (0, 1]")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.loss = loss
        self.rho = float(rho)
        self.momentum = float(momentum)
        self._loss_fn = get_attack_loss(loss)

    _label = "apgd"
    _samples = 1
    compact_every = 5
    """Every this many steps (and at each checkpoint) the rows of settled samples leave the batch
    (0: never; the result is the same, only the passes differ)."""

    def planned_passes(self) -> tuple[int, int]:
        """At most (forward+backward, forward-only) passes per sample: steps per run."""
        return self.steps * len(self._run_count()), 2

    def _run_count(self) -> range:
        return range(self.restarts)

    # ---------------------------------------------------------------- runs
    def _runs(self, model, x, y, targets) -> tuple[list[torch.Tensor | None], int]:
        """The loss targets of each run, and the forward passes spent choosing them."""
        return [targets] * self.restarts, 0

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n = len(x)
        out = x.clone()
        best_loss = torch.full((n,), float("-inf"), device=x.device)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        runs, spent = self._runs(model, x, y, targets)
        queries = torch.full((n,), spent, dtype=torch.int64, device=x.device)
        trace = Trace.start(n, len(runs), self.steps + 1, x.device)
        for first, group in run_groups(runs, n):
            idx = (~found).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            m, rows = len(group), idx.repeat(len(group))
            self._samples = len(idx)
            self._label = f"{self.name} runs {first + 1}-{first + m}/{len(runs)}" if len(runs) > 1 else self.name
            xv = x[rows]
            start = (xv + random_in_ball(xv, self.norm, self.eps, generator)).clamp(0.0, 1.0)
            lt = torch.cat([t[idx] for t in group]) if group[0] is not None else None
            ct = targets[rows] if targets is not None else None
            v_out, v_loss = xv.clone(), torch.full((len(rows),), float("-inf"), device=x.device)
            v_found = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
            v_queries = torch.zeros(len(rows), dtype=torch.int64, device=x.device)
            view = None if trace is None else trace.at(
                rows, first + torch.arange(m, device=x.device).repeat_interleave(len(idx)))
            self._descend(model, xv, y[rows], ct, lt, criterion.select(rows, n),
                          torch.arange(len(rows), device=x.device), start, v_out, v_loss, v_found, v_queries, view)
            # each sample keeps its best copy: an adversarial one, else the highest loss
            pick = torch.where(v_found, float("inf"), v_loss).view(m, -1).argmax(dim=0) * len(idx)
            pick = pick + torch.arange(len(idx), device=x.device)
            c_found, c_loss = v_found[pick], v_loss[pick]
            keep = c_found | (c_loss > best_loss[idx])
            out[idx] = torch.where(keep.view(-1, 1, 1, 1), v_out[pick], out[idx])
            best_loss[idx] = torch.where(keep & ~c_found, c_loss, best_loss[idx])
            found[idx] |= c_found
            queries[idx] += v_queries.view(m, -1).sum(dim=0)
        return RunOutput(out, queries, trace.extras() if trace is not None else {})

    def _project(self, x_new: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (x0 + project(x_new - x0, self.norm, self.eps)).clamp(0.0, 1.0)

    def _descend(self, model, x, y, ct, lt, criterion, idx, x_cur, out, out_loss, found, queries,
                 trace: TraceView | None = None):
        """One APGD run on rows `idx` from `x_cur`; writes each row's answer into `out`.

        ``ct`` are the call's targets (for the criterion), ``lt`` the loss's targets. A row is
        frozen at its first adversarial iterate and leaves the batch at the next compaction (every
        ``compact_every`` steps), with every other row of its sample (row i is sample
        i % `_samples`); rows are written back to `out` (their adversarial point, else their
        highest-loss point if it beats earlier runs') only when dropped from the batch or at the
        end, so the step loop makes no scattered writes.
        On a randomized model (`EOT`) a row is never frozen: one iterate that fools the mean of
        the draws may still be right on most of them, so every row keeps raising the expected
        loss for all ``steps`` and answers with its highest-loss point (as the reference's rand
        protocol, whose iterates run to the end).
        """
        settle = not isinstance(model, EOT)
        k = model.num_classes
        dev = x.device
        r = {"idx": idx, "x0": x[idx], "y": y[idx], "ct": ct, "lt": lt}
        crit = [criterion.select(idx, len(x))]  # the criterion of the rows still in the batch

        def evaluate(x_eval, with_grad: bool):
            loss_fn = bind_loss(self._loss_fn, r["y"], r["lt"], k)
            if with_grad:
                return input_gradient_decide(model, x_eval, loss_fn)
            with torch.no_grad():
                scores, loss, decision = forward_loss(model, x_eval, loss_fn, decide=True)
                return None, scores, loss, decision

        def judge_step(s, scores, decision, loss=None, step=0) -> None:
            success, _, _ = judge(model, s["x"], r["y"], r["ct"], crit[0], scores=scores, decision=decision)
            queries[r["idx"]] += (~s["done"]).long() if settle else 1
            if trace is not None and loss is not None:
                trace.record(r["idx"], step, loss, ~s["done"], success)
            s["done"] = s["done"] | success

        def write_back(s, rows) -> None:
            gi = r["idx"][rows]
            done, best_loss = s["done"][rows], s["best_loss"][rows]
            keep = done | (best_loss > out_loss[gi])
            answer = torch.where((done & settle).view(-1, 1, 1, 1), s["x"][rows], s["x_best"][rows])
            out[gi] = torch.where(keep.view(-1, 1, 1, 1), answer, out[gi])
            out_loss[gi] = torch.where(keep & ~done, best_loss, out_loss[gi])
            found[gi] = found[gi] | done

        grad, scores, loss, decision = evaluate(x_cur, True)
        n = len(idx)
        s = {
            "done": torch.zeros(n, dtype=torch.bool, device=dev),
            "x": x_cur,
            "x_prev": x_cur,
            "grad": grad,
            "loss": loss,
            "best_loss": loss.clone(),
            "x_best": x_cur.clone(),
            "grad_best": grad.clone(),
            "eta": torch.full((n,), 2.0 * self.eps, device=dev),
            "rises": torch.zeros(n, device=dev),
            "check_loss": loss.clone(),
            "halved": torch.zeros(n, dtype=torch.bool, device=dev),
        }
        judge_step(s, scores, decision, loss, 0)
        intervals = checkpoint_intervals(self.steps)
        boundaries = set(torch.tensor(intervals).cumsum(0).tolist())
        interval_i = 0
        for step in range(1, self.steps + 1):
            last = step == self.steps
            with torch.no_grad():
                a = self.momentum if step > 1 else 1.0
                eta = s["eta"].view(-1, 1, 1, 1)
                z = self._project(s["x"] + eta * normalize_direction(s["grad"], self.norm), r["x0"])
                x_new = self._project(s["x"] + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"]), r["x0"])
                s["x_prev"] = s["x"]
                s["x"] = torch.where((s["done"] & settle).view(-1, 1, 1, 1), s["x"], x_new)
            grad, scores, loss, decision = evaluate(s["x"], not last)
            judge_step(s, scores, decision, loss, step)
            better = loss > s["best_loss"]
            bm = better.view(-1, 1, 1, 1)
            s["best_loss"] = torch.where(better, loss, s["best_loss"])
            s["x_best"] = torch.where(bm, s["x"], s["x_best"])
            if last:
                break
            s["grad_best"] = torch.where(bm, grad, s["grad_best"])
            s["grad"] = grad
            s["rises"] += (loss > s["loss"]).float()
            s["loss"] = loss
            if step in boundaries:
                length = intervals[interval_i]
                interval_i += 1
                oscillating = s["rises"] <= self.rho * length
                stalled = ~s["halved"] & (s["check_loss"] >= s["best_loss"])
                halve = oscillating | stalled
                hm = halve.view(-1, 1, 1, 1)
                s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
                s["x"] = torch.where(hm & ~(s["done"] & settle).view(-1, 1, 1, 1), s["x_best"], s["x"])
                s["x_prev"] = torch.where(hm, s["x"], s["x_prev"])
                s["grad"] = torch.where(hm, s["grad_best"], s["grad"])
                s["halved"] = halve
                s["check_loss"] = s["best_loss"].clone()
                s["rises"].zero_()
                if progress.enabled():  # samples standing (rows are copies of them, one per run)
                    standing = len(torch.unique(r["idx"][~s["done"]] % self._samples))
                    progress.report(self._label, step, self.steps, standing)
            if settle and self.compact_every and (step in boundaries or step % self.compact_every == 0):
                # the loop's only host sync: drop the rows whose sample is settled (by this row or
                # by a sibling run of the same sample), or stop when none is left
                drop, dropped = rows_to_drop(r["idx"] % self._samples, s["done"], self._samples)
                if dropped == len(drop):
                    break
                if dropped:
                    write_back(s, drop.nonzero().squeeze(1))
                    keep = (~drop).nonzero().squeeze(1)
                    crit[0] = crit[0].select(keep, len(drop))
                    s = {key: v[keep] for key, v in s.items()}
                    r = {key: (v[keep] if v is not None else None) for key, v in r.items()}
        write_back(s, torch.arange(len(r["idx"]), device=dev))


@register_attack
class APGDT(APGD):
    """Targeted APGD as in AutoAttack: runs against each of the top ``n_targets`` runner-up
    classes (targeted DLR loss by default) on the samples still standing.

    Called with explicit ``targets=``, it is plain targeted APGD on those targets.
    """

    name = "apgd-t"
    aliases = ("apgd-dlr-t",)

    def __init__(self, eps: float, norm: Norm | str = Norm.LINF, steps: int = 100, n_targets: int = 9,
                 loss: str = "dlr", **kwargs) -> None:
        super().__init__(eps, norm, steps=steps, loss=loss, **kwargs)
        if n_targets < 1:
            raise ConfigError(f"{self.name}: n_targets must be >= 1")
        self.n_targets = int(n_targets)

    def _run_count(self) -> range:
        return range(self.restarts * self.n_targets)

    def _runs(self, model, x, y, targets):
        if targets is not None:
            return super()._runs(model, x, y, targets)
        return [t for t in runner_up_targets(model, x, y, self.n_targets) for _ in range(self.restarts)], 1


__all__ = ["APGD", "APGDT", "checkpoint_intervals"]
