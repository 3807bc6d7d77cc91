"""Mining semantics: semi-hard triplets, MCT's hardest negatives and positives, P x K batches."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustlab.losses import TripletLoss, hardest_negative_per_class
from robustlab.train.metric.mct import random_positive
from robustlab.train.metric.sampler import pk_batches


def test_semihard_negatives_are_farther_than_positive_and_inside_margin():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(24, 3, generator=g)
    y = torch.arange(24) % 4
    margin = 0.3
    loss = TripletLoss(margin=margin, mining="semihard")
    a, p, n = loss.mine(f, y)
    assert len(a) > 0
    d = torch.cdist(F.normalize(f, dim=1), F.normalize(f, dim=1))
    assert bool((y[a] == y[p]).all() and (y[a] != y[n]).all() and (a != p).all())
    assert bool((d[a, n] > d[a, p]).all()), "a semi-hard negative is farther than the positive"
    assert bool((d[a, n] <= d[a, p] + margin + 1e-6).all()), "and inside the margin"
    # completeness: every triplet strictly inside the band is mined
    mined = set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    for i in range(24):
        for j in range(24):
            for k in range(24):
                if i != j and y[i] == y[j] and y[k] != y[i] and d[i, j] < d[i, k] < d[i, j] + margin - 1e-6:
                    assert (i, j, k) in mined


def test_hard_mining_picks_farthest_positive_and_nearest_negative():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(16, 4, generator=g)
    y = torch.arange(16) % 4
    a, p, n = TripletLoss(mining="hard").mine(f, y)
    d = torch.cdist(F.normalize(f, dim=1), F.normalize(f, dim=1))
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        same = (y == y[ai]) & (torch.arange(16) != ai)
        assert torch.isclose(d[ai, pi], d[ai][same].max())
        assert torch.isclose(d[ai, ni], d[ai][y != y[ai]].min())


def test_hardest_negative_per_class_is_the_most_similar_member():
    g = torch.Generator().manual_seed(2)
    anchors, pool = torch.randn(5, 4, generator=g), torch.randn(12, 4, generator=g)
    ya, yp = torch.tensor([0, 1, 2, 0, 1]), torch.arange(12) % 3
    hardest, valid = hardest_negative_per_class(anchors, ya, pool, yp, 4)
    cos = F.normalize(anchors, dim=1) @ F.normalize(pool, dim=1).T
    for i in range(5):
        for c in range(3):
            assert torch.isclose(hardest[i, c], cos[i][yp == c].max())
        assert not valid[i, ya[i]] and not valid[i, 3]  # own class, and a class absent from the pool
        assert int(valid[i].sum()) == 2


def test_random_positive_is_another_member_of_the_class():
    torch.manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    p = random_positive(y)
    assert bool((y[p] == y).all())
    assert bool((p[:5] != torch.arange(5)).all())
    assert p[5] == 5  # alone in its class: its own index


def test_pk_batches_hold_p_classes_of_k_images():
    labels = torch.arange(100) % 10
    batches = pk_batches(labels, 20, 4, torch.Generator().manual_seed(0))
    assert len(batches) == 5
    for b in batches:
        counts = torch.bincount(labels[b], minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [4] * 5
        assert len(set(b.tolist())) == 20
