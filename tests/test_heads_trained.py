"""Trained heads on digits: the surrogate agrees with the real decision, and white-box PGD on the
surrogate is at least as strong, judged by `predict`, as PGD through a softmax probe fitted on
the same penultimate features (what an attacker would do without the surrogate)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from robustlab.attacks import PGD
from robustlab.evaluate import identification_metrics
from robustlab.models import Classifier, build_model
from robustlab.models.heads.softmax import SoftmaxHead
from robustlab.train import TrainConfig, train

HEADS = ["softmax", "arcface", "ring", "triplet", "contrastive", "mct", "mct_knn", "pcl"]


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1300], y[:1300], x[1300:], y[1300:]


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    models = {}
    for name in HEADS:
        head = "mct" if name == "mct_knn" else name
        head_args = {"decision": "knn"} if name == "mct_knn" else {}
        torch.manual_seed(0)
        model = build_model({"backbone": "lenet", "head": head, "num_classes": 10, "input_shape": [1, 8, 8],
                             "head_args": head_args})
        args = {"warmup_epochs": 3} if head == "pcl" else {}
        cfg = TrainConfig(epochs=8, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0,
                          objective_args=args)
        train(model, x, y, cfg)
        models[name] = model.eval()
    return models


@pytest.mark.parametrize("name", HEADS)
def test_trained_head_is_accurate_and_surrogate_agrees_with_predict(name, trained, digits):
    _, _, xt, yt = digits
    model = trained[name]
    with torch.no_grad():
        pred = model.predict(xt)
        agree = (model(xt).argmax(1) == pred).float().mean()
    # PCL decides by nearest prototype: its centres only train after the CE warm-up, and 5 PC
    # epochs on digits reach about 0.77 (measured); the other heads reach above 0.9.
    assert float((pred == yt).float().mean()) > (0.7 if name == "pcl" else 0.85)
    assert float(agree) >= 0.99


def _probe(model, x, y, steps=300):
    """A softmax layer fitted (cross-entropy) on the frozen penultimate features: a model whose
    logits share the backbone of `model`."""
    with torch.no_grad():
        feats = model.embed(x)
    head = SoftmaxHead(feats.shape[1], model.num_classes)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(feats), y).backward()
        opt.step()
    return Classifier(model.config, model.backbone, head).eval()


@pytest.mark.parametrize("name", ["triplet", "contrastive", "mct_knn", "pcl"])
def test_pgd_on_the_surrogate_is_at_least_as_strong_as_on_a_softmax_probe(name, trained, digits):
    x, y, xt, yt = digits
    model = trained[name]
    probe = _probe(model, x, y)
    xs, ys = xt[:120], yt[:120]
    for eps in (0.1,):
        attack = PGD(eps=eps, steps=10, seed=0)
        direct = attack(model, xs, ys)
        transferred = model.predict(attack(probe, xs, ys).x_adv)
        acc_direct = float((direct.prediction == ys).float().mean())
        acc_probe = float((transferred == ys).float().mean())
        assert acc_direct <= acc_probe + 0.01, (eps, acc_direct, acc_probe)


def test_identification_metrics_on_a_trained_model(trained, digits):
    _, _, xt, yt = digits
    model = trained["triplet"]
    adv = PGD(eps=0.1, steps=10, seed=0)(model, xt, yt).x_adv
    m = identification_metrics(model, xt, yt, x_adv=adv, seed=0)
    assert 0 <= m.fmr < 0.2 and 0 <= m.fnmr < 0.2
    assert m.pair_accuracy > 0.8
    assert m.accuracy == pytest.approx(float((model.predict(xt) == yt).float().mean()))
    with torch.no_grad():  # the reference: mean over samples of the largest softmax probability
        clean_ref = float(torch.softmax(model(xt)[:, :10], 1).amax(1).mean())
        adv_ref = float(torch.softmax(model(adv)[:, :10], 1).amax(1).mean())
    assert m.confidence_clean == pytest.approx(clean_ref, abs=1e-5)
    assert m.confidence_adv == pytest.approx(adv_ref, abs=1e-5)
    assert m.confidence_adv != pytest.approx(m.confidence_clean, abs=1e-3)  # the attack moved the scores
