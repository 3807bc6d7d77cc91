"""PGD (Madry et al. 2018): iterated steepest-ascent steps projected onto the eps ball.

Random start, restarts that only re-attack samples still standing, per-sample best kept,
and early stop: a sample is frozen the step it becomes adversarial. The step loop makes no
host synchronisation except one check every ``check_every`` steps, where finished samples
are also dropped from the batch so later steps cost less.

Subclasses (BIM, MIM) change the defaults or the step direction through `_direction`,
whose per-row state (e.g. a momentum buffer) is carried and shrunk with the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustlab.attacks.base import FixedBudgetAttack, RunOutput, forward_loss, input_gradient_decide, judge
from robustlab.attacks.objectives import bind_loss, get_attack_loss
from robustlab.attacks.registry import register_attack
from robustlab.attacks.trace import Trace
from robustlab.core.errors import ConfigError
from robustlab.core.norms import normalize_direction, project, random_in_ball


@register_attack
class PGD(FixedBudgetAttack):
    """Projected gradient descent in Linf or L2; targeted when called with ``targets=``.

    - ``steps``: iterations per restart; ``step_size``: per-step size in the norm
      (default 2.5 * eps / steps); ``restarts``: random restarts for samples not yet fooled;
    - ``random_start``: start uniformly inside the ball (the first restart too);
    - ``loss``: "ce" (default), "margin" (C&W) or "dlr"; targeted when called with targets;
    - ``check_every``: steps between early-stop checks (the only host syncs in the loop).
    """

    name = "pgd"

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        steps: int = 40,
        step_size: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        loss: str = "ce",
        check_every: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(eps, norm, **kwargs)
        if steps < 1 or restarts < 1 or check_every < 1:
            raise ConfigError(f"{self.name}: steps, restarts and check_every must be >= 1")
        if step_size is not None and step_size <= 0:
            raise ConfigError(f"{self.name}: step_size must be > 0")
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else None
        self.restarts = int(restarts)
        self.random_start = bool(random_start)
        self.loss = loss
        self.check_every = int(check_every)
        self._loss_fn = get_attack_loss(loss)

    @property
    def batch_independent(self) -> bool:
        """Without a random start a sample's iterates do not depend on its batch."""
        return not self.random_start and self.restarts == 1

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def _direction(
        self, grad: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The unit step direction for `grad` and the new per-row state (None: stateless)."""
        return normalize_direction(grad, self.norm), state

    def planned_passes(self) -> tuple[int, int]:
        """At most (forward+backward, forward-only) passes per sample: steps per restart."""
        return self.steps * self.restarts, self.restarts + 2

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n = len(x)
        best = x.clone()
        best_loss = torch.full((n,), float("-inf"), device=x.device)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        queries = torch.zeros(n, dtype=torch.int64, device=x.device)
        trace = Trace.start(n, self.restarts, self.steps, x.device)
        for restart in range(self.restarts):
            idx = (~found).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            start = x[idx]
            if self.random_start or restart > 0:
                start = (start + random_in_ball(start, self.norm, self.eps, generator)).clamp(0.0, 1.0)
            last_restart = restart == self.restarts - 1
            self._descend(model, x, y, targets, criterion, idx, start, best, best_loss, found, queries,
                          judge_final=not last_restart, trace=trace, run=restart)
        return RunOutput(best, queries, trace.extras() if trace is not None else {})

    def _box(self, x0: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """For Linf, the intersection of the eps ball around x0 with [0, 1]: one clamp per step."""
        if self.norm != "linf":
            return None, None
        return (x0 - self.eps).clamp_min(0.0), (x0 + self.eps).clamp_max(1.0)

    def _step(self, x_cur, step_dir, x0, lo, hi) -> torch.Tensor:
        """One step of `alpha` along `step_dir`, projected onto the ball and the [0, 1] box."""
        if lo is not None:
            return torch.clamp(torch.add(x_cur, step_dir, alpha=self.alpha), lo, hi)
        return (x0 + project(x_cur + self.alpha * step_dir - x0, self.norm, self.eps)).clamp(0.0, 1.0)

    def ascend(
        self,
        loss_fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        *,
        eps: torch.Tensor | None = None,
        step_size: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Maximise ``loss_fn(x_adv)``, any differentiable scalar loss of the whole batch (a
        training objective, metric losses included), with this attack's step rule.

        The same direction (`_direction`), step and projection as an attack run, for
        ``steps`` steps, but no judging and no early stop: for adversarial training, where
        the loss is the objective's own and the model's decision may not exist yet. ``eps``
        (N,) per-sample radii replace ``self.eps``; ``step_size`` (N,) per-sample steps
        (default: ``self.alpha`` scaled by eps / self.eps). ``start`` replaces the random
        start (default: uniform in each ball when ``random_start``, else ``x``). Returns
        x_adv in [0, 1] and in each ball, detached. Gradients flow to x only: model
        parameters' ``.grad`` is left untouched.
        """
        n = len(x)
        x0 = x.detach()
        radius = eps.to(x0) if eps is not None else torch.full((n,), self.eps, device=x0.device)
        alpha = step_size.to(x0) if step_size is not None else radius * (self.alpha / max(self.eps, 1e-12))
        r4, a4 = radius.view(-1, 1, 1, 1), alpha.view(-1, 1, 1, 1)
        if start is None:
            start = x0
            if self.random_start:
                start = x0 + random_in_ball(x0, self.norm, 1.0, generator) * r4
        lo, hi = ((x0 - r4).clamp_min(0.0), (x0 + r4).clamp_max(1.0)) if self.norm == "linf" else (None, None)
        x_cur = self._project(start.detach(), x0, radius, lo, hi)
        state: torch.Tensor | None = None
        for _ in range(self.steps):
            x_var = x_cur.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(loss_fn(x_var), x_var)
            step_dir, state = self._direction(grad, state)
            x_cur = self._project(x_cur.detach() + a4 * step_dir, x0, radius, lo, hi)
        return x_cur.detach()

    def _project(self, x_new, x0, radius, lo, hi) -> torch.Tensor:
        """`x_new` projected onto the per-sample balls around x0 and the [0, 1] box."""
        if lo is not None:
            return torch.clamp(x_new, lo, hi)
        return (x0 + project(x_new - x0, self.norm, radius)).clamp(0.0, 1.0)

    def _descend(
        self, model, x, y, targets, criterion, idx, x_cur, best, best_loss, found, queries, judge_final,
        trace: Trace | None = None, run: int = 0,
    ):
        """One restart from `x_cur` on rows `idx`; updates best/found/queries in place.

        A sample is frozen at the first iterate judged adversarial, so `x_cur` always holds
        each row's answer; rows are written back to `best` only when dropped or at the end.
        The final iterate is judged here only when another restart follows (otherwise the
        base class judges it), and kept over earlier restarts' if its loss is higher.
        """
        k = model.num_classes
        x0, yy = x[idx], y[idx]
        tt = targets[idx] if targets is not None else None
        done = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        state: torch.Tensor | None = None

        def write_back(rows: torch.Tensor, loss: torch.Tensor | None) -> None:
            gi = idx[rows]
            if loss is None:  # last restart: its final iterate replaces nothing better known
                best[gi] = x_cur[rows]
            else:
                keep = done[rows] | (loss[rows] > best_loss[gi])
                best[gi] = torch.where(keep.view(-1, 1, 1, 1), x_cur[rows], best[gi])
                best_loss[gi] = torch.where(keep, loss[rows], best_loss[gi])
            found[gi] = done[rows]

        lo, hi = self._box(x0)
        steps_taken = torch.zeros(len(idx), dtype=torch.int64, device=x.device)
        for step in range(self.steps):
            grad, scores, loss, decision = input_gradient_decide(model, x_cur, bind_loss(self._loss_fn, yy, tt, k))
            success, _, _ = judge(model, x_cur, yy, tt, criterion, scores=scores, decision=decision)
            if trace is not None:
                trace.record(idx, run, step, loss, ~done, success)
            steps_taken += ~done
            done = done | success
            step_dir, state = self._direction(grad, state)
            x_next = self._step(x_cur, step_dir, x0, lo, hi)
            x_cur = torch.where(done.view(-1, 1, 1, 1), x_cur, x_next)
            if (step + 1) % self.check_every == 0 and step + 1 < self.steps:
                if bool(done.all()):
                    break
                if done.float().mean() > 0.5:  # drop finished rows: later steps cost less
                    queries[idx] += steps_taken
                    steps_taken.zero_()
                    finished = done.nonzero().squeeze(1)
                    write_back(finished, None if not judge_final else torch.zeros(len(idx), device=x.device))
                    rows = (~done).nonzero().squeeze(1)
                    idx, x0, yy, x_cur, done = idx[rows], x0[rows], yy[rows], x_cur[rows], done[rows]
                    steps_taken = steps_taken[rows]
                    if lo is not None:
                        lo, hi = lo[rows], hi[rows]
                    tt = tt[rows] if tt is not None else None
                    state = state[rows] if state is not None else None
        queries[idx] += steps_taken
        all_rows = torch.arange(len(idx), device=x.device)
        if not judge_final:
            write_back(all_rows, None)
            return
        with torch.no_grad():
            scores, loss, decision = forward_loss(model, x_cur, bind_loss(self._loss_fn, yy, tt, k), decide=True)
        success, _, _ = judge(model, x_cur, yy, tt, criterion, scores=scores, decision=decision)
        queries[idx] += ~done
        done = done | success
        write_back(all_rows, loss)
