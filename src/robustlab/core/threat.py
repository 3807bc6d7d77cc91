"""The threat model: which norm bounds a perturbation, how big it may be, and what kind of
attack is looking for it.

- `Norm`: the perturbation norm (a `str` enum, so ``Norm.LINF == "linf"``);
- `Budget`: a fixed budget ``eps`` (pixel units on the [0, 1] scale) in a norm, or
  ``eps=None`` for a minimum-norm attack that reports the distance it needed;
- `AttackKind`: single-step, iterative, black-box, transfer or ensemble. Gradient-masking
  rules compare attacks by kind (declared by each attack), never by their names;
- `parse_eps` / `format_eps`: budgets as the field writes them ("8/255", 0.1), the one parser
  behind the CLI's ``--eps`` / ``--adv-eps`` and experiment files' ``eps:``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from robustlab.core.errors import ConfigError


class Norm(str, Enum):
    """A perturbation norm. Compares equal to its value (``Norm.L2 == "l2"``)."""

    LINF = "linf"
    L2 = "l2"
    L1 = "l1"
    L0 = "l0"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def label(self) -> str:
        """As the field writes it in prose: "Linf", "L2", "L1", "L0"."""
        return "Linf" if self is Norm.LINF else self.value.upper()

    @classmethod
    def parse(cls, value: object, allowed: tuple[Norm | str, ...] | None = None) -> Norm:
        """`value` ("linf", "Linf", "inf", "l2", "2", a `Norm`, ...) as a `Norm`; `ConfigError`
        naming the allowed norms otherwise."""
        choices = tuple(cls(a) for a in allowed) if allowed is not None else tuple(cls)
        if not isinstance(value, bool) and isinstance(value, (str, int, Norm)):
            key = str(value.value if isinstance(value, Norm) else value).lower().replace("_", "").strip()
            key = {"inf": "linf", "2": "l2", "1": "l1", "0": "l0"}.get(key, key)
            for norm in choices:
                if norm.value == key:
                    return norm
        raise ConfigError(f"unknown norm {value!r}; choose one of {', '.join(c.value for c in choices)}")


class AttackKind(str, Enum):
    """What kind of search an attack makes (used by the gradient-masking rules)."""

    SINGLE_STEP = "single-step"
    ITERATIVE = "iterative"
    BLACK_BOX = "black-box"
    TRANSFER = "transfer"
    ENSEMBLE = "ensemble"

    def __str__(self) -> str:
        return self.value

    @property
    def white_box(self) -> bool:
        """True for attacks that follow the attacked model's own gradients."""
        return self in (AttackKind.SINGLE_STEP, AttackKind.ITERATIVE)

    @property
    def black_box(self) -> bool:
        """True for attacks that never read the attacked model's gradients (queries, or a
        surrogate's gradients): their beating white-box attacks is a sign of gradient masking."""
        return self in (AttackKind.BLACK_BOX, AttackKind.TRANSFER)

    @property
    def optimizes(self) -> bool:
        """True for attacks that run an optimisation that could stop short (iterative, or an
        ensemble of attacks): an indicator of incomplete optimisation applies to them."""
        return self in (AttackKind.ITERATIVE, AttackKind.ENSEMBLE)


def check_eps(eps: object, name: str = "eps") -> float:
    """`eps` as a finite float >= 0 (bools, NaN, infinity and negatives raise `ConfigError`)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ConfigError(f"{name} must be a number >= 0, got {eps!r}")
    value = float(eps)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {eps!r}")
    return value


def parse_eps(value: object, name: str = "eps") -> float:
    """A budget as users write it: a number (0.1), or a string holding a number ("0.1", "1e-3")
    or a fraction "k/d" ("8/255", " 8 / 255 "), as a finite float >= 0 (see `check_eps`).
    A zero or negative denominator, non-numeric parts, NaN and infinity raise `ConfigError`."""
    if not isinstance(value, str):
        return check_eps(value, name)
    text = value.strip()
    num, slash, den = text.partition("/")
    try:
        parts = [float(num), float(den)] if slash else [float(text)]
    except ValueError:
        raise ConfigError(f"{name} must be a number or a fraction such as 8/255, got {value!r}") from None
    if not all(math.isfinite(p) for p in parts):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if slash and parts[1] <= 0:
        raise ConfigError(f"{name}: the denominator of {value!r} must be > 0")
    return check_eps(parts[0] / parts[1] if slash else parts[0], name)


def format_eps(eps: float | None) -> str:
    """A budget as the field writes it: "8/255" where eps is k/255 and has no short decimal
    form (0.2 stays "0.2", 0.5 "0.5"), else the shortest decimal ("0.1"); "min-norm" for None."""
    if eps is None:
        return "min-norm"
    if round(eps, 3) != eps:
        k = round(eps * 255)
        if k > 0 and math.isclose(eps, k / 255, rel_tol=1e-9, abs_tol=0.0):
            return f"{k}/255"
    return f"{eps:g}"


@dataclass(frozen=True)
class Budget:
    """A threat model's budget: ``eps`` in ``norm`` (fixed budget), or ``eps=None``: the attack
    minimises the norm and reports the distance it needed (minimum-norm)."""

    norm: Norm
    eps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", Norm.parse(self.norm))
        if self.eps is not None:
            object.__setattr__(self, "eps", check_eps(self.eps))

    @property
    def minimum_norm(self) -> bool:
        return self.eps is None

    def label(self) -> str:
        """"linf eps=0.1" or "l2 min-norm"."""
        return f"{self.norm} min-norm" if self.eps is None else f"{self.norm} eps={format_eps(self.eps)}"
