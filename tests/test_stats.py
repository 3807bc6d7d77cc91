"""Intervals against exact binomial values, McNemar against a naive count over discordant pairs."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import binomtest

from robustlab.core.stats import clopper_pearson, mcnemar, paired_interval, rate, spread, wilson


def _binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_clopper_pearson_closed_forms_at_the_edges():
    # k = 0: upper bound solves (1 - p)^n = alpha / 2; k = n: lower bound solves p^n = alpha / 2
    for n in (1, 10, 200):
        low, high = clopper_pearson(0, n)
        assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
        low, high = clopper_pearson(n, n)
        assert high == 1.0 and low == pytest.approx(0.025 ** (1 / n), rel=1e-9)
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_clopper_pearson_inverts_the_binomial_tails():
    # the exact interval's ends are where each one-sided binomial tail equals alpha / 2
    for k, n in [(1, 10), (5, 10), (77, 200), (199, 200)]:
        low, high = clopper_pearson(k, n)
        assert 1 - _binom_cdf(k - 1, n, low) == pytest.approx(0.025, abs=1e-7)
        assert _binom_cdf(k, n, high) == pytest.approx(0.025, abs=1e-7)
    assert clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)  # textbook value


def test_intervals_match_scipy_binomtest():
    for k, n in [(0, 7), (3, 7), (7, 7), (38, 120), (177, 200)]:
        exact = binomtest(k, n).proportion_ci(0.95, method="exact")
        score = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert clopper_pearson(k, n) == pytest.approx((exact.low, exact.high), abs=1e-9)
        assert wilson(k, n) == pytest.approx((score.low, score.high), abs=1e-9)


def test_rate_and_bad_counts():
    r = rate(77, 200)
    assert r["value"] == 0.385 and r["n"] == 200 and r["ci_low"] < 0.385 < r["ci_high"]
    with pytest.raises(ValueError):
        rate(5, 4)


def _naive_mcnemar(a, b):
    only_a = only_b = 0
    for x, y in zip(a, b, strict=True):
        if x != y:
            if x:
                only_a += 1
            else:
                only_b += 1
    m = only_a + only_b
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2**m
    return only_a, only_b, min(1.0, 2 * tail)


@pytest.mark.parametrize("seed", range(5))
def test_mcnemar_against_a_naive_count(seed):
    rng = random.Random(seed)
    n = rng.randint(20, 300)
    a = [rng.random() < 0.6 for _ in range(n)]
    b = [x if rng.random() < 0.8 else rng.random() < 0.3 for x in a]
    out = mcnemar(a, b)
    only_a, only_b, p = _naive_mcnemar(a, b)
    assert (out["b"], out["c"]) == (only_a, only_b)
    assert out["p_value"] == pytest.approx(p, rel=1e-9)
    assert out["difference"] == pytest.approx(sum(a) / n - sum(b) / n)
    assert out["ci_low"] <= out["difference"] <= out["ci_high"]
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    assert (out["ci_low"], out["ci_high"]) == paired_interval(both, only_a, only_b, n - both - only_a - only_b)


@pytest.mark.parametrize(("pa", "pb", "pc", "n"), [(0.3, 0.1, 0.05, 100), (0.1, 0.02, 0.02, 200), (0.2, 0.3, 0.3, 60)])
def test_paired_interval_covers_the_true_difference(pa, pb, pc, n):
    # Newcombe's interval is approximate: its coverage over repeated paired samples is near 95%
    rng = random.Random(1)
    hits, draws = 0, 1500
    for _ in range(draws):
        counts = [0, 0, 0, 0]
        for _ in range(n):
            r = rng.random()
            counts[0 if r < pa else 1 if r < pa + pb else 2 if r < pa + pb + pc else 3] += 1
        low, high = paired_interval(*counts)
        hits += low <= pb - pc <= high
    assert 0.93 <= hits / draws <= 0.99


def test_paired_interval_without_correlation_is_the_square_and_add_of_wilson_intervals():
    # c = d = 0 makes a margin of the 2x2 table zero (phi = 0): Wilson's square-and-add
    a, b, c, d = 5, 12, 0, 0
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    expected = (p1 - p2 - math.hypot(p1 - l1, u2 - p2), p1 - p2 + math.hypot(u1 - p1, p2 - l2))
    assert paired_interval(a, b, c, d) == pytest.approx(expected)


def test_mcnemar_without_discordant_pairs():
    out = mcnemar([True, False, True], [True, False, True])
    assert out["p_value"] == 1.0 and out["difference"] == 0.0 and out["ci_low"] < 0 < out["ci_high"]


def test_spread_over_seeds():
    s = spread([0.3, 0.5, None, 0.4])
    assert s == pytest.approx({"mean": 0.4, "sd": 0.1, "min": 0.3, "max": 0.5, "seeds": 3})
    assert spread([None]) is None
