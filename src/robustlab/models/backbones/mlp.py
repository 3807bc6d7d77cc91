"""Multi-layer perceptron on flattened pixels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustlab.models.backbones.base import BACKBONES, Backbone


@BACKBONES.register("mlp")
class MLP(Backbone):
    """Flatten -> [Linear -> ReLU] per hidden width; features are the last hidden layer."""

    def __init__(self, input_shape: tuple[int, int, int], hidden: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("mlp needs at least one hidden layer")
        sizes = [int(torch.tensor(input_shape).prod())] + [int(h) for h in hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self._record_stage_dims(input_shape)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = x.flatten(1)
        stages: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            stages[f"fc{i + 1}"] = h
        stages["features"] = h
        return stages
