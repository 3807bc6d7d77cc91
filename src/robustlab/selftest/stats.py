"""The interval the self-tests report with their rates (a local copy until a shared stats module lands)."""

from __future__ import annotations

from scipy.stats import beta


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided `level` interval of a binomial rate; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high
