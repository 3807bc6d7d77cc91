"""The triplet head (paper 002): embeddings trained with a mined triplet loss, decided by a
k-NN vote over a gallery of training embeddings (see `knn.py` for the vote and surrogate)."""

from __future__ import annotations

import torch

from robustlab.models.heads.base import HEADS, Head
from robustlab.models.heads.knn import KNNGallery


class KNNHead(Head):
    """Base of heads that decide by k-NN: `forward` is the soft k-NN surrogate, `predict` the vote.

    Keyword arguments go to `KNNGallery` (k, metric, normalize, temperature, per_class, seed).
    """

    decision_from_scores = False
    needs_gallery = True

    def __init__(self, feature_dim: int, num_classes: int, **knn_args) -> None:
        super().__init__(feature_dim, num_classes)
        self.knn = KNNGallery(feature_dim, num_classes, **knn_args)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.knn.soft_scores(features)

    def decide_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.knn.vote(features)

    def scores_and_decision(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.knn.scores_and_vote(features)

    def fit_gallery(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.knn.fit(features, labels)


@HEADS.register("triplet")
class TripletHead(KNNHead):
    """k-NN over embeddings trained by the `triplet` objective (semi-hard mining, P x K batches)."""

    objective = "triplet"
