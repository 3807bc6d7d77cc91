"""Defensive distillation (Papernot et al. 2016; paper 002, section 4.6).

1. a teacher is trained with the softmax at temperature T, softmax(z / T) (``teacher =
   "retrain"``, Papernot et al.), or the given trained model is the teacher (``"base"``, as
   paper 002 describes: "class probabilities extracted" from the usual model);
2. the soft labels are softmax(z_teacher / T) on the training images;
3. a student of the same architecture (warm-started from the model, or freshly initialised:
   ``init``) is trained on them at T;
4. the student is deployed at T = 1: ``forward`` returns its raw logits.

T defaults to 100, Papernot et al.'s value (paper 002 does not state its T). ``init =
"base"`` (the default) warm-starts teacher and student from the given model with its final
linear layer multiplied by T, so softmax(z / T) starts at the given model's softmax and a few
epochs suffice (a shortcut to the same deployed network: logits about T times the usual
ones); it needs a linear head (softmax, ring). ``init = "scratch"`` trains both from a fresh
initialisation, as Papernot et al. do; at large T that needs many epochs (the logits must
grow about T-fold): 10 epochs at T = 100 leave a model near chance, which every path then
flags (`robustlab.evaluate.defended.defense_fit_warning`). The deployed
logits are about T times larger than a normally trained model's, so the softmax saturates
and the cross-entropy gradient vanishes in float32: that is gradient masking, not
robustness. The defense therefore declares ``attack_losses = ("margin", "dlr")``: attacks on
logit differences (C&W margin, DLR) are unaffected by the scale.

Metric heads (triplet, contrastive, k-NN and prototype decisions) have no softmax over
class logits, hence no soft labels: distillation refuses them with a `ConfigError`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import seed_everything
from robustlab.defenses.base import DefendedModel, DefenseBuild, train_xy
from robustlab.defenses.registry import Defense, register_defense
from robustlab.models.classifier import Classifier, build_model
from robustlab.train import Objective, ObjectiveOutput, TrainConfig, train

DISTILLABLE_HEADS = ("softmax", "ring", "arcface")
"""Heads that decide by the argmax of class logits, so a softmax at T exists."""


def soft_labels(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the classes, (N, C), rows summing to 1."""
    return F.softmax(logits / temperature, dim=1)


def check_temperature(temperature: float) -> float:
    if not isinstance(temperature, int | float) or not float(temperature) > 0 or temperature != temperature:
        raise ConfigError(f"the distillation temperature T must be > 0, got {temperature!r}")
    return float(temperature)


def check_distillable(model: RobustModel) -> Classifier:
    """The model as a Classifier whose head has class logits; a clear ConfigError otherwise."""
    if not isinstance(model, Classifier):
        raise ConfigError(f"defensive distillation needs a robustlab Classifier, got {type(model).__name__}")
    head = model.config.head
    if head not in DISTILLABLE_HEADS:
        raise ConfigError(
            f"defensive distillation trains a student on the teacher's softmax at temperature T; the "
            f"{head!r} head decides by distances in its embedding space (k-NN vote or prototypes), not by a "
            f"softmax over class logits, so there are no soft labels to distil. Distil a classification "
            f"head ({', '.join(DISTILLABLE_HEADS)}), or defend this model with squeeze, magnet or msvdd."
        )
    return model


