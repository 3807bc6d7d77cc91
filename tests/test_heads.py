"""Heads: registry, hyper-parameter effects on toy problems, PCL centres, checkpoint round-trips."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from robustlab.core.errors import ConfigError, InputError
from robustlab.losses import ArcFaceLoss
from robustlab.models import HEADS, build_model
from robustlab.store import load_checkpoint, save_checkpoint
from robustlab.train import TrainConfig, train

ALL_HEADS = ["softmax", "arcface", "ring", "triplet", "contrastive", "mct", "pcl"]


def _clusters(n_per_class=30, c=3, shape=(1, 4, 4), seed=0, spread=0.08):
    """Separable toy images: class-specific mean patterns plus small noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(c, *shape, generator=g)
    y = torch.arange(c).repeat_interleave(n_per_class)
    x = (means[y] + spread * torch.randn(len(y), *shape, generator=g)).clamp(0, 1)
    return x, y


def test_every_head_is_registered_and_selectable_by_name():
    assert set(ALL_HEADS) <= set(HEADS.names())
    with pytest.raises(ConfigError):
        build_model({"backbone": "mlp", "head": "nope", "num_classes": 3, "input_shape": [1, 4, 4]})
    with pytest.raises(ConfigError):
        build_model({"backbone": "mlp", "head": "triplet", "num_classes": 3, "input_shape": [1, 4, 4],
                     "head_args": {"metric": "manhattan"}})


