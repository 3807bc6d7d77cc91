"""The 6-layer CNN of the PCL paper (Mustafa et al. 2019, Table 1, "6-Conv Model")."""

from __future__ import annotations

import torch
from torch import nn

from robustlab.models.backbones.base import BACKBONES, Backbone


def _conv_pair(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 5, padding=2),
        nn.PReLU(c_out),
        nn.Conv2d(c_out, c_out, 5, padding=2),
        nn.PReLU(c_out),
        nn.MaxPool2d(2, ceil_mode=True),
    )


@BACKBONES.register("cnn6")
class CNN6(Backbone):
    """[conv(32,5x5) PReLU]x2 pool, [conv(64)]x2 pool, [conv(128)]x2 pool, GAP, fc(512), fc(64).

    Stages (the PCL taps of Table 1): "gap" (128), "fc1" (512), "features" (64); the
    classifier head sits on "features".
    """

    def __init__(self, input_shape: tuple[int, int, int], width: int = 1) -> None:
        super().__init__()
        c = input_shape[0]
        w1, w2, w3 = 32 * width, 64 * width, 128 * width
        self.block1 = _conv_pair(c, w1)
        self.block2 = _conv_pair(w1, w2)
        self.block3 = _conv_pair(w2, w3)
        self.fc1 = nn.Linear(w3, 512)
        self.act1 = nn.PReLU()
        self.fc2 = nn.Linear(512, 64)
        self.act2 = nn.PReLU()
        self._record_stage_dims(input_shape)

    def forward_stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.block3(self.block2(self.block1(x)))
        gap = h.mean(dim=(2, 3))
        fc1 = self.act1(self.fc1(gap))
        fc2 = self.act2(self.fc2(fc1))
        return {"gap": gap, "fc1": fc1, "features": fc2}
