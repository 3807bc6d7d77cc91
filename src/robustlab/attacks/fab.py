"""FAB, the fast adaptive boundary attack (Croce & Hein 2020), untargeted and targeted (FAB-T).

Each step linearises the model at the current iterate x_k: the boundary between the label y
and a class j is approximated by the hyperplane f_j(x_k) - f_y(x_k) + <g_j, z - x_k> = 0
(g_j the gradient of f_j - f_y). Untargeted FAB picks the class whose hyperplane is nearest
in the dual norm, FAB-T always the target's. Both x_k and the clean x_0 are projected onto
that hyperplane inside the [0, 1] box (minimal `norm` step, `hyperplane_step`), and the next
iterate mixes the two projections, biased towards the one from x_0 so the perturbation stays
small:

    x_{k+1} = clip((x_k + eta d_k)(1 - a) + (x_0 + eta d_0) a),
    a = min(||d_k|| / (||d_k|| + ||d_0||), alpha_max).

When x_{k+1} is adversarial (judged by the model's decision) it is recorded if it is the
closest so far, and the iterate steps back towards x_0: x_{k+1} = x_0 + beta (x_{k+1} - x_0).
Restarts after the first start from a random point around x_0 (radius half of ``eps``, or of
the distance found so far). Scores are the model's (a metric head's surrogate scores, the real
classes only); success is always the model's real decision.

With ``eps`` set (AutoAttack's use), a point farther than eps does not count: the sample keeps
its clean image, and later runs attack only the samples not yet fooled within eps. Runs
(restarts, FAB-T's targets) of a batch go through the model side by side, as in APGD; with eps,
the rows of a sample that one of its runs fooled within eps leave the batch every
``compact_every`` steps (the verdict within eps is settled; only a closer point is given up).
"""

from __future__ import annotations

import torch

from robustlab.attacks.apgd import run_groups
from robustlab.attacks.base import MinimumNormAttack, RunOutput, forward_decide, judge, rows_to_drop
from robustlab.attacks.registry import register_attack
from robustlab.core.errors import ConfigError
from robustlab.core.norms import check_norm, flat_norm
from robustlab.core.scores import best_other, runner_up_targets
from robustlab.core.threat import Norm, check_eps

_DUAL = {Norm.LINF: Norm.L1, Norm.L2: Norm.L2, Norm.L1: Norm.LINF}
_DEFAULT_RADIUS = {Norm.LINF: 0.3, Norm.L2: 1.0, Norm.L1: 5.0}
"""Random-start radius when neither ``eps`` nor a found distance gives one (pixel units)."""


