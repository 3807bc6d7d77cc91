"""FGSM and PGD: threat-model properties, closed-form strength, bookkeeping, and a clean model."""

from __future__ import annotations

import pytest
import torch

from robustlab.attacks import FGSM, PGD, TopKExcluded, make_attack
from robustlab.core import REJECT, ConfigError, InputError
from robustlab.core.norms import distance

ATTACKS = [
    FGSM(0.1),
    FGSM(0.8, norm="l2"),
    PGD(0.1, steps=10),
    PGD(0.8, norm="l2", steps=10),
    PGD(0.1, steps=10, restarts=3, loss="margin"),
    PGD(0.1, steps=10, loss="dlr"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
def test_x_adv_in_box_and_ball(attack, digits_mlp, attack_batch):
    x, y = attack_batch
    r = attack(digits_mlp, x, y)
    assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert (distance(r.x_adv, x, attack.norm) <= attack.eps * (1 + 1e-5) + 1e-6).all()
    assert torch.allclose(r.distance, distance(r.x_adv, x, attack.norm))
    # success is the model's real decision on x_adv, recomputed here
    pred = digits_mlp.predict(r.x_adv)
    assert torch.equal(r.prediction, pred)
    assert torch.equal(r.success, (pred != y) & (pred != REJECT))
    assert (r.queries >= 1).all()


@pytest.mark.parametrize("attack", [FGSM(0.0), PGD(0.0, steps=5)], ids=repr)
def test_eps_zero_is_clean_accuracy(attack, digits_mlp, attack_batch):
    x, y = attack_batch
    r = attack(digits_mlp, x, y)
    assert torch.equal(r.x_adv, x)
    clean_correct = digits_mlp.predict(x) == y
    assert torch.equal(r.prediction == y, clean_correct)


def test_pgd_never_weaker_than_fgsm(digits_mlp, attack_batch):
    x, y = attack_batch
    for eps in (0.05, 0.1, 0.15):
        fgsm = FGSM(eps)(digits_mlp, x, y)
        pgd = PGD(eps, steps=20, restarts=2)(digits_mlp, x, y)
        assert (pgd.prediction == y).sum() <= (fgsm.prediction == y).sum(), eps
        assert (pgd.prediction == y).float().mean() < 0.9


def test_l2_pgd_reaches_closed_form_distance(linear_model, linear_points):
    """On a linear binary model the minimal L2 adversarial distance is |w.x + b| / ||w||:
    PGD succeeds on every point with eps 1% above it and on none with eps 1% below."""
    x, y = linear_points
    d = linear_model.boundary_distance(x)
    for i in range(len(x)):
        xi, yi = x[i : i + 1], y[i : i + 1]
        above = PGD(float(d[i]) * 1.01, norm="l2", steps=30, step_size=float(d[i]) * 0.2)(linear_model, xi, yi)
        below = PGD(float(d[i]) * 0.99, norm="l2", steps=30, step_size=float(d[i]) * 0.2)(linear_model, xi, yi)
        assert bool(above.success[0]) and not bool(below.success[0]), i
        assert float(above.distance[0]) <= float(d[i]) * 1.01 + 1e-6


def test_attacks_use_true_labels_and_keep_clean_failures(digits_mlp, attack_batch):
    x, y = attack_batch
    pred = digits_mlp.predict(x)
    wrong = (pred + 1) % 10  # labels the model does not predict: every sample is already "adversarial"
    r = PGD(0.1, steps=5)(digits_mlp, x, wrong)
    assert r.success.all() and torch.equal(r.x_adv, x)
    assert (r.distance == 0).all()


def test_attack_leaves_model_untouched(digits_mlp, attack_batch):
    x, y = attack_batch
    before = {k: v.clone() for k, v in digits_mlp.state_dict().items()}
    for p in digits_mlp.parameters():  # a stale .grad must survive untouched
        p.grad = torch.full_like(p, 0.5)
    for mode in (False, True):
        digits_mlp.train(mode)
        if mode:
            with pytest.warns(UserWarning, match="training mode"):
                PGD(0.1, steps=3)(digits_mlp, x, y)
        else:
            PGD(0.1, steps=3)(digits_mlp, x, y)
        assert digits_mlp.training is mode
    digits_mlp.eval()
    for k, v in digits_mlp.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.requires_grad and bool((p.grad == 0.5).all()) for p in digits_mlp.parameters())
    for p in digits_mlp.parameters():
        p.grad = None


def test_targeted_pgd_reaches_target(digits_mlp, attack_batch):
    x, y = attack_batch
    targets = (y + 3) % 10
    r = PGD(0.3, steps=40)(digits_mlp, x, y, targets=targets)
    assert r.success.float().mean() > 0.95
    assert torch.equal(r.success, r.prediction == targets)


def test_restarts_keep_each_samples_best(digits_mlp, attack_batch):
    x, y = attack_batch
    one = PGD(0.07, steps=5, restarts=1, seed=1)(digits_mlp, x, y)
    three = PGD(0.07, steps=5, restarts=3, seed=1)(digits_mlp, x, y)
    assert (three.success | ~one.success).all()  # every success of one restart survives
    assert three.success.sum() >= one.success.sum()


def test_early_stop_spends_fewer_queries_on_easy_samples(digits_mlp, attack_batch):
    x, y = attack_batch
    r = PGD(0.3, steps=40)(digits_mlp, x, y)
    assert r.success.all()
    assert r.queries.float().mean() < 20


def test_same_seed_same_result(digits_mlp, attack_batch):
    x, y = attack_batch
    a = PGD(0.08, steps=5, seed=7)(digits_mlp, x, y)
    b = PGD(0.08, steps=5, seed=7)(digits_mlp, x, y)
    assert torch.equal(a.x_adv, b.x_adv)


def test_topk_criterion(digits_mlp, attack_batch):
    x, y = attack_batch
    r = PGD(0.3, steps=30, criterion=TopKExcluded(3))(digits_mlp, x, y)
    ranks = digits_mlp(r.x_adv).topk(3, dim=1).indices
    out_of_top3 = ~(ranks == y[:, None]).any(1)
    assert torch.equal(r.success, out_of_top3)
    assert r.success.float().mean() > 0.8


@pytest.mark.parametrize(
    "make_x,match",
    [
        (lambda x: x * 2, r"\[0, 1\]"),
        (lambda x: torch.where(x > 0.5, torch.nan, x), "NaN"),
        (lambda x: x[:, 0], "4-d"),
        (lambda x: x.double().to(torch.int64), "floating"),
        (lambda x: torch.nn.functional.pad(x, (0, 1)), "shape"),
    ],
)
def test_bad_inputs_fail_clearly(make_x, match, digits_mlp, attack_batch):
    x, y = attack_batch
    with pytest.raises(InputError, match=match):
        PGD(0.1, steps=2)(digits_mlp, make_x(x.clone()), y)


def test_bad_labels_and_params(digits_mlp, attack_batch):
    x, y = attack_batch
    with pytest.raises(InputError, match="shape"):
        PGD(0.1)(digits_mlp, x, y[:-1])
    with pytest.raises(InputError, match="lie in"):
        PGD(0.1)(digits_mlp, x, y + 10)
    with pytest.raises(InputError, match="targets equal"):
        PGD(0.1)(digits_mlp, x, y, targets=y)
    with pytest.raises(ConfigError, match="eps"):
        PGD(-0.1)
    with pytest.raises(ConfigError, match="norm"):
        PGD(0.1, norm="l7")
    with pytest.raises(ConfigError, match="unknown attack"):
        make_attack("nope", eps=0.1)
    with pytest.raises(ConfigError, match="unknown parameters"):
        make_attack("pgd", eps=0.1, stepz=3)
    with pytest.raises(ConfigError, match="attack loss"):
        PGD(0.1, loss="hinge")
