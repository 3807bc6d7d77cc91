"""Zagoruyko & Komodakis' WideResNet-D-W in the parameter layout of the TRADES code base, which
most RobustBench CIFAR entries use (Carmon et al., Zhang et al., Wu et al., Sehwag et al., ...):
``conv1``, ``block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2,convShortcut}``, ``bn1``, ``fc``.

Pre-activation blocks (BN, activation, 3x3 conv, BN, activation, 3x3 conv); a 1x1
``convShortcut`` on the activated input where the width changes. Depth D = 6n + 4 (n blocks
per group), widths 16, 16W, 32W, 64W, global average pooling, one linear layer. Inputs are
what the checkpoint was trained on (no normalization here: `load_zoo_model` adds it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class WideBlock(nn.Module):
    """One pre-activation block; the shortcut is the raw input when the width is unchanged."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.convShortcut = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False) if c_in != c_out else None
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        out = self.conv2(self.act(self.bn2(self.conv1(pre))))
        return out + (x if self.convShortcut is None else self.convShortcut(pre))


class WideGroup(nn.Module):
    """n blocks; the first one changes width and stride (parameters under ``layer.{i}``)."""

    def __init__(self, n: int, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.layer = nn.Sequential(*(WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, act)
                                     for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-`depth`-`width` (depth 6n + 4) for 32x32 inputs: logits (N, num_classes)."""

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10,
                 act: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = WideGroup(n, widths[0], widths[1], 1, act)
        self.block2 = WideGroup(n, widths[1], widths[2], 2, act)
        self.block3 = WideGroup(n, widths[2], widths[3], 2, act)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.act = act()
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.act(self.bn1(out)).mean((2, 3)))
