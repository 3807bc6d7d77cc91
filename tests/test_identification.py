"""Verification pairs, EER threshold and FMR / FNMR (paper 002 eq. 3.1-3.3) against references."""

from __future__ import annotations

import itertools

import pytest
import torch
from sklearn.metrics import confusion_matrix

from robustlab.core.errors import InputError
from robustlab.evaluate.identification import (
    eer_threshold,
    pair_similarity,
    split_validation,
    verification_pairs,
    verification_rates,
)


def test_pairs_are_every_same_class_pair_plus_as_many_random_different_ones():
    y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 2])
    i, j, same = verification_pairs(y, seed=3)
    expected = {(a, b) for a, b in itertools.combinations(range(len(y)), 2) if y[a] == y[b]}
    got = {(min(a, b), max(a, b)) for a, b, s in zip(i.tolist(), j.tolist(), same.tolist(), strict=True) if s}
    assert got == expected and int(same.sum()) == len(expected)
    assert int((~same).sum()) == len(expected)
    assert bool((y[i[~same]] != y[j[~same]]).all())
    i2, j2, _ = verification_pairs(y, seed=3)
    assert torch.equal(i, i2) and torch.equal(j, j2)  # seeded
    with pytest.raises(InputError):
        verification_pairs(torch.tensor([0, 1, 2]))


def test_rates_match_a_confusion_matrix_and_eq_3_1_to_3_3():
    g = torch.Generator().manual_seed(0)
    sim = torch.rand(400, generator=g)
    same = torch.rand(400, generator=g) < 0.4
    thr = 0.55
    r = verification_rates(sim, same, thr)
    tn, fp, fn, tp = confusion_matrix(same.numpy(), (sim >= thr).numpy()).ravel()
    assert r["fmr"] == pytest.approx(fp / (fp + tn))
    assert r["fnmr"] == pytest.approx(fn / (fn + tp))
    assert r["pair_accuracy"] == pytest.approx((tp + tn) / 400)


def test_eer_threshold_balances_fmr_and_fnmr():
    g = torch.Generator().manual_seed(1)
    same = torch.arange(2000) < 1000
    noise = 0.2 * torch.randn(2000, generator=g)
    sim = torch.where(same, 0.6 + noise, 0.2 + noise)
    thr, eer = eer_threshold(sim, same)
    r = verification_rates(sim, same, thr)
    assert abs(r["fmr"] - r["fnmr"]) < 0.01
    assert eer == pytest.approx((r["fmr"] + r["fnmr"]) / 2, abs=0.01)
    assert 0.3 < thr < 0.5  # the two Gaussians cross at 0.4
    separable = torch.where(same, torch.tensor(0.9), torch.tensor(0.1))
    t, e = eer_threshold(separable, same)
    assert e == 0.0 and verification_rates(separable, same, t)["pair_accuracy"] == 1.0


def test_pair_similarity_is_cosine_and_split_is_stratified():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    s = pair_similarity(e, torch.tensor([0, 0, 2]), torch.tensor([1, 2, 2]))
    assert torch.allclose(s, torch.tensor([0.0, 2**-0.5, 1.0]), atol=1e-6)
    y = torch.arange(40) % 4
    _, yv, _, yt = split_validation(torch.zeros(40, 1, 2, 2), y, seed=0)
    assert torch.bincount(yv).tolist() == [5] * 4 and torch.bincount(yt).tolist() == [5] * 4
