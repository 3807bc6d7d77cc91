"""DeepFool (Moosavi-Dezfooli et al. 2016): walk to the nearest linearized class boundary.

Multi-class, batched: each iteration makes one forward pass and one backward pass per
candidate class over the whole batch. The overshoot scales the *total* perturbation,
x' = x + (1 + overshoot) * r_total, so a point that lands on a boundary is pushed over it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustlab.attacks.base import MinimumNormAttack, RunOutput, judge
from robustlab.attacks.registry import register_attack
from robustlab.core.errors import ConfigError
from robustlab.core.norms import check_norm, flat_norm
from robustlab.core.scores import others_by_score


@register_attack
class DeepFool(MinimumNormAttack):
    """DeepFool in L2 or Linf; targeted (one candidate: the target) when given ``targets=``.

    - ``steps``: maximum iterations; ``overshoot``: relative push past the boundary;
    - ``candidates``: how many of the highest-scoring wrong classes are considered.
    """

    name = "deepfool"

    def __init__(
        self, norm: str = "l2", steps: int = 50, overshoot: float = 0.02, candidates: int = 10, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.norm = check_norm(norm, ("l2", "linf"))
        if steps < 1 or candidates < 1 or overshoot < 0:
            raise ConfigError(f"{self.name}: steps and candidates must be >= 1, overshoot >= 0")
        self.steps = int(steps)
        self.overshoot = float(overshoot)
        self.candidates = int(candidates)

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n, k, dev = len(x), model.num_classes, x.device
        with torch.no_grad():
            z0 = model(x)[:, :k]
        if targets is not None:
            cand = targets[:, None]
        else:
            ranked = others_by_score(z0, y)
            cand = ranked[:, : min(self.candidates, k - 1)]
        r_total = torch.zeros_like(x)
        queries = torch.zeros(n, dtype=torch.int64, device=dev)
        rows = torch.arange(n, device=dev)
        y_onehot = F.one_hot(y, k).to(x.dtype)
        scale = 1.0 + self.overshoot
        for it in range(self.steps + 1):
            xr = rows
            x_cur = (x[xr] + scale * r_total[xr]).clamp(0.0, 1.0).requires_grad_(True)
            with torch.enable_grad():
                scores = model(x_cur)
            success, _, _ = judge(model, x_cur.detach(), y[xr], None if targets is None else targets[xr],
                                  criterion, scores=scores.detach())
            queries[xr] += 1
            rows = rows[~success]
            if len(rows) == 0 or it == self.steps:
                break
            keep = ~success
            z = scores[:, :k]
            c = cand[xr]
            f = z.gather(1, c) - z.gather(1, y[xr, None])  # (m, nc): < 0 while y still wins
            grads = []
            for j in range(c.shape[1]):
                go = F.one_hot(c[:, j], k).to(x.dtype) - y_onehot[xr]
                go = torch.cat([go, go.new_zeros(len(go), scores.shape[1] - k)], 1)
                (g,) = torch.autograd.grad(scores, x_cur, grad_outputs=go, retain_graph=j + 1 < c.shape[1])
                grads.append(g[keep])
            g = torch.stack(grads, 1)  # (m', nc, C, H, W)
            f = f.detach()[keep]
            dual = "l2" if self.norm == "l2" else "l1"
            gnorm = flat_norm(g.flatten(0, 1), dual).view(len(g), -1).clamp_min(1e-12)
            dist = f.abs() / gnorm
            best = dist.argmin(1)
            g_l = g[torch.arange(len(g), device=dev), best]
            f_l = f.abs().gather(1, best[:, None]).squeeze(1) + 1e-4
            gn = gnorm.gather(1, best[:, None]).squeeze(1)
            if self.norm == "l2":
                step = (f_l / gn.pow(2)).view(-1, 1, 1, 1) * g_l
            else:
                step = (f_l / gn).view(-1, 1, 1, 1) * g_l.sign()
            r_total[rows] += step
        x_adv = (x + scale * r_total).clamp(0.0, 1.0)
        return RunOutput(x_adv, queries)
