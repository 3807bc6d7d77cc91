"""`ResizedInput`: a model that takes images of another size and resizes them for the wrapped one.

The resize is the data layer's (bilinear, antialiased, clamped to [0, 1]) and differentiable,
so an attack on the wrapper finds a perturbation at the original size whose resized image
fools the wrapped model exactly as the verification (which resizes the same way) will see it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustlab.core.contract import RobustModel


class ResizedInput(RobustModel):
    """model(resize(x)) for x of shape (N, C, H, W) with (C, H, W) = `input_shape`."""

    def __init__(self, model: RobustModel, input_shape: tuple[int, int, int]) -> None:
        super().__init__(model.num_classes, input_shape)
        self.model = model
        self.train(model.training)

    @property
    def can_reject(self) -> bool:  # type: ignore[override]
        return bool(self.model.can_reject)

    @property
    def decision_from_scores(self) -> bool:  # type: ignore[override]
        return bool(self.model.decision_from_scores)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(self.model.input_shape[1:])
        if tuple(x.shape[2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(
            0.0, 1.0
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(self._resize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._resize(x))

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        return self.model.decide(scores)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict(self._resize(x))
