"""CIFAR-style ResNet (He et al. 2016, section 4.2): depth 6n + 2 with three stages."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.errors import ConfigError
from robustlab.models.backbones.base import BACKBONES, Backbone


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@BACKBONES.register("resnet")
class CifarResNet(Backbone):
    """ResNet-`depth` (20, 32, 44, 56, 110, ...: depth = 6n + 2), widths 16/32/64 x `width`.

    Stages: "stage1", "stage2", "stage3" (global-average-pooled) and "features" (= GAP of
    stage 3). Inputs larger than 32x32 get a stride-2 stem so 112x112 stays affordable.
    """

    def __init__(self, input_shape: tuple[int, int, int], depth: int = 20, width: int = 1) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"resnet depth must be 6n + 2 (20, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        c, h, _ = input_shape
        widths = [16 * width, 32 * width, 64 * width]
        stem_stride = 2 if h > 32 else 1
        self.stem = nn.Sequential(
            nn.Conv2d(c, widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        c_in = widths[0]
        for i, c_out in enumerate(widths):
            blocks = [BasicBlock(c_in, c_out, 1 if i == 0 else 2)]
            blocks += [BasicBlock(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self._record_stage_dims(input_shape)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.stem(x)
        out: dict[str, torch.Tensor] = {}
        for i, stage in enumerate(self.stages):
            h = stage(h)
            out[f"stage{i + 1}"] = h.mean(dim=(2, 3))
        out["features"] = out["stage3"]
        return out
