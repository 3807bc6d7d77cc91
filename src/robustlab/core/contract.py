"""The model contract every layer relies on (see DESIGN.md, "The model contract").

A robustlab model is an `nn.Module` that takes images in [0, 1], NCHW, and offers

- ``forward(x)``: differentiable class scores (N, C), or (N, C + 1) when it can reject;
- ``embed(x)``: the feature vector its head works on, (N, D);
- ``predict(x)``: its real decision, int64 (N,), with ``REJECT`` (-1) when it refuses;
- ``num_classes`` and ``input_shape`` (C, H, W).

``decide(scores)`` maps scores to decisions when the decision is a pure function of the
scores (softmax argmax, nearest prototype, a reject column). Attacks use it to judge
success from the forward pass they already made instead of a second pass; models whose
decision is not a function of their scores (a k-NN vote) set ``decision_from_scores`` to
False and attacks fall back on ``predict``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import nn

REJECT: int = -1
"""The label `predict` returns when a model refuses to classify an input."""


class RobustModel(nn.Module):
    """Base class of robustlab models. Subclasses implement `forward` and `embed`."""

    num_classes: int
    input_shape: tuple[int, int, int]
    can_reject: ClassVar[bool] = False
    decision_from_scores: ClassVar[bool] = True

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Decisions from scores: argmax over the C classes, or REJECT when column C wins."""
        labels = scores.argmax(dim=1)
        if self.can_reject:
            labels = torch.where(labels == self.num_classes, torch.full_like(labels, REJECT), labels)
        return labels

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The model's real decision for `x`: int64 labels (N,), REJECT (-1) when refused."""
        return self.decide(self(x))

    def forward_decide(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, decision) of `x`: `forward` (differentiable when grad is enabled) and exactly
        what `predict` returns. The default makes a second pass when the decision is not a
        function of the scores; models that can share one pass (k-NN heads) override it."""
        scores = self(x)
        if self.decision_from_scores:
            return scores, self.decide(scores.detach())
        return scores, self.predict(x)


def batched_predict(model: RobustModel, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """`model.predict` over `x` in chunks of `batch_size`, on the model's device."""
    device = next(model.parameters(), torch.empty(0)).device
    out = [model.predict(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode and give every sub-module its own training flag back afterwards
    (so that evaluating a caller's model leaves it as it was)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
