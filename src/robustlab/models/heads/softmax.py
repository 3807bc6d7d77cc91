"""The softmax head: a linear layer whose logits are the scores; decision = argmax."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.heads.base import HEADS, Head


@HEADS.register("softmax")
class SoftmaxHead(Head):
    """Linear (feature_dim -> num_classes) logits, trained with cross-entropy."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__(feature_dim, num_classes)
        self.linear = nn.Linear(feature_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)
