"""Uncertainty of the rates robustlab reports, and paired comparisons of two models.

- Every rate (robust / clean accuracy, detection rate, FMR, FNMR) is a count `k` of `n`
  independent samples; its interval is the **exact Clopper-Pearson** 95% interval (`rate`),
  the one robustlab shows everywhere. `wilson` is there for comparison (it is narrower and
  may undercover at k = 0 or k = n).
- Two models judged on the same samples are compared by the **exact McNemar test**: an exact
  binomial test of the discordant pairs (one model right, the other wrong) against 1/2
  (`mcnemar`). The difference in accuracy, (b - c) / n, gets the **exact conditional interval**:
  the Clopper-Pearson interval of b / (b + c) mapped onto the difference, conditional on the
  number of discordant pairs. It excludes 0 exactly when the two-sided test has p < 0.05.
- Several training seeds: `spread` gives their mean, standard deviation and range.

All rates and differences are fractions (in [0, 1] and [-1, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy.stats import beta, binomtest, norm

LEVEL = 0.95
"""Confidence level of every interval robustlab reports."""
INTERVAL = "Clopper-Pearson"
"""The interval shown beside each rate (exact binomial)."""


def _check(k: int, n: int) -> None:
    if not (isinstance(k, int) and isinstance(n, int)) or n < 0 or not 0 <= k <= n:
        raise ValueError(f"need integers 0 <= k <= n, got k={k!r}, n={n!r}")


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n; (0, 1) when n = 0."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of k / n; (0, 1) when n = 0."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> dict[str, Any]:
    """A rate with its count, sample count and Clopper-Pearson 95% interval:
    {"value", "k", "n", "ci_low", "ci_high"} (value None when n = 0)."""
    low, high = clopper_pearson(k, n)
    return {"value": k / n if n else None, "k": k, "n": n, "ci_low": low, "ci_high": high}


def rate_of(value: float | None, n: int) -> dict[str, Any] | None:
    """`rate` from a stored fraction and its sample count (k = round(value * n)); None when
    either is missing."""
    if value is None or not n:
        return None
    return rate(int(round(value * n)), int(n))


def mcnemar(first: Sequence[bool], second: Sequence[bool], level: float = LEVEL) -> dict[str, Any]:
    """Paired comparison of two models on the same samples (`first[i]`, `second[i]`: whether
    each model is right on sample i). Returns n, the accuracies, ``b`` (first right, second
    wrong), ``c`` (the reverse), ``difference`` = (b - c) / n = accuracy(first) -
    accuracy(second), its exact conditional interval ``ci_low`` / ``ci_high``, and the exact
    two-sided McNemar ``p_value`` (1.0 when no pair is discordant)."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need equal lengths, got {len(first)} and {len(second)}")
    n = len(first)
    b = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
    c = sum(1 for x, y in zip(first, second, strict=True) if y and not x)
    m = b + c
    p_value = float(binomtest(b, m, 0.5).pvalue) if m else 1.0
    low, high = clopper_pearson(b, m, level)
    scale = m / n if n else 0.0
    return {
        "n": n,
        "accuracy_first": sum(map(bool, first)) / n if n else None,
        "accuracy_second": sum(map(bool, second)) / n if n else None,
        "b": b,
        "c": c,
        "difference": (b - c) / n if n else 0.0,
        "ci_low": scale * (2 * low - 1) if m else 0.0,
        "ci_high": scale * (2 * high - 1) if m else 0.0,
        "p_value": p_value,
        "test": "exact McNemar (binomial test of discordant pairs)",
    }


def spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Mean, sample standard deviation (0 for one value), min, max and count of the values that
    are not None (one per training seed); None when there are none."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "sd": sd, "min": min(vals), "max": max(vals), "seeds": len(vals)}


__all__ = ["INTERVAL", "LEVEL", "clopper_pearson", "mcnemar", "rate", "rate_of", "spread", "wilson"]
