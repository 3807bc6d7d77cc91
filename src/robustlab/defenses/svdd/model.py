"""The M-SVDD defended model (section 4.2): frozen-head backbone + SVDD layer + adversarial class.

``MSVDDModel(base, layer)`` takes the features of ``base`` (a `Classifier`: normalizer +
backbone + linear head) and replaces the linear head by the SVDD layer:

- ``defended=False`` (the fine-tuning stage): ``forward`` returns r = SVDD_c / R_c^2 (N, C)
  and the decision is argmax(r);
- ``defended=True`` (the deployed defense, eq. 13): r~ = [min(v_p, max(0, r)), v_a] (N, C + 1).
  The decision is class c when the c-th SVDD is the unique verifier with the highest
  response above v_a, and REJECT (-1) otherwise (no response above v_a, or a tie at the top,
  which the clamp at v_p can create).

Gradients: the ReLU and the clamp are applied with a **straight-through** gradient by
default (their forward value is exact, their backward is the identity), so adaptive
white-box attacks see the gradient of the underlying responses r instead of the zero
gradient the clamp would give (BPDA, Athalye et al. 2018). ``straight_through=False``
gives the true (masked) gradient, to demonstrate the obfuscation the paper relies on.

``base`` stays whole: ``linear_classifier()`` is the modified network with the original
linear classifier re-attached (the paper's W~-LC), sharing the fine-tuned backbone.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.core.contract import REJECT, RobustModel
from robustlab.core.errors import ConfigError
from robustlab.defenses.svdd.layer import SVDDLayer
from robustlab.models.classifier import Classifier


def straight_through_clamp(r: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """clamp(r, low, high) in the forward pass, identity gradient in the backward pass."""
    return r + (r.clamp(low, high) - r).detach()


class MSVDDModel(RobustModel):
    """Backbone features -> C SVDD classifiers (-> clamp + adversarial class when defended).

    ``v_p`` > 0: the clamp ceiling of the responses; ``v_a`` in (0, v_p): the constant
    response of the adversarial class (the minimum acceptable activation, default 0.001);
    ``unique_verifier``: ties at the top response are rejected (eq. 13's "unique verifier").
    """

    def __init__(
        self,
        base: Classifier,
        layer: SVDDLayer,
        *,
        v_p: float = 1.0,
        v_a: float = 0.001,
        defended: bool = True,
        straight_through: bool = True,
        unique_verifier: bool = True,
    ) -> None:
        super().__init__(base.num_classes, base.input_shape)
        if not (0 < v_a < v_p):
            raise ConfigError(f"need 0 < v_a < v_p, got v_a={v_a}, v_p={v_p}")
        if layer.num_classes != base.num_classes or layer.feature_dim != base.backbone.feature_dim:
            raise ConfigError("the SVDD layer does not match the base model's classes or feature size")
        self.base = base
        self.svdd = layer
        self.v_p, self.v_a = float(v_p), float(v_a)
        self.defended = bool(defended)
        self.straight_through = bool(straight_through)
        self.unique_verifier = bool(unique_verifier)

    @property
    def can_reject(self) -> bool:  # type: ignore[override]
        return self.defended

    @property
    def gradient_path(self) -> str:
        """How attacks get gradients through it (see `robustlab.defenses.base`): "bpda" while the
        ReLU/clamp pass a straight-through gradient, "exact" with their true one."""
        return "bpda" if self.defended and self.straight_through else "exact"

    @property
    def bpda(self) -> bool:
        """The straight-through flag under its shared name, so `true_gradients` and the gradient
        probe see M-SVDD's true (clamped) gradients as they do every defense's."""
        return self.straight_through

    @bpda.setter
    def bpda(self, value: bool) -> None:
        self.straight_through = bool(value)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, D) of images `x` in [0, 1]."""
        return self.base.embed(x)

    def responses(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised SVDD responses r (N, C) before ReLU/clamp."""
        return self.svdd.responses(self.embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores_from_responses(self.responses(x))

    def scores_from_responses(self, r: torch.Tensor) -> torch.Tensor:
        """r (N, C) -> the model's scores: r itself, or [clamp(r, 0, v_p), v_a] when defended."""
        if not self.defended:
            return r
        q = straight_through_clamp(r, 0.0, self.v_p) if self.straight_through else r.clamp(0.0, self.v_p)
        return torch.cat([q, q.new_full((len(q), 1), self.v_a)], dim=1)

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.defended:
            return scores.argmax(dim=1)
        r = scores[:, : self.num_classes]
        top, label = r.max(dim=1)
        reject = top <= self.v_a
        if self.unique_verifier:
            reject |= (r == top[:, None]).sum(dim=1) > 1
        return torch.where(reject, torch.full_like(label, REJECT), label)

    def linear_classifier(self) -> Classifier:
        """W~-LC: the (fine-tuned) backbone with the original linear head; shares the modules."""
        return self.base

    def defense_spec(self) -> dict[str, Any]:
        """The "defense" section of the checkpoint config (rebuilds the structure; weights aside)."""
        return {
            "name": "msvdd",
            "args": {
                "num_projections": self.svdd.num_projections,
                "beta": self.svdd.beta_mode,
                "v_p": self.v_p,
                "v_a": self.v_a,
                "defended": self.defended,
                "straight_through": self.straight_through,
                "unique_verifier": self.unique_verifier,
            },
        }


def build_msvdd_structure(
    base: Classifier, num_projections: int, beta: str | float = "O_c", **kwargs: Any
) -> MSVDDModel:
    """An untrained `MSVDDModel` over `base` with the given settings (for checkpoint loading)."""
    if not isinstance(num_projections, int) or num_projections < 1:
        raise ConfigError(f"num_projections must be a positive integer, got {num_projections!r}")
    layer = SVDDLayer(base.num_classes, base.backbone.feature_dim, num_projections)
    layer.set_beta_mode(beta)
    return MSVDDModel(base, layer, **kwargs)
