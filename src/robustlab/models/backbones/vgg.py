"""A VGG-style network (Simonyan & Zisserman 2015), scaled down for small images."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.backbones.base import BACKBONES, Backbone


@BACKBONES.register("vgg")
class SmallVGG(Backbone):
    """Three blocks of two 3x3 conv + BN + ReLU (32, 64, 128 x `width`) each followed by
    2x2 max pooling, GAP, fc(256). Stages: "gap" (128 x width) and "features" (256)."""

    def __init__(self, input_shape: tuple[int, int, int], width: int = 1) -> None:
        super().__init__()
        c = input_shape[0]
        layers: list[nn.Module] = []
        c_in = c
        for c_out in (32 * width, 64 * width, 128 * width):
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, 256)
        self._record_stage_dims(input_shape)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        gap = self.convs(x).mean(dim=(2, 3))
        return {"gap": gap, "features": torch.relu(self.fc(gap))}
