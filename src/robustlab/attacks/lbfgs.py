"""L-BFGS attack (Szegedy et al. 2014): box-constrained L-BFGS towards a target class.

Minimises ||x' - x||_2^2 + c * CE(model(x'), target) over x' in [0, 1] with scipy's
L-BFGS-B, and binary-searches per sample for the smallest c whose minimiser reaches the
target (equivalently, Szegedy's line search over the weight of the norm). The samples of a
batch are solved as one separable problem (the objective is their sum), float64 on the CPU.
Without ``targets=`` the target is each sample's runner-up class and success stays
"misclassified".
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from torch.nn import functional as F

from robustlab.attacks.base import MinimumNormAttack, RunOutput, judge
from robustlab.attacks.registry import register_attack
from robustlab.attacks.search import next_constant, runner_up
from robustlab.core.errors import ConfigError
from robustlab.core.norms import flat_norm
from robustlab.core.threat import Norm


@register_attack
class LBFGS(MinimumNormAttack):
    """Szegedy's L-BFGS attack: ``search_steps`` rounds over c from ``initial_const``,
    ``max_iter`` L-BFGS-B iterations per round."""

    name = "lbfgs"
    norm = Norm.L2

    def __init__(self, initial_const: float = 1e-2, search_steps: int = 8, max_iter: int = 100, **kwargs):
        super().__init__(**kwargs)
        if initial_const <= 0 or search_steps < 1 or max_iter < 1:
            raise ConfigError(f"{self.name}: initial_const must be > 0, search_steps and max_iter >= 1")
        self.initial_const = float(initial_const)
        self.search_steps = int(search_steps)
        self.max_iter = int(max_iter)

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n, dev, k = len(x), x.device, model.num_classes
        with torch.no_grad():
            goal = targets if targets is not None else runner_up(model(x), y, k)
        x64 = x.detach().double().cpu()
        c = torch.full((n,), self.initial_const, dtype=torch.float64)
        lo, hi = torch.zeros_like(c), torch.full_like(c, float("inf"))
        best, best_l2 = x.clone(), torch.full((n,), float("inf"), device=dev)
        queries = torch.zeros(n, dtype=torch.int64, device=dev)
        calls = [0]
        dtype = next(model.parameters()).dtype

        def objective(flat: np.ndarray, c_dev: torch.Tensor):
            z = torch.from_numpy(flat).view_as(x64).to(dev, dtype).requires_grad_(True)
            with torch.enable_grad():
                scores = model(z)
                ce = F.cross_entropy(scores[:, :k], goal, reduction="none")
                loss = ((z - x.to(dtype)).flatten(1).pow(2).sum(1) + c_dev * ce).sum()
                (g,) = torch.autograd.grad(loss, z)
            calls[0] += 1
            return float(loss.detach()), g.detach().double().cpu().numpy().ravel()

        bounds = [(0.0, 1.0)] * x64.numel()
        for _ in range(self.search_steps):
            c_dev = c.to(dev, dtype)
            calls[0] = 0
            res = minimize(objective, x64.numpy().ravel(), args=(c_dev,), jac=True, method="L-BFGS-B",
                           bounds=bounds, options={"maxiter": self.max_iter})
            x_new = torch.from_numpy(res.x).view_as(x64).to(dev, x.dtype).clamp(0.0, 1.0)
            queries += calls[0] + 1
            with torch.no_grad():
                success, _, _ = judge(model, x_new, y, targets, criterion)
            l2 = flat_norm(x_new - x, "l2")
            improve = success & (l2 < best_l2)
            best = torch.where(improve.view(-1, 1, 1, 1), x_new, best)
            best_l2 = torch.where(improve, l2, best_l2)
            c, lo, hi = next_constant(c, lo, hi, success.cpu())
        return RunOutput(best, queries)
