"""A small MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.backbones.base import BACKBONES, Backbone

# (expansion t, output channels c, repeats n, first stride s), scaled down for small images.
_SMALL_CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6())
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn(c_in, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, c_out, 1, act=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


@BACKBONES.register("mobilenetv2")
class MobileNetV2Small(Backbone):
    """Stem conv(32) -> inverted-residual stages -> conv1x1(`last_channels`) -> GAP.

    `width` scales every channel count. Stride-2 stages are kept only while the feature
    map is at least 2x2, so 8x8 inputs work; inputs above 32x32 get a stride-2 stem.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], width: float = 1.0, last_channels: int = 256
    ) -> None:
        super().__init__()
        c, h, _ = input_shape
        stem_stride = 2 if h > 32 else 1
        c_stem = max(8, int(32 * width))
        layers: list[nn.Module] = _conv_bn(c, c_stem, 3, stem_stride)
        size = (h + stem_stride - 1) // stem_stride
        c_in = c_stem
        for t, c_out, n, s in _SMALL_CONFIG:
            c_out = max(8, int(c_out * width))
            for i in range(n):
                stride = s if (i == 0 and size >= 4) else 1
                size = (size + stride - 1) // stride
                layers.append(InvertedResidual(c_in, c_out, stride, t))
                c_in = c_out
        layers += _conv_bn(c_in, last_channels, 1)
        self.body = nn.Sequential(*layers)
        self._record_stage_dims(input_shape)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self.body(x).mean(dim=(2, 3))}
