"""The PCL head (Mustafa et al. 2019, paper 004): learned class prototypes on the features,
a linear classifier for the cross-entropy term, and auxiliary branches on intermediate
backbone stages (deep supervision, eq. 8-9), each with prototypes of its own.

Default taps (Table 1 of the paper), by backbone:
- ``cnn6``: PC loss after layer 3 (GAP, 128-d), FC(512) and FC(64): branches
  {"gap": 0, "fc1": 0} (0 = identity: the PC loss sits on the stage itself) plus the head's
  own prototypes on "features" (the FC(64) layer).
- ``resnet``: after layer 3 through GAP -> FC(512) (our "stage2" with a 512-unit linear
  branch) and after layer 4 through GAP (our "features" = GAP of stage 3, the head's
  prototypes). The paper's extra FC(1024) layer has no counterpart in our CIFAR ResNet.
- other backbones: no branches; pass ``branches`` to choose ({stage name: output dim}).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from robustlab.core.errors import ConfigError
from robustlab.models.heads.base import HEADS, Head

DEFAULT_BRANCHES: dict[str, dict[str, int]] = {"cnn6": {"gap": 0, "fc1": 0}, "resnet": {"stage2": 512}}


def prototype_scores(features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """-||f_i - w_c||_2 (N, C) for features (N, D) and centres (C, D)."""
    return -(features[:, None, :] - centres[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()


def _centres(num_classes: int, dim: int) -> nn.Parameter:
    return nn.Parameter(0.01 * torch.randn(num_classes, dim))


@HEADS.register("pcl")
class PCLHead(Head):
    """Scores: ``decision`` "softmax" (the default: paper 004's model "performs conventional
    softmax prediction" at inference) -> the linear logits trained by eq. 8's CE term;
    "prototype" -> -||f - w_c||_2 (N, C), whose argmax is eq. 6 (nearest prototype), an option.
    The decision is always written into the model config (`keyed_defaults`), so rows of the two
    rules never share a key. ``branches``: {stage: dim} (dim 0 = identity),
    None for the defaults above; each branch has its own centres and, for eq. 8's CE term,
    its own linear classifier. ``features_pc``: whether the PC loss also sits on the final
    features (False with ``branches`` = one tap gives paper 004 Table 7's "layer k only" rows;
    it needs the softmax decision, since the final prototypes are then not trained)."""

    objective = "pcl"
    keyed_defaults: ClassVar[dict[str, Any]] = {"decision": "softmax"}

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        decision: str = "softmax",
        branches: dict[str, int] | None = None,
        features_pc: bool = True,
    ) -> None:
        super().__init__(feature_dim, num_classes)
        if decision not in ("prototype", "softmax"):
            raise ConfigError(f"pcl decision must be prototype or softmax, got {decision!r}")
        if not features_pc and decision == "prototype":
            raise ConfigError("pcl: features_pc=False leaves the final prototypes untrained; use decision: softmax")
        self.decision = decision
        self.features_pc = bool(features_pc)
        self.branch_spec = None if branches is None else {str(k): int(v) for k, v in branches.items()}
        self.linear = nn.Linear(feature_dim, num_classes)
        self.centres = _centres(num_classes, feature_dim)
        self.branches = nn.ModuleDict()
        self.branch_centres = nn.ParameterDict()
        self.branch_linear = nn.ModuleDict()

    def attach(self, backbone_name: str, stage_dims: dict[str, int]) -> None:
        spec = self.branch_spec if self.branch_spec is not None else DEFAULT_BRANCHES.get(backbone_name, {})
        unknown = sorted(set(spec) - (set(stage_dims) - {"features"}))
        if unknown:
            raise ConfigError(
                f"pcl branches {unknown} are not intermediate stages of {backbone_name} "
                f"(stages: {', '.join(s for s in stage_dims if s != 'features')})"
            )
        for name, out_dim in spec.items():
            if out_dim < 0:
                raise ConfigError(f"pcl branch {name}: output dim must be >= 0 (0 = identity)")
            d = out_dim or stage_dims[name]
            self.branches[name] = nn.Linear(stage_dims[name], out_dim) if out_dim else nn.Identity()
            self.branch_centres[name] = _centres(self.num_classes, d)
            self.branch_linear[name] = nn.Linear(d, self.num_classes)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.decision == "softmax":
            return self.linear(features)
        return prototype_scores(features, self.centres)

    def all_centres(self) -> list[nn.Parameter]:
        """The head's centres and every branch's: the parameters the PCL objective's own optimizer steps."""
        return [self.centres, *self.branch_centres.values()]

    def pc_taps(self, stages: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(features, centres) of every tap the PC loss sits on, for the backbone `stages`."""
        taps = [(self.branches[name](stages[name]), self.branch_centres[name]) for name in self.branches]
        return ([(stages["features"], self.centres)] if self.features_pc else []) + taps
