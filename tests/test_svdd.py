"""M-SVDD: losses against a naive loop, eq. 10 against an explicit feature map, staged training,
the defended decision (REJECT), beta tuning, straight-through gradients, checkpoints."""

from __future__ import annotations

import json
import math
from functools import lru_cache

import pytest
import torch

from paper001_helpers import digits, trained_mlp
from robustlab.core.contract import REJECT
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.defenses.svdd import (
    MSVDDConfig,
    MSVDDModel,
    SVDDLayer,
    SVDDTrainConfig,
    build_msvdd,
    fit_svdd,
)
from robustlab.losses.svdd import negative_hinge, positive_hinge, svdd_loss
from robustlab.models import Classifier
from robustlab.store import load_checkpoint, save_checkpoint
from robustlab.train import TrainConfig


def _random_layer(c=3, d=4, m=5, seed=0) -> SVDDLayer:
    g = torch.Generator().manual_seed(seed)
    layer = SVDDLayer(c, d, m).double()
    with torch.no_grad():
        layer.projections.copy_(torch.randn(c, m, d, generator=g, dtype=torch.float64) * 0.7)
        layer.weights.copy_(torch.rand(c, m, generator=g, dtype=torch.float64) / m)
        layer.radius.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
        layer.gamma.fill_(0.3)
    return layer


def _naive_dist2(f, proj, u, gamma):
    """||phi(f) - a||^2 = k(f, f) - 2 sum_m u_m k(f, o_m) + sum_mn u_m u_n k(o_m, o_n), by loops."""

    def k(a, b):
        return math.exp(-gamma * sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True)))

    m = len(proj)
    cross = sum(u[i] * k(f, proj[i]) for i in range(m))
    quad = sum(u[i] * u[j] * k(proj[i], proj[j]) for i in range(m) for j in range(m))
    return k(f, f) - 2 * cross + quad


def test_losses_match_naive_loop_float64():
    layer = _random_layer().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(7, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 0, 2, 1])
    dist2 = layer.distance2(feats)
    r2 = layer.radius2()
    c_p, c_n, w = 3.0, 2.0, 0.7
    naive_pos = [0.0] * 3
    naive_neg = [0.0] * 3
    counts_pos, counts_neg = [0] * 3, [0] * 3
    for i in range(7):
        for c in range(3):
            d = _naive_dist2(feats[i].tolist(), layer.projections[c].tolist(), layer.weights[c].tolist(), 0.3)
            assert dist2[i, c].item() == pytest.approx(d, abs=1e-12)
            rr = r2[c].item()
            assert positive_hinge(dist2, r2)[i, c].item() == pytest.approx(max(0.0, d - rr), abs=1e-12)
            assert negative_hinge(dist2, r2)[i, c].item() == pytest.approx(max(0.0, rr - d), abs=1e-12)
            if labels[i] == c:
                naive_pos[c] += max(0.0, d - rr)
                counts_pos[c] += 1
            else:
                naive_neg[c] += max(0.0, rr - d)
                counts_neg[c] += 1
    expected = (
        w * sum(r2.tolist())
        + c_p * sum(p / n for p, n in zip(naive_pos, counts_pos, strict=True))
        + c_n * sum(p / n for p, n in zip(naive_neg, counts_neg, strict=True))
    )
    terms = svdd_loss(dist2, r2, labels, c_p, c_n, True, w)
    assert terms.loss.item() == pytest.approx(expected, abs=1e-12)
    stage1 = svdd_loss(dist2, r2, labels, c_p, c_n, False, w)
    assert stage1.negative.item() == 0.0
    assert stage1.loss.item() == pytest.approx(
        expected - c_n * sum(p / n for p, n in zip(naive_neg, counts_neg, strict=True)), abs=1e-12
    )


def _explicit_rbf_map(x: torch.Tensor, gamma: float, terms: int = 30) -> torch.Tensor:
    """A truncated explicit feature map of exp(-gamma ||a - b||^2) for 2-d inputs (Taylor series):
    phi(a) = exp(-gamma |a|^2) [sqrt((2 gamma)^(i+j) / (i! j!)) a1^i a2^j]_{i,j < terms}."""
    n = torch.arange(terms, dtype=torch.float64)
    coef = torch.exp(0.5 * (n * math.log(2 * gamma) - torch.lgamma(n + 1)))
    p1 = coef * x[:, :1] ** n
    p2 = coef * x[:, 1:2] ** n
    return torch.exp(-gamma * (x * x).sum(1, keepdim=True)) * (p1[:, :, None] * p2[:, None, :]).flatten(1)


