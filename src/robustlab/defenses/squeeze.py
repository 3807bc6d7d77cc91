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

from robustlab.defenses.base import (
    REJECT_SCALE,
    DefendedModel,
    DefenseBuild,
    DetectorModel,
    check_fpr,
    check_fraction,
    rejection_rate,
    split_validation,
)
from robustlab.defenses.registry import Defense, register_defense
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


# ---------------------------------------------------------------- the defenses' declarations
SQUEEZER_HELP = ("bits:B, hsv:B (paper 002's colour bits; hsv:1 is Algorithm 2 as printed), median:K, mean:K "
                 "(mean:3 is Algorithm 3). Repeatable. Default: bits:4 (transform), bits:4 + median:2 (--detect).")


def _transform_settings(squeezers: Sequence[str] = ("bits:4",)) -> dict[str, Any]:
    return {"squeezers": check_squeezers(squeezers)}


def _build_transform(model: Classifier, data: Any, settings: dict[str, Any]) -> DefenseBuild:
    return DefenseBuild(SqueezedModel(model, settings["squeezers"]), {"config": settings})


def _detector_settings(squeezers: Sequence[str] = ("bits:4", "median:2"), fpr: float = 0.05,
                       val_fraction: float = 0.1, seed: int = 0) -> dict[str, Any]:
    return {"squeezers": check_squeezers(squeezers), "fpr": check_fpr(fpr),
            "val_fraction": check_fraction(val_fraction), "seed": seed}


def _build_detector(model: Classifier, data: Any, settings: dict[str, Any]) -> DefenseBuild:
    _, _, x_val, _ = split_validation(data, settings["val_fraction"], settings["seed"])
    device = next(model.parameters()).device
    defended = SqueezeDetector(model, settings["squeezers"]).to(device).eval()
    threshold = defended.fit_threshold(x_val, settings["fpr"])
    return DefenseBuild(defended, {"config": settings, "threshold": threshold,
                                   "val_fpr": rejection_rate(defended, x_val), "n_val": len(x_val)})


register_defense(Defense(
    name="squeeze",
    aliases=("squeezing",),
    summary="Feature squeezing: the classifier sees squeezed inputs, or (--detect) rejects inputs whose "
            "prediction moves by more than a threshold under squeezing.",
    check=_transform_settings,
    build=_build_transform,
    structure=SqueezedModel,
    help={"squeezers": SQUEEZER_HELP},
    flags={"squeezers": ("--squeezer", "-s")},
    switches={"detect": "squeeze-detector"},
))
register_defense(Defense(
    name="squeeze-detector",
    aliases=("detector",),
    summary="Xu et al.'s squeezing detector (the same as `squeeze --detect`).",
    check=_detector_settings,
    build=_build_detector,
    structure=SqueezeDetector,
    help={"squeezers": SQUEEZER_HELP, "fpr": "Detector false-positive rate on clean validation data.",
          "val_fraction": "Training share held out for the threshold."},
    flags={"squeezers": ("--squeezer", "-s")},
))
