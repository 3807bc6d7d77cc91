"""`AdvConfig`: the adversarial-training recipe (method, budget, eps schedule, guard), validated
on construction so that a bad value fails before any training starts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from robustlab.core.errors import ConfigError
from robustlab.core.norms import check_norm
from robustlab.core.threat import Norm

SAMPLING = ("batch", "sample")


@dataclass
class AdvConfig:
    """How to train adversarially (see `robustlab.train.adversarial.methods` for the methods).

    - ``method``: fgsm-mix, pgd, fgsm-rs, n-fgsm, trades, alp or tla;
    - ``eps``: the budget in ``norm`` (linf or l2), pixel units on [0, 1]; with ``eps_min``
      the upper end of the range eps is drawn from, uniformly, once per batch or per sample
      (``sampling``);
    - ``steps``: attack steps (default: the method's; single-step methods take exactly 1);
    - ``step_size``: per-step size as a fraction of each sample's eps (default: the method's);
    - ``warmup_epochs``: W > 0 ramps eps linearly over the first W epochs (epoch e, counted
      from 1, trains at min(1, e / W) times its eps);
    - ``guard``: size of the fixed held-out batch the catastrophic-overfitting guard attacks
      every epoch with FGSM and PGD-10 at ``eps`` (0 switches the guard off);
    - ``args``: the method's own knobs (e.g. ``beta`` for trades), checked by the method.
    """

    method: str
    eps: float = 0.1
    eps_min: float | None = None
    sampling: str = "batch"
    norm: Norm = Norm.LINF
    steps: int | None = None
    step_size: float | None = None
    warmup_epochs: int = 0
    guard: int = 256
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from robustlab.train.adversarial.methods import get_method  # the methods validate their args

        method = get_method(self.method)
        self.method = method.name
        if not _number(self.eps) or self.eps < 0:
            raise ConfigError(f"adv: eps must be a number >= 0, got {self.eps!r}")
        if self.eps_min is not None and not (_number(self.eps_min) and 0 <= self.eps_min <= self.eps):
            raise ConfigError(f"adv: eps_min must be a number in [0, eps={self.eps}], got {self.eps_min!r}")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"adv: sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")
        self.norm = check_norm(self.norm, (Norm.LINF, Norm.L2))
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 1):
            raise ConfigError(f"adv: steps must be an integer >= 1, got {self.steps!r}")
        if self.step_size is not None and not (_number(self.step_size) and self.step_size > 0):
            raise ConfigError(f"adv: step_size (a fraction of eps) must be > 0, got {self.step_size!r}")
        if not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ConfigError(f"adv: warmup_epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        if not isinstance(self.guard, int) or self.guard < 0:
            raise ConfigError(f"adv: guard (a batch size) must be an integer >= 0, got {self.guard!r}")
        self.args = dict(self.args or {})
        method.check(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AdvConfig:
        """From a plain mapping (experiment YAML, checkpoint config); unknown keys raise ConfigError."""
        if not isinstance(doc, dict) or "method" not in doc:
            raise ConfigError("adv: expected a mapping with a 'method'")
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"adv: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**doc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """A short human-readable name of the recipe, e.g. ``pgd-10 linf eps=0.1``."""
        from robustlab.train.adversarial.methods import get_method

        method = get_method(self.method)
        steps = method.steps(self)
        name = f"{self.method}-{steps}" if method.multi_step else self.method
        eps = f"{self.eps_min:g}-{self.eps:g}/{self.sampling}" if self.eps_min is not None else f"{self.eps:g}"
        extra = "".join(f" {k}={v}" for k, v in sorted(self.args.items()))
        warm = f" warmup={self.warmup_epochs}" if self.warmup_epochs else ""
        return f"{name} {self.norm} eps={eps}{extra}{warm}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def recipe_label(train: dict[str, Any] | None) -> str:
    """The training recipe named in reports: ``standard``, or the AdvConfig's label, from a
    TrainConfig's `to_dict()` (as stored in checkpoints)."""
    adv = (train or {}).get("adv")
    if not adv:
        return "standard"
    try:
        return AdvConfig.from_dict(dict(adv)).label()
    except ConfigError:
        return f"{adv.get('method', '?')} (unreadable recipe)"
