"""The adversarial-training methods: how each builds its adversarial batch and its loss.

``L(x')`` below is the wrapped objective's own training loss on a batch x' (cross-entropy
for softmax, the margin loss for ArcFace, the triplet / contrastive / MCT / PCL loss for
metric heads). Every attack is the PGD step rule of `robustlab.attacks.PGD.ascend`.

- ``fgsm-mix`` (Goodfellow et al. 2015): alpha * L(x) + (1 - alpha) * L(x + eps sign grad L);
- ``pgd`` (Madry et al. 2018): L(x') with x' from ``steps`` PGD steps on L from a random start;
- ``fgsm-rs`` (Wong et al. 2020): one step of 1.25 eps from a uniform random start, projected;
- ``n-fgsm`` (de Jorge et al. 2022): one step of eps from noise uniform in the ball of radius
  k eps (Linf: U(-k eps, k eps) per pixel), k = ``noise`` (default 2), not projected back to
  the eps ball: x' lies within (k + 1) eps of x, by the method's design;
- ``trades`` (Zhang et al. 2019): L(x) + beta * KL(p(x) || p(x')), x' maximising that KL from
  x + 0.001 N(0, 1) (the attack ascends TRADES' own term, as the method defines it);
- ``alp`` (Kannan et al. 2018): alpha L(x) + (1 - alpha) L(x') + weight * MSE(z(x), z(x'));
- ``tla`` (Mao et al. 2019): L(x') + weight * triplet(anchor f(x'), positive f(x_p), negative the
  nearest clean image of another class; Euclidean, ``margin``) + norm_weight * (mean ||f(x')||
  + mean ||f(x_p)||), the embedding-norm regulariser. The positive is the anchor's own clean
  image; ``other_positive=1`` draws another clean image of its class instead (measured on
  digits, LeNet, 4 epochs: that pushes the features to 0 and the model to 10%; the MLP learns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry
from robustlab.losses.adversarial import adversarial_triplet, logit_pairing, trades_kl
from robustlab.train.objectives import ObjectiveOutput

if TYPE_CHECKING:
    from robustlab.train.adversarial.config import AdvConfig
    from robustlab.train.adversarial.objective import AdversarialObjective


METHODS: Registry[Method] = Registry("adversarial-training method")
"""Method instances by name (`get_method`)."""


class Method:
    """One adversarial-training method: its defaults, its checks, and its loss. A new one is a
    subclass registered with ``METHODS.register(name, instance)``."""

    name: ClassVar[str]
    multi_step: ClassVar[bool] = True
    default_steps: ClassVar[int] = 10
    default_step_size: ClassVar[float | None] = None
    """Per-step size as a fraction of eps; None: 2.5 / steps (PGD's default)."""
    random_start: ClassVar[bool] = True
    defaults: ClassVar[dict[str, float]] = {}

    def steps(self, cfg: AdvConfig) -> int:
        return cfg.steps if cfg.steps is not None else self.default_steps

    def step_size(self, cfg: AdvConfig) -> float:
        if cfg.step_size is not None:
            return cfg.step_size
        return self.default_step_size if self.default_step_size is not None else 2.5 / self.steps(cfg)

    def check(self, cfg: AdvConfig) -> None:
        """Raise ConfigError for steps or args this method does not take."""
        if not self.multi_step and cfg.steps not in (None, 1):
            raise ConfigError(f"adv: {self.name} is single-step; steps must be 1, got {cfg.steps}")
        unknown = set(cfg.args) - set(self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(f"adv: {self.name} takes no argument {sorted(unknown)}; its arguments: {known}")
        for key, value in cfg.args.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value or value < 0:
                raise ConfigError(f"adv: {self.name} {key} must be a number >= 0, got {value!r}")
        if "alpha" in cfg.args and cfg.args["alpha"] > 1:
            raise ConfigError(f"adv: {self.name} alpha must be in [0, 1], got {cfg.args['alpha']}")

    def applies(self, model: RobustModel) -> str | None:
        """Why this method cannot train `model` (None when it can)."""
        return None

    def loss(self, obj: AdversarialObjective, model, x, y, epoch: int, eps: torch.Tensor) -> ObjectiveOutput:
        raise NotImplementedError


def _needs_scores(model: RobustModel) -> str | None:
    head = getattr(model, "head", None)
    if head is not None and getattr(head, "needs_gallery", False):
        return ("its scores come from a k-NN gallery that only exists after training; "
                "use pgd, fgsm-rs, n-fgsm, fgsm-mix or tla")
    return None


class FGSMMix(Method):
    name = "fgsm-mix"
    multi_step = False
    default_steps = 1
    default_step_size = 1.0
    random_start = False
    defaults = {"alpha": 0.5}

    def loss(self, obj, model, x, y, epoch, eps):
        a = obj.arg("alpha")
        x_adv = obj.perturb(model, x, y, epoch, eps)
        clean, adv = obj.inner(model, x, y, epoch), obj.inner(model, x_adv, y, epoch)
        return ObjectiveOutput(a * clean.loss + (1 - a) * adv.loss, adv.scores, adv.logs)


class PGDTraining(Method):
    name = "pgd"

    def loss(self, obj, model, x, y, epoch, eps):
        return obj.inner(model, obj.perturb(model, x, y, epoch, eps), y, epoch)


class FGSMRS(PGDTraining):
    name = "fgsm-rs"
    multi_step = False
    default_steps = 1
    default_step_size = 1.25


class NFGSM(PGDTraining):
    name = "n-fgsm"
    multi_step = False
    default_steps = 1
    default_step_size = 1.0
    defaults = {"noise": 2.0}

    def loss(self, obj, model, x, y, epoch, eps):
        k = obj.arg("noise")
        noise = obj.ball_noise(x, eps * k)
        start = (x + noise).clamp(0.0, 1.0)
        x_adv = obj.perturb(model, x, y, epoch, eps, radius=eps * (k + 1), start=start)
        return obj.inner(model, x_adv, y, epoch)


class TRADES(Method):
    name = "trades"
    defaults = {"beta": 6.0}

    def applies(self, model):
        return _needs_scores(model)

    def loss(self, obj, model, x, y, epoch, eps):
        c = model.num_classes
        with torch.no_grad():
            target = model(x)[:, :c]
        start = (x + 0.001 * obj.gaussian_noise(x)).clamp(0.0, 1.0)
        x_adv = obj.perturb(model, x, y, epoch, eps, start=start,
                            loss_fn=lambda xa: trades_kl(target, model(xa)[:, :c]))
        clean = obj.inner(model, x, y, epoch)
        robust = trades_kl(model(x)[:, :c], model(x_adv)[:, :c])
        logs = {**clean.logs, "trades_kl": float(robust.detach())}
        return ObjectiveOutput(clean.loss + obj.arg("beta") * robust, clean.scores, logs)


class ALP(Method):
    name = "alp"
    defaults = {"alpha": 0.5, "weight": 0.5}

    def applies(self, model):
        return _needs_scores(model)

    def loss(self, obj, model, x, y, epoch, eps):
        a, c = obj.arg("alpha"), model.num_classes
        x_adv = obj.perturb(model, x, y, epoch, eps)
        clean, adv = obj.inner(model, x, y, epoch), obj.inner(model, x_adv, y, epoch)
        pairing = logit_pairing(model(x)[:, :c], model(x_adv)[:, :c])
        logs = {**adv.logs, "logit_pairing": float(pairing.detach())}
        return ObjectiveOutput(a * clean.loss + (1 - a) * adv.loss + obj.arg("weight") * pairing, adv.scores, logs)


class TLA(Method):
    name = "tla"
    defaults = {"weight": 0.5, "margin": 0.5, "norm_weight": 0.001, "other_positive": 0}

    def check(self, cfg):
        super().check(cfg)
        if cfg.args.get("other_positive", 0) not in (0, 1):
            raise ConfigError(f"adv: tla other_positive must be 0 or 1, got {cfg.args['other_positive']!r}")

    def applies(self, model):
        if type(model).embed is RobustModel.embed:
            return "it needs an embedding (the model does not implement embed)"
        return None

    def loss(self, obj, model, x, y, epoch, eps):
        from robustlab.train.metric.mct import random_positive

        x_adv = obj.perturb(model, x, y, epoch, eps)
        adv = obj.inner(model, x_adv, y, epoch)
        feats = model.embed(torch.cat([x_adv, x]))
        f_adv, f_clean = feats[: len(x)], feats[len(x) :]
        positives = f_clean[random_positive(y)] if obj.arg("other_positive") else f_clean
        triplet = adversarial_triplet(f_adv, positives, f_clean, y, obj.arg("margin"))
        norms = f_adv.norm(dim=1).mean() + positives.norm(dim=1).mean()
        logs = {**adv.logs, "tla_triplet": float(triplet.detach())}
        loss = adv.loss + obj.arg("weight") * triplet + obj.arg("norm_weight") * norms
        return ObjectiveOutput(loss, adv.scores, logs)


for _method in (FGSMMix(), PGDTraining(), FGSMRS(), NFGSM(), TRADES(), ALP(), TLA()):
    METHODS.register(_method.name, _method)


def get_method(name: Any) -> Method:
    """The method called `name`; unknown names raise `UnknownNameError` listing the known ones."""
    return METHODS.get(str(name))
