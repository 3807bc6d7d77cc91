"""`Classifier`: normalization + backbone + head, under the robustlab model contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.models.backbones import BACKBONES, Backbone
from robustlab.models.config import ModelConfig
from robustlab.models.heads import HEADS, Head


class Normalize(nn.Module):
    """(x - mean) / std per channel; mean and std are buffers saved with the weights."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(RobustModel):
    """A model built from a `ModelConfig`: scores = head(backbone(normalize(x)))."""

    def __init__(self, config: ModelConfig, backbone: Backbone, head: Head) -> None:
        super().__init__(config.num_classes, config.input_shape)
        self.config = config
        self.normalizer: nn.Module = (
            Normalize(**config.normalize) if config.normalize is not None else nn.Identity()
        )
        self.backbone = backbone
        self.head = head

    @property
    def decision_from_scores(self) -> bool:  # type: ignore[override]
        return self.head.decision_from_scores

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, feature_dim) for images `x` in [0, 1]."""
        return self.backbone(self.normalizer(x))

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every named backbone stage, for deep supervision."""
        return self.backbone.forward_stages(self.normalizer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.head.decision_from_scores:
            return self.decide(self(x))
        return self.head.decide_features(self.embed(x))

    def forward_decide(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and decision from one backbone pass (the head shares its work: k-NN distances)."""
        scores, decision = self.head.scores_and_decision(self.embed(x))
        return scores, self.decide(scores.detach()) if decision is None else decision


def build_model(config: ModelConfig | Mapping[str, Any]) -> Classifier:
    """Build an untrained model from a `ModelConfig` or a plain dict of one."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    make_backbone = BACKBONES.get(config.backbone)
    make_head = HEADS.get(config.head)
    try:
        backbone = make_backbone(config.input_shape, **config.backbone_args)
        head = make_head(backbone.feature_dim, config.num_classes, **config.head_args)
        head.attach(config.backbone, dict(backbone.stage_dims))
    except TypeError as exc:
        raise ConfigError(f"invalid arguments for {config.backbone}/{config.head}: {exc}") from None
    return Classifier(config, backbone, head)
