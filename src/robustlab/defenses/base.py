"""What every defended model shares: the base classifier, the gradient path, detector plumbing.

A defended model wraps a trained `Classifier` (kept as ``.base``) and is again a robustlab
model: ``forward`` scores, ``embed``, ``predict`` (``REJECT`` for a detection). It declares

- ``gradient_path`` (class attribute): how white-box attacks get gradients through it,
  "exact" (everything differentiable), "bpda" (a non-differentiable step is replaced by the
  identity in the backward pass, Athalye et al. 2018) or "bpda+eot" (also random);
- ``bpda`` (instance flag, default True): False gives the true gradient of every step
  (zero through a quantiser), the view a non-adaptive evaluation has; `true_gradients`
  switches it off for a block of code;
- ``randomized``: a fresh random draw at each forward (evaluated with EOT, see
  `robustlab.attacks.eot`);
- ``attack_losses``: the attack losses that suit it (``("margin", "dlr")`` where the
  softmax saturates, as after distillation).

Detectors (squeezing, MagNet) return C + 1 scores: the classifier's C scores and a reject
column ``max_c z_c + REJECT_SCALE * log(score / threshold)``, which wins the argmax exactly
when the detection score exceeds its threshold, so the decision stays a function of the
scores and a loss that treats the reject column as a competitor (the whole-pipeline
attack) must fool the classifier *and* stay under the threshold.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustlab.core.contract import REJECT, RobustModel, batched_predict
from robustlab.core.errors import ConfigError, InputError
from robustlab.data.dataset import Dataset
from robustlab.data.splits import stratified_split
from robustlab.models.classifier import Classifier

GRADIENT_PATHS = ("exact", "bpda", "bpda+eot")
REJECT_SCALE = 5.0
"""Logits per unit of log(score / threshold) in the reject column of a detector."""


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The value of `y` with the gradient of `x` (identity backward, BPDA)."""
    return x + (y - x).detach()


@dataclass
class DefenseBuild:
    """The defended model and a JSON-able record of its build."""

    model: RobustModel
    info: dict[str, Any] = field(default_factory=dict)


def train_xy(data: Dataset | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels of a `Dataset` or an (x, y) pair."""
    return (data.x_train, data.y_train) if isinstance(data, Dataset) else data


def check_fraction(val_fraction: float) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    return float(val_fraction)


def split_validation(data: Dataset | tuple[torch.Tensor, torch.Tensor], val_fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): a stratified `val_fraction` of the training data held out."""
    x, y = train_xy(data)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y) or len(x) < 2:
        raise InputError("defense data must be a Dataset or (x_train, y_train) tensors of the same length >= 2")
    tr, va = stratified_split(y.cpu(), check_fraction(val_fraction), seed)
    return x[tr], y[tr], x[va], y[va]


def rejection_rate(model: RobustModel, x: torch.Tensor) -> float:
    """The fraction of `x` that `model` rejects (0 for no images)."""
    return float((batched_predict(model, x) == REJECT).float().mean()) if len(x) else 0.0


def check_fpr(fpr: float) -> float:
    """A false-positive rate must lie strictly between 0 and 1."""
    if not isinstance(fpr, int | float) or not 0.0 < float(fpr) < 1.0:
        raise ConfigError(f"the false-positive rate must lie strictly between 0 and 1, got {fpr!r}")
    return float(fpr)


def fit_threshold(scores: torch.Tensor, fpr: float) -> float:
    """The threshold t with at most floor(fpr * n) of the n clean `scores` strictly above it.

    t is the (k + 1)-th largest score, k = floor(fpr * n): with distinct scores exactly k
    clean samples are rejected, a false-positive rate within 1 / n of `fpr`.
    """
    fpr = check_fpr(fpr)
    scores = scores.detach().flatten().float().cpu()
    if len(scores) == 0 or not bool(torch.isfinite(scores).all()):
        raise InputError("a detector threshold needs finite detection scores on clean validation data")
    k = min(int(math.floor(fpr * len(scores))), len(scores) - 1)
    return float(scores.sort(descending=True).values[k])


