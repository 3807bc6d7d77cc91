"""Losses that gradient attacks ascend, as functions of scores (N, C) -> per-sample (N,).

Untargeted losses grow as the true class loses; targeted ones grow as the target wins.
For models that can reject (scores have a C + 1-th "reject" column: M-SVDD's adversarial
class, a detector's score) the attack seeks a wrong class, not a rejection, and the
reject column counts on the defender's side: the margin and DLR losses put it with the
true class (the wrong class must beat both), and cross-entropy becomes -log(p_y + p_reject)
over all C + 1 columns. So one loss attacks the whole pipeline: a detected input is as far
from success as a correctly classified one (without a reject column nothing changes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from robustlab.core.errors import ConfigError
from robustlab.core.scores import best_other

AttackLoss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", int], torch.Tensor]


def _reject_column(scores: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    """The reject column (N,) of a model that can refuse, else None."""
    return scores[:, num_classes] if scores.shape[1] > num_classes else None


def cross_entropy(scores: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None, num_classes: int):
    """CE(y) untargeted; -CE(target) targeted; with a reject column, untargeted is
    -log(p_y + p_reject) over all C + 1 columns and targeted -CE(target) over all of them."""
    z = scores[:, :num_classes]
    reject = _reject_column(scores, num_classes)
    if reject is None:
        if targets is not None:
            return -F.cross_entropy(z, targets, reduction="none")
        return F.cross_entropy(z, y, reduction="none")
    full = scores[:, : num_classes + 1]
    if targets is not None:
        return -F.cross_entropy(full, targets, reduction="none")
    guard = torch.logsumexp(torch.stack([z.gather(1, y[:, None]).squeeze(1), reject], dim=1), dim=1)
    return torch.logsumexp(full, dim=1) - guard


def margin(scores: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None, num_classes: int):
    """C&W margin: max_{j != y} z_j - z_y (untargeted), z_t - max_{j != t} z_j (targeted), over
    the real classes; a reject column joins z_y (untargeted) or the others (targeted)."""
    z = scores[:, :num_classes]
    reject = _reject_column(scores, num_classes)
    label = targets if targets is not None else y
    z_label = z.gather(1, label[:, None]).squeeze(1)
    others = best_other(z, label)[0]
    if reject is not None:
        if targets is not None:
            others = torch.maximum(others, reject)
        else:
            z_label = torch.maximum(z_label, reject)
    return z_label - others if targets is not None else others - z_label


def dlr(scores: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None, num_classes: int):
    """Difference of logits ratio (Croce & Hein 2020), shift- and scale-invariant.

    Untargeted: -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3); targeted:
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), with pi the descending order of z.
    """
    z = scores[:, :num_classes]
    reject = _reject_column(scores, num_classes)
    s = z.sort(dim=1, descending=True).values
    z_y = z.gather(1, y[:, None]).squeeze(1)
    if reject is not None:  # the true class and the reject column are the defender's side
        z_y = torch.maximum(z_y, reject)
    if targets is None:
        others = best_other(z, y)[0]
        return -(z_y - others) / (s[:, 0] - s[:, min(2, num_classes - 1)] + 1e-12)
    z_t = z.gather(1, targets[:, None]).squeeze(1)
    denom = s[:, 0] - 0.5 * (s[:, min(2, num_classes - 1)] + s[:, min(3, num_classes - 1)]) + 1e-12
    return -(z_y - z_t) / denom


ATTACK_LOSSES: dict[str, AttackLoss] = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def get_attack_loss(name: str) -> AttackLoss:
    """The attack loss called `name` (ce, margin, dlr)."""
    try:
        return ATTACK_LOSSES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown attack loss {name!r}; choose one of {', '.join(ATTACK_LOSSES)}") from None
