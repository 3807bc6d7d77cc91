"""Expectation over transformation (Athalye et al. 2018) for randomized models.

A model that draws fresh randomness at each forward (noise, a random autoencoder of a
MagNet pack, random resizing) gives an attacker a noisy gradient, and a robustness judged on
one draw counts a sample as robust whenever that one draw happened to be right.
`EOT(model, samples)` is a model again:

- ``forward`` is the mean of the scores over ``samples`` draws; `draw_scores` gives each
  draw's scores, from which the attack losses take the mean of the per-draw losses (the EOT
  gradient, as in the reference AutoAttack's eot_iter); the batch is repeated so the draws share
  forward passes (on a CPU of up to `DRAW_ROWS` rows, elsewhere all draws in one pass), never
  one pass per draw; `loss_gradient` backpropagates each such
  pass as soon as it is made, so its activations are used while they are still in cache;
- `judge` (used by the attack base for its clean check and final verdict) calls the
  model's real decision ``draws`` times and counts the attack a **success when any draw is
  fooled**: a sample is robust only if it is right on every draw. The decision reported is
  that of a fooled draw, else of a rejecting one, else the first. `judge_draws` also gives,
  per sample, the fraction of draws that decide the true label (the mean accuracy over draws,
  the number the reference's rand protocol estimates), which the attack base reports as
  ``extras["draw_accuracy"]``.

Every attack takes ``eot=N`` (N > 1 wraps the model it is given in `EOT(model, N)`), so the
gradient attacks and the AutoAttack-style ensemble evaluate randomized models the same way;
`robustlab.evaluate` turns it on by itself for a model it finds randomized.
"""

from __future__ import annotations

import torch

from robustlab.core.contract import REJECT, RobustModel
from robustlab.core.errors import ConfigError

DEFAULT_EOT = 10
"""Draws per gradient and per verdict when the evaluation finds a randomized model."""

DRAW_ROWS = 256
"""On a CPU, most rows (images times draws) in one pass of the draws: larger passes overflow its
caches (LeNet-5, one thread, rand protocol on 60 images: 15-25% slower in passes of 512 or 1,200
rows than of 256). Other devices make all draws in one pass."""


class EOT(RobustModel):
    """`model` averaged over `samples` random draws; verdicts over `draws` draws (default: samples)."""

    def __init__(self, model: RobustModel, samples: int = DEFAULT_EOT, draws: int | None = None) -> None:
        if not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"eot needs samples >= 1, got {samples!r}")
        super().__init__(model.num_classes, model.input_shape)
        self.model = model
        self.train(model.training)  # the wrapper is in the mode of what it wraps
        self.samples = samples
        self.draws = int(draws) if draws is not None else samples
        if self.draws < 1:
            raise ConfigError(f"eot needs draws >= 1, got {draws!r}")

    @property
    def can_reject(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.model, "can_reject", False))

    @property
    def decision_from_scores(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.model, "decision_from_scores", True))

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        return self.model.decide(scores)

    def passes(self, n: int, device: torch.device) -> list[int]:
        """How many draws of a batch of `n` images on `device` each pass holds (on a CPU at most
        `DRAW_ROWS` rows)."""
        per = max(1, DRAW_ROWS // max(n, 1)) if device.type == "cpu" else self.samples
        return [min(per, self.samples - i) for i in range(0, self.samples, per)]

    def _draws(self, fn, x: torch.Tensor, k: int) -> torch.Tensor:
        """`fn` on `k` draws of `x` in one pass, (k, N, ...)."""
        out = fn(x.repeat(k, *([1] * (x.dim() - 1))))
        return out.view(k, len(x), *out.shape[1:])

    def _mean(self, fn, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._draws(fn, x, k) for k in self.passes(len(x), x.device)]).mean(dim=0)

    def draw_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The scores of each of ``samples`` draws, (samples, N, C)."""
        return torch.cat([self._draws(self.model, x, k) for k in self.passes(len(x), x.device)])

    def loss_gradient(self, x: torch.Tensor, loss_fn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gradient of the mean over draws of ``loss_fn(scores)``, summed over the batch, w.r.t. `x`;
        mean scores; mean per-sample loss): each pass of draws backpropagated before the next."""
        grad, scores, loss = torch.zeros_like(x), None, None
        for k in self.passes(len(x), x.device):
            xr = x.detach().requires_grad_(True)
            with torch.enable_grad():
                draws = self._draws(self.model, xr, k)
                part = torch.stack([loss_fn(s) for s in draws]).sum(dim=0)
                (g,) = torch.autograd.grad(part.sum(), xr)
            grad += g
            s_sum, part = draws.detach().sum(dim=0), part.detach()
            scores = s_sum if scores is None else scores + s_sum
            loss = part if loss is None else loss + part
        assert scores is not None and loss is not None
        return grad / self.samples, scores / self.samples, loss / self.samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.draw_scores(x).mean(dim=0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._mean(self.model.embed, x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """One draw of the model's real decision (verdicts over several draws: `judge`)."""
        return self.model.predict(x)

    @torch.no_grad()
    def judge(self, x, y, targets, criterion) -> tuple[torch.Tensor, torch.Tensor]:
        """(success, decision) over `draws` draws: success when any draw is a success."""
        success, decision, _ = self.judge_draws(x, y, targets, criterion)
        return success, decision

    @torch.no_grad()
    def judge_draws(self, x, y, targets, criterion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`judge`, plus the fraction of the `draws` draws whose decision is the true label, (N,)."""
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        correct = torch.zeros(len(x), device=x.device)
        decision: torch.Tensor | None = None
        for _ in range(self.draws):
            d = self.model.predict(x)
            correct += (d == y).float()
            scores = self.model(x) if criterion.needs_scores else None
            ok = criterion(d, y, targets, scores)
            if decision is None:
                decision = d.clone()
            rejected = (d == REJECT) & (decision != REJECT) & ~success
            decision = torch.where((ok & ~success) | rejected, d, decision)
            success |= ok
        assert decision is not None
        return success, decision, correct / self.draws


def with_eot(model: RobustModel, samples: int) -> RobustModel:
    """`model` wrapped in EOT when samples > 1 (never twice)."""
    if samples <= 1 or isinstance(model, EOT):
        return model
    return EOT(model, samples)


@torch.no_grad()
def is_randomized(model: RobustModel, x: torch.Tensor) -> bool:
    """True when the model declares randomness or two forward passes on `x` differ."""
    if bool(getattr(model, "randomized", False)):
        return True
    return not torch.equal(model(x), model(x))
