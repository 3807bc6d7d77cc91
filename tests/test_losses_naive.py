"""Every loss against a naive per-sample Python loop in float64 on random inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from pytorch_metric_learning import losses

from robustlab.losses import (
    ArcFaceLoss,
    TripletLoss,
    contrastive_loss,
    multiclass_triplet_loss,
    prototype_conformity,
    ring_loss,
)


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _batch(n=12, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.arange(n) % c
    return f, y[torch.randperm(n, generator=g)]


def _norm(v):
    return math.sqrt(sum(float(t) ** 2 for t in v))


def _dist(a, b):
    return _norm([x - y for x, y in zip(a, b, strict=True)])


def _unit(v):
    n = _norm(v)
    return [float(t) / n for t in v]


def test_ring_loss_matches_loop():
    f, _ = _batch()
    r, lam = 1.7, 0.3
    naive = lam / (2 * len(f)) * sum((_norm(row) - r) ** 2 for row in f)
    assert ring_loss(f, torch.tensor(r), lam).item() == pytest.approx(naive, rel=1e-12)


@pytest.mark.parametrize("separation", [1.0, 0.25])
def test_prototype_conformity_matches_loop(separation):
    f, y = _batch(c=4)
    w = torch.randn(4, f.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = len(w)
    total = 0.0
    for fi, yi in zip(f, y.tolist(), strict=True):
        term = _dist(fi, w[yi])
        others = sum(_dist(fi, w[j]) + _dist(w[yi], w[j]) for j in range(k) if j != yi)
        total += term - separation * others / (k - 1)
    assert prototype_conformity(f, y, w, separation).item() == pytest.approx(total / len(f), rel=1e-12)


@pytest.mark.parametrize("normalize", [True, False])
def test_contrastive_matches_loop(normalize):
    f, y = _batch(n=10)
    m = 1.2 if normalize else 3.0
    e = [_unit(r) if normalize else [float(t) for t in r] for r in f]
    pos, neg = [], []
    for i, j in itertools.combinations(range(len(e)), 2):
        d = _dist(e[i], e[j])
        if y[i] == y[j]:
            pos.append(d**2)
        elif d < m:
            neg.append(m - d)
    naive = sum(pos) / len(pos) + (sum(neg) / len(neg) if neg else 0.0)
    assert contrastive_loss(f, y, m, normalize).item() == pytest.approx(naive, rel=1e-10)


def test_multiclass_triplet_matches_loop():
    g = torch.Generator().manual_seed(3)
    n, d, c = 9, 6, 4
    anchors = torch.randn(n, d, generator=g)
    positives = torch.randn(n, d, generator=g)
    pool = torch.randn(14, d, generator=g)
    ya = torch.randint(c, (n,), generator=g)
    yp = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2, 2])  # class 3 absent from the pool
    margin = 0.1

    def cos(a, b):
        return sum(x * y for x, y in zip(_unit(a), _unit(b), strict=True))

    total = 0.0
    for i in range(n):
        s = 0.0
        for cls in range(c):
            members = [pool[j] for j in range(len(pool)) if yp[j] == cls]
            if cls == ya[i] or not members:
                continue
            hardest = max(cos(anchors[i], m) for m in members)
            s += math.exp(hardest - cos(anchors[i], positives[i]) + margin)
        total += math.log1p(s)
    got = multiclass_triplet_loss(anchors, positives, ya, pool, yp, c, margin)
    assert got.item() == pytest.approx(total / n, rel=1e-10)


def _triplet_reference(f, y, margin, mining):
    e = [_unit(r) for r in f]
    n = len(e)
    d = [[_dist(e[i], e[j]) for j in range(n)] for i in range(n)]
    losses = []
    if mining == "hard":
        for a in range(n):
            ps = [d[a][p] for p in range(n) if p != a and y[p] == y[a]]
            ns = [d[a][q] for q in range(n) if y[q] != y[a]]
            if ps and ns:
                losses.append(max(0.0, max(ps) - min(ns) + margin))
    else:
        for a, p, q in itertools.product(range(n), repeat=3):
            if p == a or y[p] != y[a] or y[q] == y[a]:
                continue
            semihard = d[a][p] < d[a][q] < d[a][p] + margin
            if mining == "all" or semihard:
                losses.append(max(0.0, d[a][p] - d[a][q] + margin))
    nonzero = [v for v in losses if v > 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


@pytest.mark.parametrize("mining", ["semihard", "hard", "all"])
def test_pml_triplet_matches_facenet_definition(mining):
    f, y = _batch(n=12, d=4, c=3, seed=5)
    margin = 0.4
    got = TripletLoss(margin=margin, mining=mining)(f, y)
    assert got.item() == pytest.approx(_triplet_reference(f, y, margin, mining), rel=1e-9)


def _arcface_reference(f, w, y, s, m):
    total = 0.0
    for fi, yi in zip(f, y.tolist(), strict=True):
        units = [_unit(w[:, j]) for j in range(w.shape[1])]
        cosines = [sum(a * b for a, b in zip(_unit(fi), u, strict=True)) for u in units]
        theta = math.acos(max(-1.0, min(1.0, cosines[yi])))
        target = math.exp(s * math.cos(theta + m))
        rest = sum(math.exp(s * cosines[j]) for j in range(len(cosines)) if j != yi)
        total += -math.log(target / (target + rest))
    return total / len(f)


def test_arcface_matches_eq_2_8_and_pml():
    f, y = _batch(n=10, d=8, c=4, seed=2)
    w = torch.nn.Parameter(torch.randn(8, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    s, m = 10.0, 0.3
    got = ArcFaceLoss(w, scale=s, margin=m)(f, y)
    assert got.item() == pytest.approx(_arcface_reference(f, w.detach(), y, s, m), rel=1e-9)
    pml = losses.ArcFaceLoss(num_classes=4, embedding_size=8, margin=math.degrees(m), scale=s)
    pml.W = torch.nn.Parameter(w.detach().clone())
    assert got.item() == pytest.approx(pml(f, y).item(), rel=1e-9)


def test_arcface_gradient_is_finite_when_a_feature_aligns_with_its_class():
    w = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    f = torch.tensor([[2.0, 0.0]], dtype=torch.float64, requires_grad=True)  # cos = 1 exactly
    ArcFaceLoss(w, scale=8.0, margin=0.5)(f, torch.tensor([0])).backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(w.grad).all()


def test_arcface_beyond_pi_minus_m_uses_the_monotonic_fix():
    """Where theta_y > pi - m, cos(theta) - m sin(m) replaces cos(theta + m) (as pml, insightface)."""
    w = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    f = torch.tensor([[-1.0, 0.05]], dtype=torch.float64)  # theta to class 0 is about pi
    y = torch.tensor([0])
    s, m = 2.0, 0.5
    got = ArcFaceLoss(w, scale=s, margin=m)(f, y).item()
    cos0 = float(f[0, 0] / f[0].norm())
    cos1 = float(f[0, 1] / f[0].norm())
    fixed = cos0 - m * math.sin(m)
    expected = -math.log(math.exp(s * fixed) / (math.exp(s * fixed) + math.exp(s * cos1)))
    assert got == pytest.approx(expected, rel=1e-9)
    assert got != pytest.approx(_arcface_reference(f, w.detach(), y, s, m), rel=1e-3)
