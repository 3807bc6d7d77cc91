"""The head interface: features -> differentiable class scores and the real decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from robustlab.core.registry import Registry


class Head(nn.Module):
    """Maps (N, feature_dim) features to (N, num_classes) scores.

    - ``forward(features)``: differentiable scores (a surrogate of the decision for
      metric heads), used by training and white-box attacks;
    - ``decide_features(features)``: the real decision, for heads whose decision is not a
      function of their scores (``decision_from_scores = False``);
    - ``keyed_defaults``: defaults written into every config (see below);
    - ``objective``: the name of the training objective the head is trained with by default;
    - ``fit_gallery(features, labels)``: called once after training with the training
      set's features, for heads that decide from stored embeddings (k-NN, with
      ``needs_gallery = True``). Gallery buffers start empty (first dimension 0); the
      checkpoint loader resizes empty buffers to the stored shape.
    """

    keyed_defaults: ClassVar[dict[str, Any]] = {}
    """Constructor defaults that change the decision: `ModelConfig` writes them into every config of
    this head, so a config, its digest and every result key name them (a later change of default
    can never mix rows)."""
    decision_from_scores: ClassVar[bool] = True
    needs_gallery: ClassVar[bool] = False
    objective: ClassVar[str] = "cross_entropy"

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)

    def decide_features(self, features: torch.Tensor) -> torch.Tensor:
        return self(features).argmax(dim=1)

    def scores_and_decision(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(scores, decision) from one set of features; decision None means "argmax of the
        scores" (the model applies its own `decide`). Heads whose decision shares work with
        their scores (k-NN distances) override this to compute it once."""
        scores = self(features)
        if self.decision_from_scores:
            return scores, None
        with torch.no_grad():
            return scores, self.decide_features(features.detach())

    def fit_gallery(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Hook for heads that keep training embeddings; the default keeps nothing."""

    def attach(self, backbone_name: str, stage_dims: dict[str, int]) -> None:
        """Called once by `build_model` with the backbone's name and `stage_dims`, so heads that
        tap intermediate stages (PCL auxiliary branches) can build their modules; default: nothing."""


HEADS: Registry[Callable[..., Head]] = Registry("head")
