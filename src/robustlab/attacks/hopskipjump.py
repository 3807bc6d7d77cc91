"""HopSkipJump (Chen, Jordan & Wainwright 2020): decision-based minimum-norm attack.

Only the model's decision is used (``model.predict`` through the criterion). From a random
adversarial start, each iteration binary-searches to the boundary, estimates the
boundary's normal from the decisions on random probes around the boundary point, takes a
geometric step along it and searches back to the boundary. Batched over samples; every
decision asked for a sample counts as one query of that sample.
"""

from __future__ import annotations

import math

import torch

from robustlab.attacks.base import MinimumNormAttack, RunOutput, judge
from robustlab.attacks.registry import register_attack
from robustlab.core.errors import ConfigError
from robustlab.core.norms import check_norm, flat_norm
from robustlab.core.threat import AttackKind


@register_attack
class HopSkipJump(MinimumNormAttack):
    """HopSkipJump in L2 or Linf.

    - ``steps``: gradient-estimation iterations; ``init_evals`` / ``max_evals``: probes
      at iteration t are min(init_evals * sqrt(t), max_evals);
    - ``init_tries``: random uniform images tried per sample to find an adversarial start;
    - ``gamma``: sets the binary-search tolerance theta = gamma / d^{3/2} (L2) or gamma / d^2 (Linf);
    - ``probe_chunk``: probes evaluated per forward pass chunk (bounds memory).
    """

    name = "hsj"
    aliases = ("hopskipjump",)
    kind = AttackKind.BLACK_BOX

    def __init__(
        self,
        norm: str = "l2",
        steps: int = 40,
        init_evals: int = 100,
        max_evals: int = 10_000,
        init_tries: int = 100,
        gamma: float = 1.0,
        probe_chunk: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.norm = check_norm(norm, ("l2", "linf"))
        if min(steps, init_evals, max_evals, init_tries, probe_chunk) < 1 or gamma <= 0:
            raise ConfigError(f"{self.name}: counts must be >= 1 and gamma > 0")
        self.steps = int(steps)
        self.init_evals = int(init_evals)
        self.max_evals = int(max_evals)
        self.init_tries = int(init_tries)
        self.gamma = float(gamma)
        self.probe_chunk = int(probe_chunk)

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n, dev = len(x), x.device
        d = x[0].numel()
        theta = self.gamma / (d ** 1.5 if self.norm == "l2" else d**2)
        queries = torch.zeros(n, dtype=torch.int64, device=dev)

        def is_adv(x_eval: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            queries.index_add_(0, rows, torch.ones_like(rows))
            t = targets[rows] if targets is not None else None
            return judge(model, x_eval, y[rows], t, criterion)[0]

        start, ok = self._initial_point(x, is_adv, generator)
        rows = ok.nonzero().squeeze(1)
        best = x.clone()
        if len(rows) == 0:
            return RunOutput(best, queries)
        x0 = x[rows]
        xb = self._to_boundary(x0, start[rows], rows, is_adv, theta, blend=True)
        dist = flat_norm(xb - x0, self.norm)
        for t in range(1, self.steps + 1):
            delta = 0.1 if t == 1 else (math.sqrt(d) * theta if self.norm == "l2" else d * theta) * dist
            evals = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            grad = self._estimate_normal(xb, rows, delta, evals, is_adv, generator)
            update = grad / flat_norm(grad, "l2").clamp_min(1e-12).view(-1, 1, 1, 1)
            if self.norm == "linf":
                update = grad.sign()
            step = (dist / math.sqrt(t)).view(-1, 1, 1, 1)
            settled = torch.zeros(len(rows), dtype=torch.bool, device=dev)
            for _ in range(30):  # geometric step-size search: halve until adversarial
                sub = (~settled).nonzero().squeeze(1)
                if len(sub) == 0:
                    break
                adv = is_adv((xb[sub] + step[sub] * update[sub]).clamp(0.0, 1.0), rows[sub])
                settled[sub] = adv
                step[sub] = torch.where(adv.view(-1, 1, 1, 1), step[sub], step[sub] / 2)
            cand = torch.where(settled.view(-1, 1, 1, 1), (xb + step * update).clamp(0.0, 1.0), xb)
            xb = self._to_boundary(x0, cand, rows, is_adv, theta)
            dist = flat_norm(xb - x0, self.norm)
        best[rows] = xb
        return RunOutput(best, queries)

    # ---------------------------------------------------------------- pieces
    def _initial_point(self, x, is_adv, generator):
        """A random uniform image the model gets wrong, per sample (ok = found)."""
        n, dev = len(x), x.device
        start = x.clone()
        ok = torch.zeros(n, dtype=torch.bool, device=dev)
        for _ in range(self.init_tries):
            rows = (~ok).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            noise = torch.rand((len(rows), *x.shape[1:]), generator=generator).to(dev, x.dtype)
            adv = is_adv(noise, rows)
            start[rows] = torch.where(adv.view(-1, 1, 1, 1), noise, start[rows])
            ok[rows] = adv
        return start, ok

    def _blend(self, x0, xa, alpha, blend: bool = False):
        a = alpha.view(-1, 1, 1, 1)
        if self.norm == "l2" or blend:
            return (1 - a) * x0 + a * xa
        return torch.minimum(torch.maximum(xa, x0 - a), x0 + a)

    def _to_boundary(self, x0, xa, rows, is_adv, theta, blend: bool = False):
        """Binary search between x0 (not adversarial) and xa (adversarial); returns the
        adversarial end, within tolerance theta of the boundary. The path is the straight
        line for L2 (and for the initial search, ``blend``), the shrinking Linf box otherwise."""
        if self.norm == "l2" or blend:
            high = torch.ones(len(x0), device=x0.device)
            tol = torch.full_like(high, theta)
        else:
            high = flat_norm(xa - x0, "linf")
            tol = torch.minimum(high * theta, torch.full_like(high, theta))
        low = torch.zeros_like(high)
        for _ in range(64):
            open_ = (high - low) > tol
            if not bool(open_.any()):
                break
            sub = open_.nonzero().squeeze(1)
            mid = (high[sub] + low[sub]) / 2
            adv = is_adv(self._blend(x0[sub], xa[sub], mid, blend), rows[sub])
            high[sub] = torch.where(adv, mid, high[sub])
            low[sub] = torch.where(adv, low[sub], mid)
        return self._blend(x0, xa, high, blend)

    def _estimate_normal(self, xb, rows, delta, evals, is_adv, generator):
        """Monte-Carlo estimate of the boundary normal at xb from `evals` decisions per sample,
        with the mean decision as baseline: mean((phi - mean phi) u)."""
        m = len(xb)
        shape = xb.shape[1:]
        delta = torch.as_tensor(delta, device=xb.device, dtype=xb.dtype).expand(m).reshape(-1, 1, 1, 1)
        sum_fu = torch.zeros_like(xb)
        sum_u = torch.zeros_like(xb)
        sum_f = torch.zeros(m, device=xb.device, dtype=xb.dtype)
        chunk = max(self.probe_chunk, 1)
        for lo in range(0, evals, chunk):
            c = min(chunk, evals - lo)
            if self.norm == "l2":
                u = torch.randn((c, m, *shape), generator=generator)
            else:
                u = torch.rand((c, m, *shape), generator=generator) * 2 - 1
            u = u.to(xb.device, xb.dtype)
            u = u / flat_norm(u.flatten(0, 1), "l2").view(c, m, 1, 1, 1).clamp_min(1e-12)
            probe = (xb.unsqueeze(0) + delta.unsqueeze(0) * u).clamp(0.0, 1.0)
            u = (probe - xb.unsqueeze(0)) / delta.unsqueeze(0)
            f = is_adv(probe.flatten(0, 1), rows.repeat(c)).view(c, m).to(xb.dtype) * 2 - 1
            sum_fu += (f.view(c, m, 1, 1, 1) * u).sum(0)
            sum_u += u.sum(0)
            sum_f += f.sum(0)
        mean_f = (sum_f / evals).view(-1, 1, 1, 1)
        centred = sum_fu / evals - mean_f * sum_u / evals
        unanimous = mean_f.abs() == 1  # every probe on one side: step along (or against) the mean probe
        return torch.where(unanimous, mean_f * sum_u / evals, centred)