def test_eq10_equals_explicit_kernel_space_distance():
    layer = _random_layer(c=2, d=2, m=3, seed=3).requires_grad_(False)
    gamma = 0.3
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(5, 2, generator=g, dtype=torch.float64) * 0.8
    phi_f = _explicit_rbf_map(feats, gamma)
    # the explicit map reproduces the kernel (k_ii = 1)
    assert (phi_f * phi_f).sum(1) == pytest.approx(torch.ones(5, dtype=torch.float64), abs=1e-10)
    for c in range(2):
        centre = (layer.weights[c][:, None] * _explicit_rbf_map(layer.projections[c], gamma)).sum(0)  # a = Phi u
        explicit = ((phi_f - centre) ** 2).sum(1)
        assert layer.distance2(feats)[:, c].detach() == pytest.approx(explicit, abs=1e-10)
        layer.set_beta_mode(0.9)
        svdd = 0.9 * layer.radius2()[c] - explicit
        assert layer(feats)[:, c].detach() == pytest.approx(svdd.detach(), abs=1e-10)
        assert layer.responses(feats)[:, c].detach() == pytest.approx((svdd / layer.radius2()[c]).detach(), abs=1e-10)
        layer.set_beta_mode("one")


def _blobs(n=60, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(n)
    return centres[y] + torch.randn(len(y), d, generator=g), y


def test_staged_training_shrinks_positive_hinge_then_uses_negatives():
    x, y = _blobs()
    layer = SVDDLayer(3, 6, 8)
    layer.initialize(x, y, seed=0)
    before = svdd_loss(layer.distance2(x), layer.radius2(), y, use_negatives=False).positive.item()
    history = fit_svdd(layer, x, y, SVDDTrainConfig(positive_epochs=40, epochs=5, batch_size=64, lr=0.02))
    stage1 = [h for h in history if h["stage"] == 1]
    stage2 = [h for h in history if h["stage"] == 2]
    assert stage1 and len(stage2) == 5
    assert all(h["negative"] == 0.0 for h in stage1)
    after = svdd_loss(layer.distance2(x), layer.radius2(), y, use_negatives=False).positive.item()
    assert after < 0.5 * before
    # every class is verified by its own SVDD on most of its samples
    assert (layer.responses(x).argmax(1) == y).float().mean() > 0.95


@lru_cache(maxsize=1)
def _built():
    x, y = digits()
    cfg = MSVDDConfig(
        num_projections=32,
        svdd=SVDDTrainConfig(positive_epochs=30, epochs=15),
        finetune=TrainConfig(epochs=1, optimizer="sgd", lr=0.01),
        budget=0.03,
    )
    return build_msvdd(trained_mlp(), x[:1000], y[:1000], x[1000:1200], y[1000:1200], cfg)


def test_build_gives_table1_models_and_tuned_betas():
    built = _built()
    x, y = digits()
    xt, yt = x[1200:], y[1200:]
    model = built.model
    assert isinstance(model.linear_classifier(), Classifier)
    lc = (model.linear_classifier().predict(xt) == yt).float().mean()
    assert lc > 0.85
    scores = model(xt)
    assert scores.shape == (len(xt), 11) and model.can_reject
    assert torch.all(scores[:, 10] == model.v_a)
    tuning = built.beta
    assert tuning.accuracy_oc >= tuning.accuracy_one - 1e-9  # O_c is the best on validation
    assert tuning.accuracy_od >= tuning.accuracy_oc - 0.03 - 1e-9 and tuning.scale_od <= 1.0
    assert torch.allclose(tuning.beta_od, tuning.scale_od * tuning.beta_oc)
    model.svdd.set_beta_mode("O_c")
    acc_oc = (model.predict(xt) == yt).float().mean()
    assert acc_oc > 0.7
    # a stricter beta rejects more
    rejected = [(model.predict(xt) == REJECT).float().mean() for b in (1.2, 0.8) if model.svdd.set_beta_mode(b) is None]
    assert rejected[1] > rejected[0]
    model.svdd.set_beta_mode("O_c")


def test_predict_rejects_input_far_from_every_class():
    model = _built().model
    far = torch.ones(1, 1, 8, 8)  # a white square: no digit looks like it
    # precondition: outside every hypersphere (all responses negative)
    assert bool((model.responses(far) < 0).all())
    assert model.predict(far).tolist() == [REJECT]
    x, y = digits()
    assert (model.predict(x[1200:]) == REJECT).float().mean() < 0.2  # real digits mostly pass


def test_unique_verifier_rejects_ties_at_the_clamp():
    model = _built().model
    r = torch.tensor([[0.9, 0.8, -1.0] + [-1.0] * 7, [0.9, 0.2, -1.0] + [-1.0] * 7])
    old = model.v_p
    model.v_p = 0.5
    assert model.decide(model.scores_from_responses(r)).tolist() == [REJECT, 0]
    model.unique_verifier = False
    assert model.decide(model.scores_from_responses(r)).tolist() == [0, 0]
    model.unique_verifier, model.v_p = True, old


def test_straight_through_gradient_passes_the_clamp():
    """On inputs where every SVDD response is clamped (a blank image, and test digits found the
    same way), the true gradient is exactly zero and the straight-through one is not."""
    model = _built().model
    x, _ = digits()
    pool = torch.cat([torch.zeros(1, *x.shape[1:]), x[1300:1797]])
    with torch.no_grad():
        r = model.responses(pool)
    xm = pool[((r < 0) | (r > model.v_p)).all(1)][:8].clone().requires_grad_(True)
    assert len(xm) >= 2  # the blank image and at least one digit
    (g_st,) = torch.autograd.grad(model(xm)[:, :10].sum(), xm)
    model.straight_through = False
    try:
        (g_true,) = torch.autograd.grad(model(xm)[:, :10].sum(), xm)
    finally:
        model.straight_through = True
    assert float(g_true.abs().max()) == 0.0  # the clamp masks the gradient entirely
    assert bool((g_st.flatten(1).abs().amax(1) > 0).all())  # the straight-through path reaches every one


def test_the_probe_sees_the_true_clamped_gradients_through_the_shared_bpda_flag():
    """M-SVDD declares its straight-through clamp as a BPDA path, so `true_gradients` (and the
    defense probe built on it) switch to the true, clamped gradient and back."""
    from robustlab.defenses.base import gradient_path_of, true_gradients
    from robustlab.evaluate.masking import defense_probe

    model = _built().model
    assert gradient_path_of(model) == "bpda" and model.bpda
    with true_gradients(model):
        assert not model.straight_through and gradient_path_of(model) == "exact"
    assert model.straight_through
    x, y = digits()
    probe = defense_probe(model, x[1300:1364], y[1300:1364])
    assert probe["gradient_path"] == "bpda"
    assert probe["true_zero_fraction"] >= probe["zero_fraction"]  # the clamp only removes gradient


def test_defended_checkpoint_round_trip(tmp_path):
    model = _built().model
    model.svdd.set_beta_mode("O_d")
    save_checkpoint(model, tmp_path / "d", metadata={"note": "test"})
    save_checkpoint(model.linear_classifier(), tmp_path / "d" / "linear")
    loaded = load_checkpoint(tmp_path / "d")
    assert isinstance(loaded, MSVDDModel) and loaded.svdd.beta_mode == "O_d"
    x, _ = digits()
    assert torch.equal(loaded(x[1200:1300]), model(x[1200:1300]))
    assert torch.equal(loaded.predict(x[1200:1300]), model.predict(x[1200:1300]))
    assert torch.equal(loaded.svdd.beta_od, model.svdd.beta_od)
    lc = load_checkpoint(tmp_path / "d" / "linear")
    assert isinstance(lc, Classifier)
    assert torch.equal(lc(x[:20]), model.linear_classifier()(x[:20]))
    model.svdd.set_beta_mode("O_c")
    # a tampered defense section fails the digest check
    cfg = (tmp_path / "d" / "config.json").read_text().replace('"v_a": 0.001', '"v_a": 0.01')
    (tmp_path / "d" / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "d")


def test_bad_settings_raise_config_errors():
    with pytest.raises(ConfigError):
        SVDDLayer(3, 4, 2).set_beta_mode("best")
    with pytest.raises(ConfigError):
        MSVDDModel(trained_mlp(), SVDDLayer(10, 32, 2), v_a=2.0, v_p=1.0)
    with pytest.raises(ConfigError):
        MSVDDModel(trained_mlp(), SVDDLayer(10, 16, 2))


def test_cli_defend_svdd_saves_a_loadable_defended_checkpoint(tmp_path):
    from robustlab.cli.app import main

    ckpt = save_checkpoint(trained_mlp(), tmp_path / "w", metadata={"data": {"name": "digits", "seed": 0}})
    out = tmp_path / "d"
    args = [
        "defend",
        "svdd",
        "--model",
        str(ckpt),
        "--out",
        str(out),
        "--projections",
        "8",
        "--positive-epochs",
        "3",
        "--svdd-epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--beta",
        "O_d",
    ]
    assert main(args) == 0
    model = load_checkpoint(out)
    assert isinstance(model, MSVDDModel) and model.svdd.beta_mode == "O_d"
    assert isinstance(load_checkpoint(out / "linear"), Classifier)
    meta = json.loads((out / "config.json").read_text())["metadata"]
    assert set(meta["test_accuracy"]) == {"W-LC", "W~-LC", "W~-SVDD(beta=O_c)", "W~-SVDD(beta=O_d)"}
    assert main(["defend", "svdd", "--model", str(out), "--out", str(tmp_path / "again")]) == 2  # already defended
