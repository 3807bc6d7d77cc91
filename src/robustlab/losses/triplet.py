"""Triplet loss with in-batch mining (paper 002 eq. 2.11-2.12), on pytorch-metric-learning.

pml's pieces match the definitions (checked by tests against a naive float64 loop):
- ``TripletMarginMiner(type_of_triplets="semihard")`` keeps the triplets with
  d(a,p) < d(a,n) <= d(a,p) + margin (FaceNet's semi-hard; the closed upper end only admits
  triplets whose loss is exactly 0, which the non-zero average below ignores);
- ``TripletMarginMiner("all")``: every triplet violating the margin;
- "hard" uses ``BatchHardMiner``: per anchor its farthest positive and nearest negative
  (FaceNet's hard triplets; pml's "hard" triplet type means something else, d(a,n) <= d(a,p));
- ``TripletMarginLoss``: max(0, d(a,p) - d(a,n) + margin) averaged over the non-zero triplets.
Distances are Euclidean between L2-normalized embeddings (pml's default, as in FaceNet), in [0, 2].
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from robustlab.core.errors import ConfigError

MINING = ("semihard", "hard", "all")


class TripletLoss(nn.Module):
    """Mined triplet loss: ``margin`` > 0 on normalized-Euclidean distances, ``mining`` in MINING."""

    def __init__(self, margin: float = 0.2, mining: str = "semihard") -> None:
        super().__init__()
        if mining not in MINING:
            raise ConfigError(f"unknown triplet mining {mining!r}; choose one of {', '.join(MINING)}")
        if not margin > 0:
            raise ConfigError(f"triplet margin must be > 0, got {margin}")
        self.margin = float(margin)
        self.mining = mining
        self.miner = (
            miners.BatchHardMiner()
            if mining == "hard"
            else miners.TripletMarginMiner(margin=self.margin, type_of_triplets=mining)
        )
        self.loss = losses.TripletMarginLoss(margin=self.margin)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(anchor, positive, negative) index tensors of the mined triplets."""
        return self.miner(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels, self.mine(embeddings, labels))
