"""Pluggable success predicates: what counts as a win for the attacker.

A criterion sees the model's real decisions (``model.predict``, REJECT = -1 when refused)
and, when it needs them, the scores; it returns a bool per sample. A rejected input is
never a success for the attacker: rejection is counted apart, as "detected".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from robustlab.core.contract import REJECT
from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry
from robustlab.core.scores import label_rank


class Criterion(ABC):
    """Decides, per sample, whether the attacker reached its goal."""

    name: ClassVar[str]
    needs_targets: ClassVar[bool] = False
    needs_scores: ClassVar[bool] = False

    @abstractmethod
    def __call__(
        self,
        decision: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
    ) -> torch.Tensor: ...

    def spec(self) -> dict[str, object]:
        return {"name": self.name}

    def check_batch(self, n: int) -> None:
        """Raise `InputError` if this criterion cannot judge a batch of `n` samples (a per-sample
        criterion built for another batch size). Per-batch criteria accept any n."""
        return None

    def select(self, rows: torch.Tensor, n: int) -> Criterion:
        """The criterion for rows `rows` of a batch of `n` samples (attacks run on the samples
        not already adversarial). A criterion without per-sample parameters is itself."""
        return self


class Misclassified(Criterion):
    """The decision is a class other than the true one (and not a rejection)."""

    name = "misclassified"

    def __call__(self, decision, y, targets=None, scores=None):
        return (decision != y) & (decision != REJECT)


class TargetedMisclassified(Criterion):
    """The decision is the attacker's target class."""

    name = "targeted"
    needs_targets = True

    def __call__(self, decision, y, targets=None, scores=None):
        if targets is None:
            raise ConfigError("the targeted criterion needs targets")
        return decision == targets


class TopKExcluded(Criterion):
    """The true label is not among the `k` highest scores, and the input is not rejected.

    This is the K-anonymity goal: the recognizer's top-k ranks no longer reveal the identity.
    """

    name = "topk_excluded"
    needs_scores = True

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        self.k = int(k)

    def __call__(self, decision, y, targets=None, scores=None):
        if scores is None:
            raise ConfigError("the top-k criterion needs scores")
        return (label_rank(scores, y) > self.k) & (decision != REJECT)

    def spec(self) -> dict[str, object]:
        return {"name": self.name, "k": self.k}


class Detected(Criterion):
    """The model rejected the input. Used to count detections, not as an attacker's goal."""

    name = "detected"

    def __call__(self, decision, y, targets=None, scores=None):
        return decision == REJECT


CriterionFactory = Callable[[str], Criterion]
CRITERIA: Registry[CriterionFactory] = Registry("success criterion")
"""name -> factory taking the text after the colon ("topk:5" -> "5"; "" when there is none)."""


def _no_argument(cls: type[Criterion]) -> CriterionFactory:
    def make(arg: str) -> Criterion:
        if arg:
            raise ConfigError(f"the {cls.name} criterion takes no argument, got {arg!r}")
        return cls()

    return make


def _topk(arg: str) -> Criterion:
    try:
        return TopKExcluded(int(arg or 1))
    except ValueError:
        raise ConfigError(f"topk:K needs an integer K, got {arg!r}") from None


CRITERIA.register("misclassified", _no_argument(Misclassified))
CRITERIA.register("targeted", _no_argument(TargetedMisclassified))
CRITERIA.register("topk", _topk)


def make_criterion(spec: str | Criterion | None, targeted: bool = False) -> Criterion:
    """A criterion from its name ("misclassified", "targeted", "topk:K", or a registered one) or itself."""
    if isinstance(spec, Criterion):
        return spec
    if spec is None:
        return TargetedMisclassified() if targeted else Misclassified()
    name, _, arg = str(spec).partition(":")
    return CRITERIA.get(name)(arg.strip())