class TemperatureCrossEntropy(Objective):
    """Cross-entropy of softmax(scores / T) against hard labels (the teacher at T)."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(self, model: RobustModel, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        scores = model(x)
        return ObjectiveOutput(F.cross_entropy(scores / self.temperature, y), scores)


class SoftLabelCrossEntropy(Objective):
    """-sum_c q_c log softmax(scores / T)_c against the soft labels q (N_train, C).

    The trainer is handed the image *indices* as labels (``train(student, x, arange(N))``),
    so each batch looks its soft labels up by row; its logged training accuracy is then
    meaningless and is not used."""

    def __init__(self, soft: torch.Tensor, temperature: float) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.register_buffer("soft", soft)

    def forward(self, model: RobustModel, x: torch.Tensor, rows: torch.Tensor, epoch: int) -> ObjectiveOutput:
        scores = model(x)
        log_p = F.log_softmax(scores / self.temperature, dim=1)
        return ObjectiveOutput(-(self.soft[rows] * log_p).sum(dim=1).mean(), None)


class DistilledModel(DefendedModel):
    """The distilled student, deployed at T = 1 (its raw logits). ``temperature`` records T."""

    defense_name = "distillation"
    gradient_path = "exact"
    attack_losses = ("margin", "dlr")

    def __init__(self, base: Classifier, temperature: float = 100.0) -> None:
        super().__init__(check_distillable(base))
        self.temperature = check_temperature(temperature)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.embed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.predict(x)

    def defense_args(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


@dataclass
class DistillConfig:
    """T > 0 (default 100); ``teacher`` "retrain" (trained at T) or "base" (the given model);
    ``init`` "base" (warm start from the model, its linear layer times T) or "scratch";
    ``train``: the recipe of the teacher (when retrained) and of the student."""

    temperature: float = 100.0
    teacher: str = "retrain"
    init: str = "base"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, optimizer="adam", lr=1e-3))
    seed: int = 0

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)
        if self.teacher not in ("retrain", "base"):
            raise ConfigError(f"teacher must be 'retrain' or 'base', got {self.teacher!r}")
        if self.init not in ("scratch", "base"):
            raise ConfigError(f"init must be 'scratch' or 'base', got {self.init!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d


@torch.no_grad()
def _logits(model: RobustModel, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _fresh(base: Classifier, cfg: DistillConfig, seed: int) -> Classifier:
    """A network to train at T: freshly initialised, or `base` with its linear layer times T."""
    seed_everything(seed)
    if cfg.init == "scratch":
        return build_model(base.config).to(next(base.parameters()).device)
    linear = getattr(base.head, "linear", None)
    if not isinstance(linear, torch.nn.Linear):
        raise ConfigError(f"init='base' (the default) scales a linear head by T; the {base.config.head!r} head has "
                          "none: pass init='scratch' (--init scratch) and enough epochs")
    model = copy.deepcopy(base)
    with torch.no_grad():
        model.head.linear.weight.mul_(cfg.temperature)
        model.head.linear.bias.mul_(cfg.temperature)
    return model.train()


def distill(
    model: RobustModel, x_train: torch.Tensor, y_train: torch.Tensor, cfg: DistillConfig | None = None
) -> DistilledModel:
    """The distilled defense of `model` (left unchanged) on (x_train, y_train), on its device."""
    cfg = cfg or DistillConfig()
    base = check_distillable(model)
    device = next(base.parameters()).device
    x_train, y_train = x_train.to(device), y_train.to(device)
    if cfg.teacher == "base":
        teacher = copy.deepcopy(base).eval()
    else:
        teacher = _fresh(base, cfg, cfg.seed)
        train(teacher, x_train, y_train, cfg.train, objective=TemperatureCrossEntropy(cfg.temperature))
    teacher.eval()
    soft = soft_labels(_logits(teacher, x_train), cfg.temperature)
    student = _fresh(base, cfg, cfg.seed + 1)
    rows = torch.arange(len(x_train), device=device)
    train(student, x_train, rows, cfg.train, objective=SoftLabelCrossEntropy(soft, cfg.temperature))
    return DistilledModel(student.eval(), cfg.temperature).eval()


# ---------------------------------------------------------------- the defense's declaration
def _settings(temperature: float = 100.0, teacher: str = "retrain", init: str = "base", epochs: int = 10,
              lr: float = 1e-3, optimizer: str = "adam", batch_size: int = 128, weight_decay: float = 0.0,
              seed: int = 0) -> DistillConfig:
    return DistillConfig(
        temperature=temperature, teacher=teacher, init=init, seed=seed,
        train=TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size,
                          weight_decay=weight_decay, seed=seed),
    )


def _build(model: Classifier, data: Any, cfg: DistillConfig) -> DefenseBuild:
    check_distillable(model)
    x, y = train_xy(data)
    return DefenseBuild(distill(model, x, y, cfg), {"config": cfg.to_dict()})


register_defense(Defense(
    name="distillation",
    command="distill",
    aliases=("distill",),
    summary="Defensive distillation: a student trained on the teacher's softmax at T, deployed at T = 1.",
    check=_settings,
    build=_build,
    structure=DistilledModel,
    help={
        "temperature": "T > 0 (Papernot et al.'s 100).",
        "teacher": "retrain (a teacher trained at T) or base.",
        "init": "base: warm start from MODEL with its linear layer times T (few epochs suffice), or scratch "
                "(Papernot et al.; needs many epochs at large T).",
        "epochs": "Epochs of the teacher and of the student.",
        "optimizer": "adam or sgd.",
    },
    flags={"temperature": ("--temperature", "-T")},
))