def _arcface_toy(scale, margin, steps=150):
    torch.manual_seed(0)
    c, n = 4, 80
    y = torch.arange(c).repeat(n // c)
    feats = torch.nn.Parameter(torch.randn(n, 3))
    w = torch.nn.Parameter(torch.randn(3, c))
    loss_fn = ArcFaceLoss(w, scale=scale, margin=margin)
    opt = torch.optim.Adam([feats, w], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(feats, y).backward()
        opt.step()
    with torch.no_grad():
        cos = F.normalize(feats, dim=1) @ F.normalize(w, dim=0)
        theta = torch.acos(cos.clamp(-1, 1))
        own = theta.gather(1, y[:, None]).squeeze(1)
        other = theta.masked_fill(F.one_hot(y, c).bool(), math.inf).amin(1)
        p_true = torch.softmax(scale * cos, 1).gather(1, y[:, None]).squeeze(1)
    return (other - own), p_true


def test_arcface_margin_widens_the_angular_gap():
    gap0, _ = _arcface_toy(scale=8.0, margin=0.0)
    gap5, _ = _arcface_toy(scale=8.0, margin=0.5)
    assert gap5.median() > gap0.median() + 0.15
    assert gap5.quantile(0.1) > 0.35  # nearly every sample keeps about m between its class and the rest


def test_arcface_scale_bounds_the_confidence():
    _, p1 = _arcface_toy(scale=1.0, margin=0.0)
    _, p16 = _arcface_toy(scale=16.0, margin=0.0)
    bound = math.e / (math.e + 3 * math.exp(-1.0))  # s = 1: cosines in [-1, 1], 4 classes
    assert float(p1.max()) <= bound + 1e-6
    assert float(p16.mean()) > 0.95


def _ring_model_norms(weight, radius, epochs=15):
    x, y = _clusters()
    torch.manual_seed(0)
    model = build_model({"backbone": "mlp", "head": "ring", "num_classes": 3, "input_shape": [1, 4, 4],
                         "backbone_args": {"hidden": [16]}})
    cfg = TrainConfig(epochs=epochs, batch_size=30, optimizer="adam", lr=0.01, weight_decay=0,
                      objective_args={"weight": weight, "radius": radius})
    train(model, x, y, cfg)
    with torch.no_grad():
        return model.embed(x).norm(dim=1)


def test_ring_lambda_pulls_feature_norms_to_r():
    free = _ring_model_norms(0.0, 2.0)
    ringed = _ring_model_norms(1.0, 2.0)
    assert abs(float(ringed.mean()) - 2.0) < 0.25
    assert abs(float(ringed.mean()) - 2.0) < abs(float(free.mean()) - 2.0)
    assert float(ringed.std() / ringed.mean()) < float(free.std() / free.mean())


def test_ring_learns_r_towards_the_feature_norms():
    x, y = _clusters()
    torch.manual_seed(0)
    model = build_model({"backbone": "mlp", "head": "ring", "num_classes": 3, "input_shape": [1, 4, 4],
                         "backbone_args": {"hidden": [16]}})
    from robustlab.train import make_objective

    objective = make_objective("ring", model, weight=0.5, radius_lr=0.5)
    train(model, x, y, TrainConfig(epochs=10, batch_size=30, optimizer="adam", lr=0.01, weight_decay=0),
          objective=objective)
    norms = model.embed(x).norm(dim=1).detach()
    assert objective.radius.requires_grad
    assert abs(float(objective.radius) - float(norms.mean())) < 0.2 * float(norms.mean())


def test_pcl_centres_move_only_after_warmup_and_separate():
    x, y = _clusters(n_per_class=40)
    torch.manual_seed(0)
    model = build_model({"backbone": "mlp", "head": "pcl", "num_classes": 3, "input_shape": [1, 4, 4],
                         "backbone_args": {"hidden": [32, 8]},
                         "head_args": {"branches": {"fc1": 4}, "decision": "prototype"}})
    start = [c.detach().clone() for c in model.head.all_centres()]
    warm = TrainConfig(epochs=5, batch_size=40, optimizer="adam", lr=0.01, weight_decay=0,
                       objective_args={"warmup_epochs": 5, "centre_lr": 0.05})
    train(model, x, y, warm)
    assert all(torch.equal(a, b) for a, b in zip(start, model.head.all_centres(), strict=True))
    full = TrainConfig(epochs=6, batch_size=40, optimizer="adam", lr=0.01, weight_decay=0,
                       objective_args={"warmup_epochs": 0, "centre_lr": 0.05, "separation": 1.0})
    train(model, x, y, full)
    for before, after in zip(start, model.head.all_centres(), strict=True):
        assert not torch.allclose(before, after)
        assert float(torch.pdist(after.detach()).min()) > float(torch.pdist(before).min()) + 0.1
    assert float((model.predict(x) == y).float().mean()) > 0.9  # nearest prototype


def test_pcl_decides_by_softmax_by_default_and_the_prototype_rule_is_a_keyed_option():
    """Paper 004's model "performs conventional softmax prediction": by default `predict` is the argmax of
    the linear logits; the nearest-prototype rule (eq. 6) is an option that every config names, so
    the two never share a config digest (nor a result key)."""
    from robustlab.models import ModelConfig
    from robustlab.models.heads.pcl import prototype_scores

    base = {"backbone": "mlp", "head": "pcl", "num_classes": 3, "input_shape": [1, 4, 4]}
    default = ModelConfig.from_dict(base)
    assert default.head_args == {"decision": "softmax"}
    assert ModelConfig.from_dict({**base, "head_args": {"decision": "softmax"}}).digest() == default.digest()
    prototype = ModelConfig.from_dict({**base, "head_args": {"decision": "prototype"}})
    assert prototype.digest() != default.digest()
    torch.manual_seed(0)
    model = build_model(default).eval()
    x = torch.rand(64, 1, 4, 4)
    with torch.no_grad():
        features = model.embed(x)
        assert torch.equal(model.predict(x), model.head.linear(features).argmax(1))
        rule = prototype_scores(features, model.head.centres).argmax(1)
    other = build_model(prototype).eval()
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.predict(x), rule) and not torch.equal(other.predict(x), model.predict(x))


def test_pcl_default_branches_follow_table_1_and_bad_taps_fail():
    cnn = build_model({"backbone": "cnn6", "head": "pcl", "num_classes": 3, "input_shape": [1, 8, 8]})
    assert set(cnn.head.branches) == {"gap", "fc1"}
    assert cnn.head.branch_centres["fc1"].shape == (3, 512)
    res = build_model({"backbone": "resnet", "head": "pcl", "num_classes": 3, "input_shape": [1, 8, 8]})
    assert set(res.head.branches) == {"stage2"} and res.head.branch_centres["stage2"].shape == (3, 512)
    with pytest.raises(ConfigError):
        build_model({"backbone": "cnn6", "head": "pcl", "num_classes": 3, "input_shape": [1, 8, 8],
                     "head_args": {"branches": {"block9": 4}}})


def test_knn_gallery_cap_is_class_balanced_and_empty_gallery_fails_clearly():
    model = build_model({"backbone": "mlp", "head": "triplet", "num_classes": 3, "input_shape": [1, 4, 4],
                         "head_args": {"per_class": 5}})
    x, y = _clusters(n_per_class=20)
    with pytest.raises(InputError):
        model.predict(x)
    model.head.fit_gallery(model.embed(x).detach(), y)
    assert torch.bincount(model.head.knn.gallery_labels).tolist() == [5, 5, 5]


def _config(head):
    if head == "pcl":
        return {"backbone": "cnn6", "head": "pcl", "num_classes": 3, "input_shape": [1, 8, 8]}
    args = {"decision": "knn"} if head == "mct" else {}
    return {"backbone": "lenet", "head": head, "num_classes": 3, "input_shape": [1, 8, 8], "head_args": args}


@pytest.mark.parametrize("head", ALL_HEADS)
def test_checkpoint_round_trip(head, tmp_path):
    torch.manual_seed(0)
    model = build_model(_config(head)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, y = _clusters(n_per_class=6, shape=(1, 8, 8))
    if model.head.needs_gallery:
        model.head.fit_gallery(model.embed(x).detach(), y)
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    original = model.state_dict()
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    if head == "pcl":
        assert any(k.startswith("head.branch_centres.") for k in restored)
        assert any(k.startswith("head.branches.") for k in restored) or len(loaded.head.branches) == 2
    if model.head.needs_gallery:
        assert loaded.head.knn.gallery.shape[0] == len(x)
    assert torch.equal(model.predict(x), loaded.predict(x))
    assert torch.allclose(model(x), loaded(x))
