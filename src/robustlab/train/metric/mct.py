"""The `mct` objective (Appiah et al. 2020, paper 003 eq. 1-4):

    L = CE(f(x'), y) + alpha * L_MCT(f(x'_a), f(x_p), {f(x_n)}) + lambda * L_norm

Anchors x' = x + N(0, sigma^2) are Gaussian-noise copies of the batch images (eq. 3, one
sigma for every pixel, not clipped, as in the paper); positives are clean images of the
anchor's class (another image of the class, drawn at random, or the anchor's own clean image
when the batch has no other); negatives, per other class in the batch, the clean image most
cosine-similar to the anchor. L_norm = mean ||f(x'_a) - f(x_a)||_2: eq. 4 prints
||f(x'_p) - f(x_a)||_2, which we read as the noisy anchor against its clean image (the text
calls it a feature-norm term; ``norm_term="decay"`` uses mean ||f(x'_a)||_2 instead).

Cost: every image is forwarded twice (clean and noisy, in one batch of 2B), so an epoch costs
about twice a softmax epoch: this is the method, not an inefficiency.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustlab.core.errors import ConfigError
from robustlab.losses.multiclass_triplet import multiclass_triplet_loss
from robustlab.train.metric.triplet import PKObjective
from robustlab.train.objectives import ObjectiveOutput, register_objective


def random_positive(labels: torch.Tensor) -> torch.Tensor:
    """For each i, a random index j != i with labels[j] == labels[i] (i itself when there is none)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    weights = (same & ~eye).float()
    lonely = weights.sum(1) == 0
    weights[lonely] = eye[lonely].float()
    return torch.multinomial(weights, 1).squeeze(1)


class MCTObjective(PKObjective):
    """``sigma`` noise std (pixel units on [0, 1]), ``alpha`` and ``lam`` the weights of eq. 4
    (paper: 0.2 and 0.03), ``margin`` the optional margin of eq. 1, ``norm_term`` pair | decay."""

    def __init__(
        self,
        model,
        sigma: float = 0.1,
        alpha: float = 0.2,
        lam: float = 0.03,
        margin: float = 0.0,
        norm_term: str = "pair",
        images_per_class: int = 4,
    ) -> None:
        super().__init__(images_per_class)
        if sigma <= 0 or alpha < 0 or lam < 0 or norm_term not in ("pair", "decay"):
            raise ConfigError("mct: sigma must be > 0, alpha and lam >= 0, norm_term pair or decay")
        self.sigma, self.alpha, self.lam, self.margin = float(sigma), float(alpha), float(lam), float(margin)
        self.norm_term = norm_term

    def forward(self, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        noisy = x + self.sigma * torch.randn_like(x)
        feats = model.embed(torch.cat([noisy, x]))
        f_noisy, f_clean = feats[: len(x)], feats[len(x) :]
        logits = model.head.logits(f_noisy)
        ce = F.cross_entropy(logits, y)
        positives = f_clean[random_positive(y)]
        mct = multiclass_triplet_loss(f_noisy, positives, y, f_clean, y, model.num_classes, self.margin)
        norm = (f_noisy - f_clean).norm(dim=1).mean() if self.norm_term == "pair" else f_noisy.norm(dim=1).mean()
        return ObjectiveOutput(ce + self.alpha * mct + self.lam * norm, logits)


register_objective("mct")(MCTObjective)
