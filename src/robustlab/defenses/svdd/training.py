"""Staged training of the SVDD layer on fixed backbone features (section 4.1).

Stage 1 trains on positives only (eq. 11) until the loss stops improving, because the
positive and negative hinges pull the radius and the centre in opposite directions;
stage 2 trains on positives and negatives together (eq. 11 + 12). All C classifiers are
trained at once: every sample is a positive of its class and a negative of the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from robustlab.core.errors import ConfigError
from robustlab.defenses.svdd.layer import SVDDLayer
from robustlab.losses.svdd import svdd_loss


@dataclass
class SVDDTrainConfig:
    """Stage 1 runs up to ``positive_epochs`` and stops once an epoch improves the loss by
    less than ``tol`` (relative); stage 2 runs ``epochs``. Adam with ``lr``."""

    positive_epochs: int = 30
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.01
    c_p: float = 10.0
    c_n: float = 10.0
    radius_weight: float = 1.0
    tol: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.positive_epochs < 0 or self.epochs < 0 or self.batch_size < 1:
            raise ConfigError("epochs must be >= 0 and batch_size >= 1")
        if not (self.lr > 0 and self.c_p > 0 and self.c_n > 0 and self.radius_weight >= 0):
            raise ConfigError("lr, c_p and c_n must be > 0 and radius_weight >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def _epoch(layer, features, labels, cfg, optimizer, use_negatives, generator) -> dict[str, float]:
    order = torch.randperm(len(features), generator=generator).to(features.device)
    sums = torch.zeros(3, device=features.device)
    batches = order.split(cfg.batch_size)
    for batch in batches:
        terms = svdd_loss(
            layer.distance2(features[batch]),
            layer.radius2(),
            labels[batch],
            cfg.c_p,
            cfg.c_n,
            use_negatives,
            cfg.radius_weight,
        )
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        sums += torch.stack([terms.loss, terms.positive, terms.negative]).detach()
    loss, pos, neg = (sums / len(batches)).tolist()
    return {"loss": loss, "positive": pos, "negative": neg}


def fit_svdd(
    layer: SVDDLayer, features: torch.Tensor, labels: torch.Tensor, cfg: SVDDTrainConfig | None = None
) -> list[dict[str, float]]:
    """Train `layer` (already initialised) in place on fixed `features` (N, D) and labels (N,).

    Returns one log per epoch: stage (1 or 2), epoch, loss and its positive/negative parts
    (``positive`` = c_p * sum over classes of the mean positive hinge, likewise ``negative``).
    """
    cfg = cfg or SVDDTrainConfig()
    generator = torch.Generator().manual_seed(cfg.seed)
    features, labels = features.detach(), labels.to(features.device)
    optimizer = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    history: list[dict[str, float]] = []
    layer.train()
    previous = float("inf")
    for epoch in range(cfg.positive_epochs):
        log = _epoch(layer, features, labels, cfg, optimizer, False, generator)
        history.append({"stage": 1, "epoch": epoch + 1, **log})
        if previous - log["loss"] < cfg.tol * abs(previous):
            break
        previous = log["loss"]
    for epoch in range(cfg.epochs):
        log = _epoch(layer, features, labels, cfg, optimizer, True, generator)
        history.append({"stage": 2, "epoch": epoch + 1, **log})
    layer.eval()
    return history