class DefendedModel(RobustModel):
    """Base of the defenses over a `Classifier` (see the module docstring for the contract)."""

    defense_name: ClassVar[str]
    gradient_path: ClassVar[str] = "exact"
    attack_losses: ClassVar[tuple[str, ...]] = ("ce", "dlr")

    def __init__(self, base: Classifier, *, bpda: bool = True) -> None:
        if not isinstance(base, Classifier):
            raise ConfigError(f"a defense wraps a robustlab Classifier, got {type(base).__name__}")
        super().__init__(base.num_classes, base.input_shape)
        self.base = base
        self.bpda = bool(bpda)

    @property
    def randomized(self) -> bool:
        return self.gradient_path.endswith("eot")

    @property
    def decision_from_scores(self) -> bool:  # type: ignore[override]
        return self.base.decision_from_scores

    def defense_args(self) -> dict[str, Any]:
        """The structural arguments that rebuild this defense around its base (no weights)."""
        return {}

    def defense_spec(self) -> dict[str, Any]:
        """The checkpoint's "defense" section."""
        return {"name": self.defense_name, "args": self.defense_args()}


class DetectorModel(DefendedModel):
    """A defense that may reject: `detection_score` (N,) against the buffer `threshold`.

    Subclasses implement `classify_scores(x)` (the C class scores it decides on),
    `classify_predict(x)` (the decision before rejection) and `detection_score(x)`.
    """

    can_reject: ClassVar[bool] = True  # type: ignore[misc]

    def __init__(self, base: Classifier, *, bpda: bool = True) -> None:
        super().__init__(base, bpda=bpda)
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def classify_scores(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def classify_predict(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def detection_score(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.classify_scores(x)
        reject = z.max(dim=1).values + REJECT_SCALE * self._log_ratio(self.detection_score(x))
        return torch.cat([z, reject[:, None]], dim=1)

    def _log_ratio(self, score: torch.Tensor) -> torch.Tensor:
        thr = self.threshold.clamp_min(1e-12)
        return torch.log(score.clamp_min(1e-12)) - torch.log(thr)

    def detected(self, x: torch.Tensor) -> torch.Tensor:
        """True where the detection score exceeds the threshold (bool, (N,))."""
        with torch.no_grad():
            return self.detection_score(x) > self.threshold

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        labels = self.classify_predict(x)
        return torch.where(self.detected(x), torch.full_like(labels, REJECT), labels)

    @torch.no_grad()
    def fit_threshold(self, x_val: torch.Tensor, fpr: float, batch_size: int = 512) -> float:
        """Set the threshold for false-positive rate `fpr` on clean images `x_val`; return it."""
        device = self.threshold.device
        scores = torch.cat(
            [self.detection_score(x_val[i : i + batch_size].to(device)) for i in range(0, len(x_val), batch_size)]
        )
        self.threshold.fill_(fit_threshold(scores, fpr))
        return float(self.threshold)


@contextlib.contextmanager
def true_gradients(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every module of `model` with a ``bpda`` flag uses its true gradient."""
    flagged = [(m, m.bpda) for m in model.modules() if isinstance(getattr(m, "bpda", None), bool)]
    try:
        for m, _ in flagged:
            m.bpda = False
        yield model
    finally:
        for m, old in flagged:
            m.bpda = old


def gradient_path_of(model: nn.Module) -> str:
    """The gradient path a model declares ("exact" when it declares none)."""
    path = getattr(model, "gradient_path", "exact")
    return path if path in GRADIENT_PATHS else "exact"


_LABEL_ARGS = ("squeezers", "detectors", "temperature", "beta")


def defense_label(spec: dict[str, Any] | None) -> str:
    """A short name for a checkpoint's "defense" section, for result keys and tables:
    "none", or the name with its distinguishing arguments, e.g. "squeeze(bits:4)"."""
    if not spec:
        return "none"
    args = spec.get("args") or {}
    shown = []
    for key in _LABEL_ARGS:
        value = args.get(key)
        if value is None:
            continue
        shown.append("+".join(map(str, value)) if isinstance(value, list | tuple) else f"{key[0]}={value}")
    return f"{spec['name']}({', '.join(shown)})" if shown else str(spec["name"])
