"""The MCT head (paper 003): softmax logits trained with cross-entropy on Gaussian-noise
copies plus the multi-class triplet loss; decision by softmax (as in the paper) or k-NN."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.core.errors import ConfigError
from robustlab.models.heads.base import HEADS, Head
from robustlab.models.heads.knn import KNNGallery


@HEADS.register("mct")
class MCTHead(Head):
    """Linear logits (N, C). ``decision`` "softmax" (argmax of the logits) or "knn" (k-NN vote on
    cosine distances, `forward` then returns the soft k-NN surrogate); ``knn`` holds the
    `KNNGallery` arguments for the k-NN option."""

    objective = "mct"

    def __init__(
        self, feature_dim: int, num_classes: int, decision: str = "softmax", knn: dict | None = None
    ) -> None:
        super().__init__(feature_dim, num_classes)
        if decision not in ("softmax", "knn"):
            raise ConfigError(f"mct decision must be softmax or knn, got {decision!r}")
        self.decision = decision
        self.linear = nn.Linear(feature_dim, num_classes)
        if decision == "knn":
            self.knn = KNNGallery(feature_dim, num_classes, **{"metric": "cosine", **(knn or {})})
            self.decision_from_scores = False
            self.needs_gallery = True

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.decision == "knn":
            return self.knn.soft_scores(features)
        return self.linear(features)

    def decide_features(self, features: torch.Tensor) -> torch.Tensor:
        if self.decision == "knn":
            return self.knn.vote(features)
        return self.linear(features).argmax(dim=1)

    def fit_gallery(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.decision == "knn":
            self.knn.fit(features, labels)
