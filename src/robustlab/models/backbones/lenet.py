"""LeNet-5 (LeCun et al. 1998), with ReLU and max pooling, adapted to inputs from 8x8 up."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.backbones.base import BACKBONES, Backbone


@BACKBONES.register("lenet")
class LeNet5(Backbone):
    """conv(6, 5x5) -> pool -> conv(16, 5x5) -> pool -> fc(120) -> fc(84); features are fc(84).

    The first convolution pads by 2 (the classic 32x32 framing of 28x28 digits); the
    second pads by 2 only when its input is smaller than 10x10, so 8x8 inputs still work.
    """

    def __init__(self, input_shape: tuple[int, int, int], width: int = 1) -> None:
        super().__init__()
        c, h, w = input_shape
        c1, c2 = 6 * width, 16 * width
        pad2 = 0 if min(h, w) // 2 >= 10 else 2
        self.conv1 = nn.Conv2d(c, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=pad2)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        with torch.no_grad():
            flat = self._conv_part(torch.zeros(1, *input_shape)).shape[1]
        self.fc1 = nn.Linear(flat, 120 * width)
        self.fc2 = nn.Linear(120 * width, 84 * width)
        self._record_stage_dims(input_shape)

    def _conv_part(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return x.flatten(1)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        conv = self._conv_part(x)
        fc1 = torch.relu(self.fc1(conv))
        fc2 = torch.relu(self.fc2(fc1))
        return {"conv": conv, "fc1": fc1, "features": fc2}
