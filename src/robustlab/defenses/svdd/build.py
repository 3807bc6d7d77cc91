"""Building the M-SVDD defense from a trained classifier (sections 4.1-4.2, in the paper's order).

1. copy the classifier W (the original stays untouched: it is W-LC);
2. initialise the SVDD layer from M training features per class and train it on the frozen
   backbone's features, positives first, then positives and negatives (`fit_svdd`);
3. fine-tune the backbone with the SVDD layer frozen, cross-entropy over the responses r;
   the original linear head is kept, so the result also holds W~-LC;
4. switch on ReLU/clamp and the adversarial class, and tune beta = O_c and O_d on
   validation data (`tune_beta`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.defenses.svdd.beta import BetaTuning, tune_beta
from robustlab.defenses.svdd.layer import SVDDLayer
from robustlab.defenses.svdd.model import MSVDDModel
from robustlab.defenses.svdd.training import SVDDTrainConfig, fit_svdd
from robustlab.models.classifier import Classifier
from robustlab.train import Objective, ObjectiveOutput, TrainConfig, train


@dataclass
class MSVDDConfig:
    """Everything the defense build needs. ``finetune.epochs = 0`` skips step 3 (the default,
    Adam at 1e-4, is gentle on purpose: SGD at 1e-2 collapsed a LeNet's features on ORL);
    ``logit_scale`` multiplies r inside the fine-tuning cross-entropy (1 = plain CE over r);
    ``budget`` is O_d's allowed loss of clean validation accuracy (a fraction)."""

    num_projections: int = 128
    svdd: SVDDTrainConfig = field(default_factory=SVDDTrainConfig)
    finetune: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, optimizer="adam", lr=1e-4, weight_decay=0.0)
    )
    logit_scale: float = 1.0
    v_p: float = 1.0
    v_a: float = 0.001
    budget: float = 0.03
    beta: str | float = "O_c"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_projections < 1 or self.logit_scale <= 0:
            raise ConfigError("num_projections must be >= 1 and logit_scale > 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["finetune"] = self.finetune.to_dict()
        return d


class ResponseCrossEntropy(Objective):
    """Cross-entropy over logit_scale * r, for fine-tuning the backbone under a frozen SVDD layer."""

    def __init__(self, logit_scale: float = 1.0) -> None:
        super().__init__()
        self.logit_scale = float(logit_scale)

    def forward(self, model: RobustModel, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        scores = model(x)
        return ObjectiveOutput(F.cross_entropy(self.logit_scale * scores, y), scores)


@torch.no_grad()
def backbone_features(model: RobustModel, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """model.embed over `x` in batches, in eval mode, on the model's device."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = torch.cat([model.embed(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


@dataclass
class MSVDDBuild:
    """The defended model and what the build logged."""

    model: MSVDDModel
    svdd_history: list[dict[str, float]]
    finetune_history: list[Any]
    beta: BetaTuning


def build_msvdd(
    classifier: Classifier,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    cfg: MSVDDConfig | None = None,
) -> MSVDDBuild:
    """The M-SVDD defense of `classifier` (left unchanged), trained on (x_train, y_train) and
    tuned on (x_val, y_val); images in [0, 1] on the classifier's device."""
    cfg = cfg or MSVDDConfig()
    if not isinstance(classifier, Classifier):
        raise ConfigError("the M-SVDD defense needs a robustlab Classifier (backbone + linear head)")
    base = copy.deepcopy(classifier).eval()
    device = next(base.parameters()).device
    layer = SVDDLayer(base.num_classes, base.backbone.feature_dim, cfg.num_projections).to(device)
    feats = backbone_features(base, x_train)
    layer.initialize(feats, y_train, seed=cfg.seed)
    svdd_history = fit_svdd(layer, feats, y_train.to(device), cfg.svdd)

    model = MSVDDModel(base, layer, v_p=cfg.v_p, v_a=cfg.v_a, defended=False)
    layer.requires_grad_(False)
    finetune_history: list[Any] = []
    if cfg.finetune.epochs > 0:
        finetune_history = train(
            model, x_train, y_train, cfg.finetune, objective=ResponseCrossEntropy(cfg.logit_scale)
        )
    layer.requires_grad_(True)
    model.eval()
    model.defended = True
    tuning = tune_beta(model, x_val, y_val, budget=cfg.budget)
    layer.set_beta_mode(cfg.beta)
    return MSVDDBuild(model, svdd_history, finetune_history, tuning)