def hyperplane_step(w: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The step d of least `norm` with <w, d> >= c and lo <= d <= hi, per row of (B, D) inputs.

    `c` is (B,); rows with c <= 0 get d = 0. A row whose hyperplane lies outside the box gets
    the box corner that goes furthest along w. Linf and L2 share one search: d_i =
    sign(w_i) min(t s_i, u_i) (u_i the room in the direction of w_i; s_i = 1 for Linf, |w_i| for
    L2), with <w, d> piecewise linear in t, solved for t by Newton's method (exact: it ends on the
    linear piece that holds the root); L1 fills the coordinates of largest |w_i| first.
    """
    a = w.abs()
    u = torch.where(w > 0, hi, -lo).clamp_min(0.0)
    need = c.clamp_min(0.0).unsqueeze(1)
    full = a * u
    if norm == Norm.L1:
        order = a.argsort(dim=1, descending=True)
        a_s, u_s, full_s = a.gather(1, order), u.gather(1, order), full.gather(1, order)
        before = full_s.cumsum(1) - full_s
        amount = ((need - before) / a_s.clamp_min(1e-30)).clamp_min(0.0)
        amount = torch.where(a_s > 0, torch.minimum(amount, u_s), torch.zeros_like(amount))
        return w.sign() * torch.zeros_like(w).scatter(1, order, amount)
    scale = torch.ones_like(a) if norm == Norm.LINF else a
    key = u if norm == Norm.LINF else torch.where(a > 0, u / a.clamp_min(1e-30), torch.full_like(a, float("inf")))
    slope = a * scale
    # <w, d>(t) = sum_{key_i <= t} full_i + t sum_{key_i > t} slope_i is concave and increasing: Newton's
    # steps from t = 0 rise to its root without passing it and stop when the saturated set
    # {key_i <= t} stops growing (a few steps where few coordinates saturate; no sort of D values)
    t = torch.zeros_like(need)
    saturated = key <= t
    while True:
        rest = (slope * ~saturated).sum(1, keepdim=True)
        t_next = (need - (full * saturated).sum(1, keepdim=True)) / rest.clamp_min(1e-30)
        t = torch.maximum(t, torch.where(rest > 0, t_next, torch.full_like(t, float("inf"))))
        grown = key <= t
        if torch.equal(grown, saturated):
            break
        saturated = grown
    step = torch.where(a > 0, torch.minimum(t * scale, u), torch.zeros_like(u))
    return w.sign() * step


@register_attack
class FAB(MinimumNormAttack):
    """FAB in Linf, L2 or L1; targeted (the hyperplane of the given target) with ``targets=``.

    - ``steps``: iterations per run (two model passes each; untargeted FAB backpropagates once
      per class, FAB-T once);
    - ``restarts``: runs per sample, from x_0 first, then from random points around it;
    - ``alpha_max``, ``eta``, ``beta``: the bias towards x_0, the overshoot, the step back;
    - ``eps``: None (minimum norm: every run on every sample, the closest success kept) or a
      budget (AutoAttack's use: points farther than eps do not count).
    """

    name = "fab"
    compact_every = 5
    """With ``eps``: every this many steps the rows of samples settled within eps leave the batch
    (0: never; the verdict is the same, only the passes differ)."""

    def __init__(
        self,
        norm: Norm | str = Norm.LINF,
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        eps: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.norm = check_norm(norm, (Norm.LINF, Norm.L2, Norm.L1))
        if steps < 1 or restarts < 1:
            raise ConfigError(f"{self.name}: steps and restarts must be >= 1")
        if not 0 <= alpha_max <= 1 or eta < 1 or not 0 < beta < 1:
            raise ConfigError(f"{self.name}: alpha_max must lie in [0, 1], eta >= 1 and beta in (0, 1)")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.alpha_max = float(alpha_max)
        self.eta = float(eta)
        self.beta = float(beta)
        self.eps = None if eps is None else check_eps(eps, f"{self.name}: eps")

    def planned_passes(self) -> tuple[int, int] | None:
        """At most (forward+backward, forward-only) passes per sample over all runs; None for
        untargeted FAB, whose steps backpropagate once per class."""
        return None

    def _passes(self) -> tuple[int, int]:
        runs = len(self._run_count())
        return self.steps * runs, self.steps * runs + 1

    def _run_count(self) -> range:
        return range(self.restarts)

    def _runs(self, model, x, y, targets) -> tuple[list[tuple[torch.Tensor | None, int]], int]:
        """(hyperplane target or None for the nearest class, restart index) of each run, and the
        passes spent choosing them."""
        return [(targets, r) for r in range(self.restarts)], 0

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n, dev = len(x), x.device
        best = x.clone()
        best_d = torch.full((n,), float("inf"), device=dev)
        runs, spent = self._runs(model, x, y, targets)
        queries = torch.full((n,), spent, dtype=torch.int64, device=dev)
        for _, group in run_groups(runs, n):
            within = best_d <= (self.eps if self.eps is not None else float("inf"))
            idx = (~within).nonzero().squeeze(1) if self.eps is not None else torch.arange(n, device=dev)
            if len(idx) == 0:
                break
            m, rows = len(group), idx.repeat(len(group))
            x0 = x[rows]
            starts = [self._random_start(x[idx], best_d[idx], generator) if r > 0 else x[idx] for _, r in group]
            rt = torch.cat([t[idx] for t, _ in group]) if group[0][0] is not None else None
            ct = targets[rows] if targets is not None else None
            found, d, passes = self._descend(model, x0, y[rows], rt, ct, criterion.select(rows, n), torch.cat(starts),
                                     samples=len(idx))
            queries[idx] += passes.view(m, -1).sum(dim=0)
            pick = d.view(m, -1).argmin(dim=0) * len(idx) + torch.arange(len(idx), device=dev)
            better = d[pick] < best_d[idx]
            best[idx] = torch.where(better.view(-1, 1, 1, 1), found[pick], best[idx])
            best_d[idx] = torch.where(better, d[pick], best_d[idx])
        if self.eps is not None:
            best = torch.where((best_d > self.eps).view(-1, 1, 1, 1), x, best)
        return RunOutput(best, queries)

    def _random_start(self, x0: torch.Tensor, found: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        radius = torch.full_like(found, self.eps if self.eps is not None else _DEFAULT_RADIUS[self.norm])
        radius = torch.minimum(radius, found)
        if self.norm == Norm.LINF:
            t = 2 * torch.rand(x0.shape, generator=generator) - 1
        else:
            t = torch.randn(x0.shape, generator=generator)
        t = t.to(x0.device, x0.dtype)
        t = t / flat_norm(t, self.norm).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x0 + 0.5 * radius.view(-1, 1, 1, 1) * t).clamp(0.0, 1.0)

    def _hyperplane(self, model, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                    rival_of_target: bool = False):
        """(w, f): the gradient (B, D) and value (B,) of f_j - f_y at `x` for the chosen class j
        (f_t - f_r for a target t, r = y or, with `rival_of_target`, t's strongest rival)."""
        k = model.num_classes
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            z = model(x)[:, :k]
            rows = torch.arange(len(x), device=x.device)
            if target is not None:
                # FAB-T's runner-up runs cross the target's boundary with the label; a call's own
                # targets (success: the target wins) that with the target's strongest rival
                rival = best_other(z.detach(), target)[1] if rival_of_target else y
                diff = z[rows, target] - z[rows, rival]
                (grad,) = torch.autograd.grad(diff.sum(), x)
                return grad.flatten(1), diff.detach()
            grads = torch.stack(
                [torch.autograd.grad(z[:, j].sum(), x, retain_graph=j < k - 1)[0].flatten(1) for j in range(k)], 1
            )
        z = z.detach()
        g = grads - grads[rows, y].unsqueeze(1)  # (B, K, D)
        f = z - z[rows, y].unsqueeze(1)
        dist = f.abs() / (flat_norm(g.flatten(0, 1), _DUAL[self.norm]).view(len(x), k) + 1e-12)
        dist[rows, y] = float("inf")
        j = dist.argmin(dim=1)
        return g[rows, j], f[rows, j]

    def _descend(self, model, x0, y, target, ct, criterion, x1, samples: int | None = None):
        """One FAB run from `x1`: (closest adversarial point, its distance, x0 and inf if none; the
        model passes each row made).

        With ``eps`` set, a sample is settled once one of its rows (row i is sample i % `samples`:
        the runs of a group side by side) found a point within eps: every ``compact_every`` steps
        such rows leave the batch, their siblings with them (what they would find later cannot
        change the verdict within eps)."""
        norm = self.norm
        n, shape, dev = len(x0), x0.shape, x0.device
        samples = samples or n
        best = x0.clone()
        best_d = torch.full((n,), float("inf"), device=dev)
        live = torch.arange(n, device=dev)  # rows still stepping
        passes = torch.zeros(n, dtype=torch.int64, device=dev)
        x0f, yl, tl, cl, crit = x0.flatten(1), y, target, ct, criterion
        for step in range(1, self.steps + 1):
            w, f = self._hyperplane(model, x1, yl, tl, rival_of_target=cl is not None)
            with torch.no_grad():
                x1f = x1.flatten(1)
                d1 = hyperplane_step(w, -f, -x1f, 1 - x1f, norm)
                d0 = hyperplane_step(w, -f + (w * (x1f - x0f)).sum(1), -x0f, 1 - x0f, norm)
                n1 = flat_norm(d1, norm).clamp_min(1e-8)
                n0 = flat_norm(d0, norm).clamp_min(1e-8)
                alpha = (n1 / (n1 + n0)).clamp(0.0, self.alpha_max).unsqueeze(1)
                x1f = ((x1f + self.eta * d1) * (1 - alpha) + (x0f + self.eta * d0) * alpha).clamp(0.0, 1.0)
                x1 = x1f.view(-1, *shape[1:])
                xl0 = x0f.view(-1, *shape[1:])
                scores, decision = forward_decide(model, x1)
                success, _, _ = judge(model, x1, yl, cl, crit, scores=scores, decision=decision)
                d = flat_norm(x1f - x0f, norm)
                better = success & (d < best_d[live])
                best[live] = torch.where(better.view(-1, 1, 1, 1), x1, best[live])
                best_d[live] = torch.where(better, d, best_d[live])
                x1 = torch.where(success.view(-1, 1, 1, 1), xl0 + self.beta * (x1 - xl0), x1)
                passes[live] += 2
            if self.eps is None or not self.compact_every or step % self.compact_every or step == self.steps:
                continue
            drop, dropped = rows_to_drop(live % samples, best_d[live] <= self.eps, samples)
            if dropped == len(drop):
                break
            if dropped:
                keep = (~drop).nonzero().squeeze(1)
                live, x1, x0f, yl = live[keep], x1[keep], x0f[keep], yl[keep]
                tl = tl[keep] if tl is not None else None
                cl = cl[keep] if cl is not None else None
                crit = crit.select(keep, len(drop))
        return best, best_d, passes


@register_attack
class FABT(FAB):
    """FAB-T as in AutoAttack: runs against each of the top ``n_targets`` runner-up classes of
    the clean scores (``restarts`` each); success stays "misclassified". Called with explicit
    ``targets=``, it is plain targeted FAB on those targets."""

    name = "fab-t"

    def __init__(self, norm: Norm | str = Norm.LINF, steps: int = 100, n_targets: int = 9, **kwargs) -> None:
        super().__init__(norm, steps=steps, **kwargs)
        if n_targets < 1:
            raise ConfigError(f"{self.name}: n_targets must be >= 1")
        self.n_targets = int(n_targets)

    def planned_passes(self) -> tuple[int, int]:
        return self._passes()

    def _run_count(self) -> range:
        return range(self.restarts * self.n_targets)

    def _runs(self, model, x, y, targets):
        if targets is not None:
            return super()._runs(model, x, y, targets)
        return [(t, r) for t in runner_up_targets(model, x, y, self.n_targets) for r in range(self.restarts)], 1


__all__ = ["FAB", "FABT", "hyperplane_step"]
