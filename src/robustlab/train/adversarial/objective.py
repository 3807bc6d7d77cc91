"""`AdversarialObjective`: wraps any head's objective so that it trains on adversarial batches.

The wrapper draws each batch's eps (fixed, or uniform in [eps_min, eps] per batch or per
sample, times the warm-up ramp), builds the adversarial batch with `PGD.ascend` on the wrapped
objective's own loss, and hands the method's loss to the trainer. Batching (P x K for metric
losses) and the objective's own optimizer (PCL centres) are the wrapped objective's.

The attack runs the model as the trainer leaves it (training mode: batch-norm statistics see
the adversarial forward passes, as in Madry et al.'s code). Random draws (starts, noise, eps)
come from a CPU generator seeded with the training seed, so runs are bit-reproducible on CPU
and do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustlab.attacks import PGD
from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.norms import random_in_ball
from robustlab.train.adversarial.config import AdvConfig
from robustlab.train.adversarial.guard import OverfitGuard
from robustlab.train.adversarial.methods import get_method
from robustlab.train.objectives import Objective, ObjectiveOutput


class AdversarialObjective(Objective):
    """`inner` trained adversarially by the recipe `cfg`; `guard_data` (x, y) enables the guard."""

    def __init__(
        self,
        inner: Objective,
        model: RobustModel,
        cfg: AdvConfig,
        *,
        seed: int = 0,
        guard_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(inner, AdversarialObjective):
            raise ConfigError("adv: the objective is already adversarial")
        self.method = get_method(cfg.method)
        reason = self.method.applies(model)
        if reason:
            raise ConfigError(f"adv: {cfg.method} does not apply to this model: {reason}")
        self.inner = inner
        self.cfg = cfg
        self.args = {**self.method.defaults, **cfg.args}
        self.fraction = self.method.step_size(cfg)
        self.attack = PGD(eps=cfg.eps, norm=cfg.norm, steps=self.method.steps(cfg),
                          random_start=self.method.random_start)
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        self.guard = None
        if guard_data is not None and cfg.guard > 0 and cfg.eps > 0:
            x, y = guard_data
            self.guard = OverfitGuard(x[: cfg.guard], y[: cfg.guard], cfg.eps, cfg.norm)
        self.evaluates_each_epoch = self.guard is not None

    # ------------------------------------------------------------ the Objective interface
    def forward(self, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        return self.method.loss(self, model, x, y, epoch, self.batch_eps(len(x), epoch, x.device))

    def extra_optimizer(self) -> torch.optim.Optimizer | None:
        return self.inner.extra_optimizer()

    def make_batches(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator):
        return self.inner.make_batches(labels, batch_size, generator)

    def end_epoch(self, model, epoch: int) -> dict[str, float]:
        return self.guard(model, epoch + 1) if self.guard is not None else {}

    # ------------------------------------------------------------ for the methods
    def arg(self, name: str) -> float:
        return float(self.args[name])

    def batch_eps(self, n: int, epoch: int, device: torch.device) -> torch.Tensor:
        """Per-sample eps (n,) for a batch of epoch `epoch` (from 0): drawn, then warmed up."""
        cfg = self.cfg
        if cfg.eps_min is None:
            eps = torch.full((n,), cfg.eps)
        else:
            u = torch.rand(1 if cfg.sampling == "batch" else n, generator=self.generator).expand(n)
            eps = cfg.eps_min + (cfg.eps - cfg.eps_min) * u
        if cfg.warmup_epochs:
            eps = eps * min(1.0, (epoch + 1) / cfg.warmup_epochs)
        return eps.to(device=device, dtype=torch.float32)

    def ball_noise(self, x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """Uniform noise in each sample's `norm` ball of radius radius_i (N,), shaped like `x`
        (Linf: U(-radius_i, radius_i) per pixel)."""
        unit = random_in_ball(x, self.cfg.norm, 1.0, self.generator)
        return unit * radius.view(-1, *([1] * (x.dim() - 1)))

    def gaussian_noise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=self.generator).to(x)

    def perturb(
        self,
        model,
        x: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
        eps: torch.Tensor,
        *,
        radius: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
        loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The adversarial batch: `PGD.ascend` on `loss_fn` (default: the wrapped objective's
        loss) with steps of ``step_size * eps``, projected onto the `radius` balls (default eps)."""
        if loss_fn is None:
            def loss_fn(xa: torch.Tensor) -> torch.Tensor:
                return self.inner(model, xa, y, epoch).loss

        return self.attack.ascend(loss_fn, x, eps=radius if radius is not None else eps,
                                  step_size=self.fraction * eps, start=start, generator=self.generator)


def adversarial(
    objective: Objective,
    model: RobustModel,
    cfg: AdvConfig,
    *,
    seed: int = 0,
    guard_data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> AdversarialObjective:
    """`objective` wrapped for adversarial training with the recipe `cfg` (see AdvConfig)."""
    return AdversarialObjective(objective, model, cfg, seed=seed, guard_data=guard_data)
