"""Feature squeezing as a defense: an input transform, or a detector (Xu et al. 2018).

- `SqueezedModel` ("squeeze"): the classifier sees the squeezed input (squeezers applied in
  order), ``predict = base.predict(squeeze(x))``; gradient path "bpda" when a squeezer is
  not differentiable.
- `SqueezeDetector` ("squeeze-detector"): the classifier sees the input as it is; the
  detection score is max_i || p(x) - p(s_i(x)) ||_1 over the squeezers s_i, with p the
  softmax of the classifier's scores (the k-NN surrogate's, for metric heads), in [0, 2];
  REJECT above a threshold fitted for a false-positive rate on clean validation data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robustlab.defenses.base import REJECT_SCALE, DefendedModel, DetectorModel
from robustlab.defenses.squeezers import check_squeezers, make_squeezer
from robustlab.models.classifier import Classifier


def _squeezers(specs: Sequence[str], bpda: bool) -> nn.ModuleList:
    return nn.ModuleList(make_squeezer(s, bpda=bpda) for s in check_squeezers(specs))


class SqueezedModel(DefendedModel):
    """base(s_k(...s_1(x))): the squeezers in `squeezers` applied in order, then the classifier."""

    defense_name = "squeeze"

    def __init__(self, base: Classifier, squeezers: Sequence[str], *, bpda: bool = True) -> None:
        super().__init__(base, bpda=bpda)
        self.squeezers = _squeezers(squeezers, bpda)
        self.gradient_path = "exact" if all(s.exact_gradient for s in self.squeezers) else "bpda"

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.squeezers:
            s.bpda = self.bpda
            x = s(x)
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.embed(self.squeeze(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(self.squeeze(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.predict(self.squeeze(x))

    def defense_args(self) -> dict[str, Any]:
        return {"squeezers": [s.spec for s in self.squeezers]}


class SqueezeDetector(DetectorModel):
    """Xu et al.'s detector: L1 distance of the prediction vectors on x and on each squeezed x."""

    defense_name = "squeeze-detector"

    def __init__(self, base: Classifier, squeezers: Sequence[str], *, bpda: bool = True) -> None:
        super().__init__(base, bpda=bpda)
        self.squeezers = _squeezers(squeezers, bpda)
        self.gradient_path = "exact" if all(s.exact_gradient for s in self.squeezers) else "bpda"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.embed(x)

    def classify_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def classify_predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.predict(x)

    def detection_score(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """max over squeezers of ||softmax(base(x)) - softmax(base(s(x)))||_1, (N,), in [0, 2]
        (`z`: base(x) when already computed)."""
        p = (self.base(x) if z is None else z).softmax(dim=1)
        scores = []
        for s in self.squeezers:
            s.bpda = self.bpda
            scores.append((p - self.base(s(x)).softmax(dim=1)).abs().sum(dim=1))
        return torch.stack(scores, dim=1).max(dim=1).values

    def defense_args(self) -> dict[str, Any]:
        return {"squeezers": [s.spec for s in self.squeezers]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.base(x)
        reject = z.max(dim=1).values + REJECT_SCALE * self._log_ratio(self.detection_score(x, z))
        return torch.cat([z, reject[:, None]], dim=1)
