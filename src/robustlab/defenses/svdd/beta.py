"""Tuning beta per class on validation data (section 4.2, last paragraph; Table 1).

- beta = O_c: the per-class betas with the best clean validation accuracy of the defended
  decision (eq. 13), found by coordinate ascent over a grid, one class at a time;
- beta = O_d: the strictest verification whose clean validation accuracy stays within
  ``budget`` of O_c's: O_d = s * O_c with the smallest common scale s on the grid that
  keeps accuracy >= acc(O_c) - budget (one scale for all classes, so no class pays the whole
  budget alone).

The validation distances are computed once; every candidate beta is then a cheap
elementwise re-evaluation of eq. 10, so the search costs no forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustlab.core.contract import batched_predict
from robustlab.core.errors import ConfigError, InputError
from robustlab.defenses.svdd.model import MSVDDModel

DEFAULT_GRID = tuple(round(0.5 + 0.025 * i, 4) for i in range(41))  # 0.5 .. 1.5
DEFAULT_SCALES = tuple(round(1.0 - 0.01 * i, 4) for i in range(51))  # 1.0 .. 0.5


@dataclass
class BetaTuning:
    """The tuned betas and their validation accuracies (fractions in [0, 1])."""

    beta_oc: torch.Tensor
    beta_od: torch.Tensor
    scale_od: float
    accuracy_oc: float
    accuracy_od: float
    accuracy_one: float


@torch.no_grad()
def _accuracy(
    model: MSVDDModel, dist2: torch.Tensor, radius2: torch.Tensor, y: torch.Tensor, betas: torch.Tensor
) -> torch.Tensor:
    """Validation accuracy for each candidate beta vector in `betas` (G, C) -> (G,)."""
    r = (betas[:, None, :] * radius2 - dist2[None]) / radius2  # (G, N, C)
    g, n, c = r.shape
    scores = model.scores_from_responses(r.reshape(g * n, c))
    return (model.decide(scores).view(g, n) == y[None]).float().mean(dim=1)


@torch.no_grad()
def tune_beta(
    model: MSVDDModel,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    budget: float = 0.03,
    grid: tuple[float, ...] = DEFAULT_GRID,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    rounds: int = 2,
) -> BetaTuning:
    """Tune O_c and O_d on (x_val, y_val) and store them in ``model.svdd`` (beta_oc, beta_od).

    ``budget``: the clean-accuracy loss allowed for O_d, a fraction in [0, 1) (0.03 = 3
    points). The model must be in its defended configuration; its mode is left unchanged.
    """
    if not model.defended:
        raise ConfigError("tune beta on the defended model (defended=True): the decision depends on v_a")
    if not 0 <= budget < 1:
        raise ConfigError(f"budget must be a fraction in [0, 1), got {budget}")
    if len(x_val) == 0:
        raise InputError("beta tuning needs validation data")
    device = model.svdd.radius.device
    feats = torch.cat([model.embed(x_val[i : i + 512].to(device)) for i in range(0, len(x_val), 512)])
    dist2 = model.svdd.distance2(feats)
    radius2 = model.svdd.radius2()
    y = y_val.to(device)
    grid_t = torch.tensor(grid, dtype=dist2.dtype, device=device)
    beta = torch.ones(model.num_classes, dtype=dist2.dtype, device=device)
    acc_one = float(_accuracy(model, dist2, radius2, y, beta[None])[0])
    for _ in range(rounds):
        for c in range(model.num_classes):
            cands = beta.repeat(len(grid_t), 1)
            cands[:, c] = grid_t
            acc = _accuracy(model, dist2, radius2, y, cands)
            best = acc.max()
            ties = (acc == best).nonzero().squeeze(1)
            beta[c] = grid_t[ties[(grid_t[ties] - 1.0).abs().argmin()]]  # ties: the beta closest to 1
    acc_oc = float(_accuracy(model, dist2, radius2, y, beta[None])[0])
    scale_t = torch.tensor(scales, dtype=dist2.dtype, device=device)
    acc_s = _accuracy(model, dist2, radius2, y, scale_t[:, None] * beta[None])
    ok = (acc_s >= acc_oc - budget - 1e-9).nonzero().squeeze(1)
    s = float(scale_t[ok].min()) if len(ok) else 1.0
    acc_od = float(_accuracy(model, dist2, radius2, y, s * beta[None])[0])
    model.svdd.beta_oc.copy_(beta)
    model.svdd.beta_od.copy_(s * beta)
    return BetaTuning(beta.cpu(), (s * beta).cpu(), s, acc_oc, acc_od, acc_one)


def accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Clean accuracy (a fraction) of `model.predict` on (x, y); rejections count as errors."""
    return float((batched_predict(model, x) == y.cpu()).float().mean()) if len(x) else 0.0
