"""Attacks against closed-form references: a linear model's minimal L2 distance, the APGD
checkpoint formula, exact query counts, pixels on the box boundary."""

from __future__ import annotations

import pytest
import torch

from attack_models import CountingModel, LinearModel
from robustlab.attacks import CarliniWagnerL2, DeepFool, HopSkipJump, Square
from robustlab.attacks.apgd import checkpoint_intervals


def linear_case(n: int = 24, seed: int = 0):
    """A 5-class linear model on 4x4 images, inputs in [0.3, 0.7] so the box never binds."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 16, generator=g)
    b = torch.zeros(5)
    model = LinearModel(w, b, (1, 4, 4)).eval()
    x = 0.3 + 0.4 * torch.rand(n, 1, 4, 4, generator=g)
    y = model.predict(x)
    near = model.min_l2(x, y) < 0.29  # no pixel can need to move past 0 or 1
    return model, x[near], y[near]


def test_deepfool_reaches_the_minimal_l2_distance():
    model, x, y = linear_case()
    d_min = model.min_l2(x, y)
    assert len(x) >= 16
    r = DeepFool(overshoot=0.001)(model, x, y)
    assert bool(r.success.all())
    ratio = r.distance / d_min
    assert bool((ratio >= 0.999).all()) and bool((ratio <= 1.01).all()), ratio


def test_cw_reaches_the_minimal_l2_distance():
    model, x, y = linear_case()
    d_min = model.min_l2(x, y)
    r = CarliniWagnerL2(steps=500, search_steps=10, lr=0.005)(model, x, y)  # fine steps: 1% precision
    assert bool(r.success.all())
    ratio = r.distance / d_min
    assert bool((ratio >= 0.999).all()) and bool((ratio <= 1.01).all()), ratio


def test_deepfool_overshoot_scales_the_total_perturbation_and_does_not_stall():
    """A point a hair inside its class: one step lands on the boundary, the overshoot of the
    total perturbation carries it over, in one iteration."""
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    model = LinearModel(w, torch.zeros(2), (1, 2, 2)).eval()
    x = torch.tensor([[0.5 + 1e-6, 0.5, 0.2, 0.2], [0.7, 0.3, 0.5, 0.5]]).view(2, 1, 2, 2)
    y = torch.tensor([0, 0])
    r = DeepFool(overshoot=0.02)(model, x, y)
    assert bool(r.success.all())
    assert bool((r.queries <= 4).all())  # clean check, one step, the final check
    d_min = model.min_l2(x, y)
    assert torch.allclose(r.distance[1], 1.02 * d_min[1], rtol=1e-3)


def test_cw_moves_pixels_that_are_exactly_zero_or_one():
    """The boundary lies along pixels that are exactly 0 (must rise) and 1 (must fall)."""
    w = torch.zeros(2, 16)
    w[1, :8] = 1.0  # class 1 likes bright first half (all 0 now)
    w[1, 8:] = -1.0  # and dark second half (all 1 now)
    model = LinearModel(w, torch.tensor([0.0, 4.0]), (1, 4, 4)).eval()
    x = torch.cat([torch.zeros(8), torch.ones(8)]).view(1, 1, 4, 4).repeat(3, 1, 1, 1)
    y = torch.zeros(3, dtype=torch.int64)
    r = CarliniWagnerL2(steps=200, search_steps=6)(model, x, y)
    assert bool(r.success.all())
    moved = (r.x_adv - x).abs().flatten(1) > 0.05
    assert bool(moved.all())  # every boundary pixel moved
    d_min = model.min_l2(x, y)  # = 1: the optimum moves every pixel by 0.25, inside the box
    assert bool((r.distance <= 1.02 * d_min).all())


def test_apgd_checkpoints_follow_the_paper():
    steps = 100
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    expected = [round(q * steps) for q in p[1:] if q * steps <= steps]
    got = torch.tensor(checkpoint_intervals(steps)).cumsum(0).tolist()
    assert got == expected


def test_hopskipjump_counts_every_query(attack_mlp):
    model, x, y = attack_mlp
    counted = CountingModel(model).eval()
    r = HopSkipJump(steps=3, init_evals=10, max_evals=30)(counted, x[:12], y[:12])
    assert int(r.queries.sum()) == counted.images


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_square_respects_its_query_budget(attack_mlp, norm, eps):
    model, x, y = attack_mlp
    counted = CountingModel(model).eval()
    r = Square(eps, norm=norm, queries=40)(counted, x[:30], y[:30])
    assert bool((r.queries <= 40 + 2).all())
    assert int(r.queries.sum()) <= counted.images
