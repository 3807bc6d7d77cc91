"""CIFAR-style ResNets (3x3 stem, no max-pool) in the layout of the RobustBench zoo's ResNet-18 /
ResNet-50 (Kuang Liu's pytorch-cifar, used by Engstrom et al., Sehwag et al., Addepalli et al.)
and its pre-activation ResNet-18 (Wong et al., Andriushchenko & Flammarion, Rice et al.):

- ``resnet``: ``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv1,bn1,conv2,bn2[,conv3,bn3]}``,
  ``layer*.{i}.shortcut.{0,1}`` (1x1 conv + BN where the shape changes), ``linear``;
- ``preact``: ``conv1``, ``layer{1..4}.{i}.{bn1,conv1,bn2,conv2}``, ``layer*.{i}.shortcut.0``
  (1x1 conv), optionally ``bn`` before ``linear`` (Rice et al.'s L2 model, Kireev et al.).

Widths ``base`` x 1, 2, 4, 8 (base 64 in the zoo); 32x32 inputs; no normalization here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _projection(c_in: int, c_out: int, stride: int, norm: bool) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    conv = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out)) if norm else nn.Sequential(conv)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = _projection(c_in, width, stride, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.shortcut = _projection(c_in, 4 * width, stride, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class PreActBlock(nn.Module):
    """Pre-activation basic block; `activated_shortcut` feeds the projection the activated input
    (the zoo's "V2" block) instead of the raw one."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, activated_shortcut: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.shortcut = _projection(c_in, width, stride, norm=False)
        self.activated_shortcut = activated_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre if self.activated_shortcut else x)
        return self.conv2(F.relu(self.bn2(self.conv1(pre)))) + skip


class ResNet(nn.Module):
    """A CIFAR ResNet: `block` (BasicBlock, Bottleneck or PreActBlock) x `blocks` per stage.

    `preact` nets have no stem BN and, with `final_bn`, a BN + ReLU (``bn``) before the pooling."""

    def __init__(self, block: type[nn.Module], blocks: tuple[int, ...], num_classes: int = 10, base: int = 64,
                 final_bn: bool = False, activated_shortcut: bool = False) -> None:
        super().__init__()
        self.preact = block is PreActBlock
        expansion: int = getattr(block, "expansion")  # noqa: B009  (a class attribute of the block)
        self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        self.bn1 = None if self.preact else nn.BatchNorm2d(base)
        c_in = base
        for stage, n in enumerate(blocks):
            width = base * 2 ** stage
            layers = []
            for i in range(n):
                stride = (1 if stage == 0 else 2) if i == 0 else 1
                extra = {"activated_shortcut": activated_shortcut} if self.preact else {}
                layers.append(block(c_in, width, stride, **extra))
                c_in = width * expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layers))
        self.stages = len(blocks)
        self.bn = nn.BatchNorm2d(c_in) if final_bn else None
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = F.relu(self.bn1(out))
        for stage in range(self.stages):
            out = self.get_submodule(f"layer{stage + 1}")(out)
        if self.bn is not None:
            out = F.relu(self.bn(out))
        return self.linear(out.mean((2, 3)))
