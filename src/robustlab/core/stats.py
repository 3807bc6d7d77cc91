"""Uncertainty of the rates robustlab reports, and paired comparisons of two models.

- Every rate (robust / clean accuracy, detection rate, FMR, FNMR) is a count `k` of `n`
  independent samples; its interval is the **exact Clopper-Pearson** 95% interval (`rate`),
  the one robustlab shows everywhere. `wilson` is there for comparison (it is narrower and
  may undercover at k = 0 or k = n).
- Two models judged on the same samples are compared by the **exact McNemar test**: an exact
  binomial test of the discordant pairs (one model right, the other wrong) against 1/2
  (`mcnemar`). The difference in accuracy, (b - c) / n, gets **Newcombe's hybrid score
  interval for paired proportions** (Newcombe 1998, Stat. Med. 17:2635, method 10: the Wilson
  intervals of the two accuracies combined with their continuity-corrected correlation).
  Unlike the exact conditional interval, it does not take the number of discordant pairs as
  fixed, so it is never effectively one-sided.
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
    accuracy(second), its Newcombe interval ``ci_low`` / ``ci_high`` (`paired_interval`), and
    the exact two-sided McNemar ``p_value`` (1.0 when no pair is discordant)."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need equal lengths, got {len(first)} and {len(second)}")
    n = len(first)
    both = sum(1 for x, y in zip(first, second, strict=True) if x and y)
    b = sum(1 for x, y in zip(first, second, strict=True) if x and not y)
    c = sum(1 for x, y in zip(first, second, strict=True) if y and not x)
    m = b + c
    p_value = float(binomtest(b, m, 0.5).pvalue) if m else 1.0
    low, high = paired_interval(both, b, c, n - both - b - c, level)
    return {
        "n": n,
        "accuracy_first": sum(map(bool, first)) / n if n else None,
        "accuracy_second": sum(map(bool, second)) / n if n else None,
        "b": b,
        "c": c,
        "difference": (b - c) / n if n else 0.0,
        "ci_low": low,
        "ci_high": high,
        "p_value": p_value,
        "test": "exact McNemar (binomial test of discordant pairs); Newcombe hybrid score interval",
    }


def paired_interval(a: int, b: int, c: int, d: int, level: float = LEVEL) -> tuple[float, float]:
    """Newcombe's (1998, method 10) interval of p1 - p2 for paired binary outcomes: a = both
    right, b = first only, c = second only, d = both wrong; p1 = (a + b) / n, p2 = (a + c) / n.
    The Wilson intervals of p1 and p2 are combined with the correlation phi of the 2x2 table,
    continuity-corrected when positive ((ad - bc - n / 2)+); (0, 0) when n = 0."""
    n = a + b + c + d
    if n == 0:
        return 0.0, 0.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, level)
    l2, u2 = wilson(a + c, n, level)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0:
        phi = 0.0
    elif cross > 0:
        phi = max(cross - n / 2, 0.0) / math.sqrt(margins)
    else:
        phi = cross / math.sqrt(margins)
    diff = p1 - p2
    lower = diff - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    upper = diff + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return max(-1.0, lower), min(1.0, upper)


def spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Mean, sample standard deviation (0 for one value), min, max and count of the values that
    are not None (one per training seed); None when there are none."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "sd": sd, "min": min(vals), "max": max(vals), "seeds": len(vals)}


__all__ = ["INTERVAL", "LEVEL", "clopper_pearson", "mcnemar", "paired_interval", "rate", "rate_of", "spread",
           "wilson"]
