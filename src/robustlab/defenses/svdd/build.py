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
from typing import Any, cast

import torch
from torch.nn import functional as F

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.defenses.base import DefenseBuild, check_fraction, split_validation
from robustlab.defenses.registry import Defense, register_defense
from robustlab.defenses.svdd.beta import BetaTuning, accuracy, tune_beta
from robustlab.defenses.svdd.layer import SVDDLayer
from robustlab.defenses.svdd.model import MSVDDModel, build_msvdd_structure
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


# ---------------------------------------------------------------- the defense's declaration
def _beta(beta: str | float) -> str | float:
    if beta in ("O_c", "O_d", "one"):
        return beta
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ConfigError(f"beta must be O_c, O_d, one or a positive number, got {beta!r}") from None
    if not value > 0:
        raise ConfigError(f"beta must be positive, got {value}")
    return value


def _settings(projections: int = 128, positive_epochs: int = 30, svdd_epochs: int = 20, c_p: float = 10.0,
              c_n: float = 10.0, finetune_epochs: int = 3, finetune_lr: float = 1e-4, budget: float = 0.03,
              beta: str = "O_c", v_a: float = 0.001, v_p: float = 1.0, val_fraction: float = 0.1,
              seed: int = 0) -> tuple[MSVDDConfig, float]:
    cfg = MSVDDConfig(
        num_projections=projections,
        svdd=SVDDTrainConfig(positive_epochs=positive_epochs, epochs=svdd_epochs, c_p=c_p, c_n=c_n, seed=seed),
        finetune=TrainConfig(epochs=finetune_epochs, optimizer="adam", lr=finetune_lr, weight_decay=0.0, seed=seed),
        v_p=v_p, v_a=v_a, budget=budget, beta=_beta(beta), seed=seed,
    )
    return cfg, check_fraction(val_fraction)


def _build(model: Classifier, data: Any, settings: tuple[MSVDDConfig, float]) -> DefenseBuild:
    cfg, val_fraction = settings
    if model.config.head != "softmax":
        raise ConfigError(f"M-SVDD replaces a linear (softmax) head; this model has {model.config.head}")
    x_tr, y_tr, x_val, y_val = split_validation(data, val_fraction, cfg.seed)
    device = next(model.parameters()).device
    built = build_msvdd(model, x_tr.to(device), y_tr.to(device), x_val, y_val, cfg)
    tuning = built.beta
    return DefenseBuild(built.model, {
        "config": cfg.to_dict(), "val_fraction": val_fraction,
        "beta": {"O_c": tuning.beta_oc.tolist(), "O_d": tuning.beta_od.tolist(), "O_d_scale": tuning.scale_od,
                 "val_accuracy_O_c": tuning.accuracy_oc, "val_accuracy_O_d": tuning.accuracy_od},
        "svdd_history": built.svdd_history,
    })


def _measure(model: RobustModel, base: RobustModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Table 1 of paper 001 on (x, y): the base (W-LC), the fine-tuned linear head (W~-LC), and the
    defense at either beta."""
    model = cast(MSVDDModel, model)
    table = {"W-LC": accuracy(base, x, y), "W~-LC": accuracy(model.linear_classifier(), x, y)}
    mode = model.svdd.beta_mode
    for beta in ("O_c", "O_d"):
        model.svdd.set_beta_mode(beta)
        table[f"W~-SVDD(beta={beta})"] = accuracy(model, x, y)
    model.svdd.set_beta_mode(mode)
    return table


def _companions(model: RobustModel) -> dict[str, RobustModel]:
    return {"linear": cast(MSVDDModel, model).linear_classifier()}


register_defense(Defense(
    name="msvdd",
    command="svdd",
    aliases=("svdd",),
    summary="Replace the linear head of MODEL by one SVDD per class plus an adversarial class (M-SVDD-D); "
            "W~-LC is saved beside it under OUT/linear.",
    check=_settings,
    build=_build,
    structure=build_msvdd_structure,
    help={
        "projections": "M, projection vectors per class.",
        "positive_epochs": "Stage 1 (positives only), max.",
        "svdd_epochs": "Stage 2 (positives + negatives).",
        "c_p": "Weight of the positive hinge (eq. 11).",
        "c_n": "Weight of the negative hinge (eq. 12).",
        "finetune_epochs": "Backbone fine-tuning epochs.",
        "finetune_lr": "Adam learning rate of the fine-tuning.",
        "val_fraction": "Training share held out to tune beta.",
        "budget": "Clean-accuracy loss allowed for beta = O_d.",
        "beta": "Active beta: O_c, O_d, one, or a number.",
        "v_a": "Constant response of the adversarial class.",
        "v_p": "Clamp ceiling of the SVDD responses.",
    },
    measure=_measure,
    companions=_companions,
))
