"""Minimum-norm attacks in the evaluation runner: stored once (eps None) with their
distances, and the robust accuracy they imply at each eps derived from those distances."""

from __future__ import annotations

import pytest
import torch

from robustlab.attacks import DeepFool, make_attack
from robustlab.evaluate import AttackSpec, distance_curves, evaluate_grid
from robustlab.store.results import ResultStore


def test_distance_curves_match_a_direct_count(attack_mlp, tmp_path):
    model, x, y = attack_mlp
    x, y = x[:60], y[:60]
    grid = [0.0, 0.3, 0.6, 1.0]
    with ResultStore(tmp_path) as store:
        evaluate_grid(model, "m", x, y, [AttackSpec("deepfool", {"steps": 20}), AttackSpec("fgsm")], grid, store)
        curves = distance_curves(store)
    assert [c["eps"] for c in curves] == grid and all(c["norm"] == "l2" for c in curves)
    r = DeepFool(steps=20)(model, x, y)
    correct = model.predict(x) == y
    for c in curves:
        expected = float((correct & ~(r.success & (r.distance <= c["eps"] + 1e-9))).float().mean())
        assert abs(c["robust_accuracy"] - expected) < 1e-6
    assert abs(curves[0]["robust_accuracy"] - float(correct.float().mean())) < 1e-6  # eps 0: nothing moves
    assert curves[-1]["robust_accuracy"] <= curves[0]["robust_accuracy"]


def test_linf_minimum_norm_attack_uses_its_own_norm(attack_mlp, tmp_path):
    model, x, y = attack_mlp
    with ResultStore(tmp_path) as store:
        evaluate_grid(model, "m", x[:30], y[:30], [AttackSpec("deepfool", {"norm": "linf"})], [0.1], store)
        curves = distance_curves(store, eps_grid=[0.05, 0.1])
    assert {c["norm"] for c in curves} == {"linf"} and make_attack("deepfool", norm="linf").norm == "linf"
    r = DeepFool(norm="linf")(model, x[:30], y[:30])  # the reference: a direct count on Linf distances
    correct = model.predict(x[:30]) == y[:30]
    linf = (r.x_adv - x[:30]).flatten(1).abs().amax(1)
    assert torch.allclose(r.distance, linf)
    for c in curves:
        expected = float((correct & ~(r.success & (linf <= c["eps"] + 1e-9))).float().mean())
        assert c["robust_accuracy"] == pytest.approx(expected, abs=1e-6)
    l2_reading = float((correct & ~(r.success & ((r.x_adv - x[:30]).flatten(1).norm(dim=1) <= 0.05))).float().mean())
    assert curves[0]["robust_accuracy"] != pytest.approx(l2_reading)  # an L2 reading would differ
