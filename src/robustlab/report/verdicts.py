"""Computed verdicts of published claims: *held*, *did not hold* or *inconclusive*, from the
intervals, never written by hand.

Two claim forms (see `robustlab.experiment.spec.Claim`):

- **value** (a published number p with a tolerance t): the claim *held* when the measured
  rate's 95% interval lies inside [p - t, p + t], *did not hold* when it lies wholly outside
  it, and is *inconclusive* when it straddles an edge of the band (too few samples to say);
- **comparison** ("A more robust than B", `than:`): on the same samples, the difference
  A - B (sign flipped for ``direction: lower``), its Newcombe 95% interval and the exact
  McNemar p-value: *held* when the difference is significant (p < 0.05) in the claimed
  direction and the interval lies above the claimed ``margin``; *did not hold* when it is
  significant in the other direction or the interval lies below the margin; *inconclusive*
  otherwise.

A claim measured at another eps or on another data set than the paper states it at is
*inconclusive* ("not measured at the claim's setting"), whatever the numbers. With several
training seeds each seed is judged alone; the claim *held* (or *did not hold*) only when
every seed agrees, else it is inconclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from robustlab.core.threat import format_eps

HELD, FAILED, INCONCLUSIVE = "held", "did not hold", "inconclusive"


def value_verdict(low: float | None, high: float | None, published: float, tolerance: float) -> str:
    """Verdict of a value claim from the measured rate's interval [low, high] (fractions)."""
    if low is None or high is None:
        return INCONCLUSIVE
    band_low, band_high = published - tolerance, published + tolerance
    if band_low - 1e-12 <= low and high <= band_high + 1e-12:
        return HELD
    if high < band_low or low > band_high:
        return FAILED
    return INCONCLUSIVE


ALPHA = 0.05
"""Significance level of the McNemar test in comparison verdicts."""


def comparison_verdict(difference: float, ci_low: float, ci_high: float, p_value: float, margin: float = 0.0) -> str:
    """Verdict of "A beats B by at least `margin`" from the difference A - B, its interval and
    the McNemar p-value (difference and interval already signed so that the claimed direction
    is positive)."""
    significant = p_value < ALPHA
    if significant and difference > 0 and ci_low > margin:
        return HELD
    if (significant and difference < 0) or ci_high < margin:
        return FAILED
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """One verdict over seeds: held / did not hold when every seed says so, else inconclusive."""
    if verdicts and all(v == HELD for v in verdicts):
        return HELD
    if verdicts and all(v == FAILED for v in verdicts):
        return FAILED
    return INCONCLUSIVE


def setting_mismatch(claim: dict[str, Any], data_name: str | None) -> list[str]:
    """Why the measured cell is not the claim's own setting (its eps, its data set); [] when it is."""
    out = []
    paper_eps = claim.get("paper_eps")
    if paper_eps is not None and claim.get("eps") is not None and abs(paper_eps - claim["eps"]) > 1e-12:
        out.append(f"measured at eps {format_eps(claim['eps'])}; the paper states it at eps {format_eps(paper_eps)}")
    paper_data = claim.get("paper_data")
    if paper_data and data_name and paper_data.lower() != data_name.lower():
        out.append(f"measured on {data_name}; the paper states it on {paper_data}")
    return out


__all__ = ["FAILED", "HELD", "INCONCLUSIVE", "combine", "comparison_verdict", "setting_mismatch", "value_verdict"]
