"""The DeepMind layout of WideResNet and pre-activation ResNet (Gowal et al. 2020, Rebuffi et
al. 2021 and the many RobustBench entries trained with their code), usually with Swish (SiLU):

- ``dm-wrn``: ``init_conv``, ``layer.{g}.block.{i}.{batchnorm_0,conv_0,batchnorm_1,conv_1,shortcut}``,
  ``batchnorm``, ``logits``;
- ``dm-preact``: ``conv_2d``, ``layer_{0..3}.{i}.{batchnorm_0,conv_2d_1,batchnorm_1,conv_2d_2,shortcut}``,
  ``batchnorm``, ``logits``.

Strided 3x3 convolutions pad like TensorFlow's "SAME" (one pixel right and bottom only), so
the first convolution of each block (and the pre-activation ResNet's 3x3 shortcut) pads by hand.
The input normalization (CIFAR mean / std) is not in these checkpoints: `load_zoo_model` adds it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" padding of a 3x3 kernel: (1, 1, 1, 1) at stride 1, (0, 1, 0, 1) at stride 2."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class DMWideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.stride = stride
        self.batchnorm_0 = nn.BatchNorm2d(c_in)
        self.conv_0 = nn.Conv2d(c_in, c_out, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(c_out)
        self.conv_1 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False) if c_in != c_out else None
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.batchnorm_0(x))
        out = self.conv_1(self.act(self.batchnorm_1(self.conv_0(same_pad(pre, self.stride)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class DMWideGroup(nn.Module):
    def __init__(self, n: int, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.block = nn.Sequential(*(DMWideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, act)
                                     for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DMWideResNet(nn.Module):
    """WideResNet-`depth`-`width` (depth 6n + 4), DeepMind layout, for 32x32 inputs."""

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10,
                 act: Callable[[], nn.Module] = nn.SiLU) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.init_conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(*(DMWideGroup(n, widths[g], widths[g + 1], 1 if g == 0 else 2, act)
                                     for g in range(3)))
        self.batchnorm = nn.BatchNorm2d(widths[3])
        self.act = act()
        self.logits = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.batchnorm(self.layer(self.init_conv(x))))
        return self.logits(out.mean((2, 3)))


class DMPreActBlock(nn.Module):
    """Pre-activation block; its shortcut (a "SAME"-padded 3x3 conv) reads the raw input."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.stride = stride
        self.batchnorm_0 = nn.BatchNorm2d(c_in)
        self.conv_2d_1 = nn.Conv2d(c_in, c_out, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(c_out)
        self.conv_2d_2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        changes = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 3, stride, 0, bias=False) if changes else None
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(same_pad(x, self.stride))
        out = self.conv_2d_1(same_pad(self.act(self.batchnorm_0(x)), self.stride))
        return self.conv_2d_2(self.act(self.batchnorm_1(out))) + skip


class DMPreActResNet(nn.Module):
    """Pre-activation ResNet-18 (blocks 2, 2, 2, 2; widths `base` x 1, 2, 4, 8), DeepMind layout."""

    def __init__(self, num_classes: int = 10, blocks: tuple[int, ...] = (2, 2, 2, 2), base: int = 64,
                 act: Callable[[], nn.Module] = nn.SiLU) -> None:
        super().__init__()
        widths = [base, base, 2 * base, 4 * base, 8 * base]
        self.conv_2d = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        for g, n in enumerate(blocks):
            group = [DMPreActBlock(widths[g] if i == 0 else widths[g + 1], widths[g + 1],
                                   (1 if g == 0 else 2) if i == 0 else 1, act) for i in range(n)]
            self.add_module(f"layer_{g}", nn.Sequential(*group))
        self.groups = len(blocks)
        self.batchnorm = nn.BatchNorm2d(widths[-1])
        self.act = act()
        self.logits = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2d(x)
        for g in range(self.groups):
            out = self.get_submodule(f"layer_{g}")(out)
        return self.logits(self.act(self.batchnorm(out)).mean((2, 3)))
