"""The backbone interface: images (already normalized) -> feature vectors, with named stages."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from robustlab.core.registry import Registry


class Backbone(nn.Module):
    """Maps (N, C, H, W) images to (N, feature_dim) features.

    `forward_stages` returns the named intermediate outputs in order (the last one is
    "features"), flattened or pooled to (N, D) each; `stage_dims` gives each D. Deep
    supervision (PCL auxiliary branches) taps these stages by name.
    """

    feature_dim: int
    stage_dims: dict[str, int]

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)["features"]

    def _record_stage_dims(self, input_shape: tuple[int, int, int]) -> None:
        """Fill `stage_dims` and `feature_dim` with one dry run on a zero image."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            stages = self.forward_stages(torch.zeros(2, *input_shape))
        self.train(was_training)
        self.stage_dims = {k: int(v.shape[1]) for k, v in stages.items()}
        self.feature_dim = self.stage_dims["features"]


BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution or pooling layer."""
    return (size + 2 * padding - kernel) // stride + 1
