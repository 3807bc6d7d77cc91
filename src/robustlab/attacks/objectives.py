"""Losses that gradient attacks ascend, per sample (N,).

Score losses are functions of the scores (N, C); model losses (`ModelLoss`, e.g. ``pc_ce``)
need the model's internals (features at several layers, learned prototypes) and make the
forward pass themselves. Attacks bind either kind to a batch with `bind_loss` and hand the
result to `input_gradient` / `forward_loss`, so one attack loop serves both.

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
from robustlab.core.registry import Registry
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
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), with pi the descending order of z. With two
    classes there is no third logit and the ratio is a constant (+-1, no gradient): the loss is
    then the plain logit difference (e.g. on the binarization test's binary readouts).
    """
    z = scores[:, :num_classes]
    reject = _reject_column(scores, num_classes)
    s = z.sort(dim=1, descending=True).values
    z_y = z.gather(1, y[:, None]).squeeze(1)
    if reject is not None:  # the true class and the reject column are the defender's side
        z_y = torch.maximum(z_y, reject)
    if num_classes < 3:
        other = best_other(z, y)[0] if targets is None else z.gather(1, targets[:, None]).squeeze(1)
        return -(z_y - other)
    if targets is None:
        others = best_other(z, y)[0]
        return -(z_y - others) / (s[:, 0] - s[:, min(2, num_classes - 1)] + 1e-12)
    z_t = z.gather(1, targets[:, None]).squeeze(1)
    denom = s[:, 0] - 0.5 * (s[:, min(2, num_classes - 1)] + s[:, min(3, num_classes - 1)]) + 1e-12
    return -(z_y - z_t) / denom


class ModelLoss:
    """An attack loss computed from the model's internals: ``forward_loss(model, x, y, targets)
    -> (scores = model(x), per-sample loss)`` in one forward pass."""

    name: str = ""

    def forward_loss(self, model, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None):
        raise NotImplementedError


def _pc_term(features: torch.Tensor, centres: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-sample eq. 5 of paper 004 without its constant centre-centre part:
    ||f - w_label|| - mean_{j != label} ||f - w_j||."""
    d = (features[:, None, :] - centres[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    own = d.gather(1, label[:, None]).squeeze(1)
    return own - (d.sum(1) - own) / (d.shape[1] - 1)


class PCPlusCE(ModelLoss):
    """Paper 004's adaptive white-box loss (section 5.1, Table 3): CE of the linear logits plus
    the prototype conformity term at every tap the PCL head was trained with (its learned
    prototypes, the final features when ``features_pc``). Untargeted: ascend CE(y) + PC(y);
    targeted: ascend -(CE(t) + PC(t)). Needs a model with a ``pcl`` head."""

    name = "pc_ce"

    def forward_loss(self, model, x, y, targets):
        head = getattr(model, "head", None)
        if head is None or not hasattr(head, "pc_taps") or not hasattr(model, "forward_stages"):
            raise ConfigError("the pc_ce attack loss needs a model with a pcl head")
        stages = model.forward_stages(x)
        features = stages["features"]
        scores = head(features)
        label = targets if targets is not None else y
        loss = F.cross_entropy(head.logits(features), label, reduction="none")
        for f_l, centres in head.pc_taps(stages):
            loss = loss + _pc_term(f_l, centres, label)
        return scores, (-loss if targets is not None else loss)


ATTACK_LOSSES: Registry[AttackLoss | ModelLoss] = Registry("attack loss")
ATTACK_LOSSES.register("ce", cross_entropy)
ATTACK_LOSSES.register("margin", margin)
ATTACK_LOSSES.register("dlr", dlr)
ATTACK_LOSSES.register("pc_ce", PCPlusCE())


def get_attack_loss(name: str) -> AttackLoss | ModelLoss:
    """The attack loss called `name` (ce, margin, dlr, pc_ce, or a registered one)."""
    return ATTACK_LOSSES.get(name)


class BoundLoss:
    """A loss bound to a batch's labels. A score loss is called on the scores (``bound(scores)``);
    a model loss (``model_loss`` True) makes its own pass: ``forward_loss(model, x) -> (scores, loss)``."""

    def __init__(self, loss: AttackLoss | ModelLoss, y: torch.Tensor, targets: torch.Tensor | None,
                 num_classes: int) -> None:
        self.loss, self.y, self.targets, self.num_classes = loss, y, targets, num_classes
        self.model_loss = isinstance(loss, ModelLoss)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        if self.model_loss:
            raise ConfigError(f"the {self.loss.name} attack loss needs the model, not only its scores")
        return self.loss(scores, self.y, self.targets, self.num_classes)  # type: ignore[operator]

    def forward_loss(self, model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.model_loss:
            return self.loss.forward_loss(model, x, self.y, self.targets)  # type: ignore[union-attr]
        scores = model(x)
        return scores, self(scores)


def bind_loss(loss: AttackLoss | ModelLoss, y: torch.Tensor, targets: torch.Tensor | None,
              num_classes: int) -> BoundLoss:
    """`loss` for the batch with labels `y` (and `targets`), ready for `input_gradient`."""
    return BoundLoss(loss, y, targets, num_classes)
