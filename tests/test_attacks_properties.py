"""Properties every attack must have, on every kind of head (score-decided, feature-decided,
rejecting): x_adv in [0, 1], fixed budgets respected, distances reported, the model left
untouched, the true labels used, REJECT never counted as success."""

from __future__ import annotations

import pytest
import torch

from attack_models import FeatureDecisionModel, RejectingModel, digits_data
from robustlab.attacks import ATTACKS, get_attack_class, make_attack
from robustlab.core.contract import REJECT
from robustlab.core.errors import ConfigError
from robustlab.core.norms import distance

EPS = {"linf": 0.15, "l2": 1.0}

# Small budgets: these tests check properties, not strength.
FAST = {
    "fgsm": {}, "rfgsm": {}, "bim": {"steps": 5}, "mim": {"steps": 5}, "pgd": {"steps": 5},
    "apgd": {"steps": 8}, "apgd-t": {"steps": 5, "n_targets": 2},
    "cw": {"steps": 15, "search_steps": 2}, "deepfool": {"steps": 10},
    "fab": {"steps": 10}, "fab-t": {"steps": 5, "n_targets": 2},
    "lbfgs": {"search_steps": 2, "max_iter": 15}, "jsma": {"gamma": 0.2},
    "square": {"queries": 30}, "hsj": {"steps": 2, "init_evals": 10, "max_evals": 20},
    "transfer": {}, "autoattack": {"steps": 5, "n_targets": 2, "queries": 20},
    "ka3": {"K": 2, "steps": 20, "similarity": "ssim"},
}
# K-A3's goal is the true label leaving the top-k ranks of its sample's group, not misclassification.
RANK_GOAL = {"ka3"}


def build(name: str, source, norm: str | None = None):
    params = dict(FAST[name])
    cls = get_attack_class(name)
    if name == "transfer":
        params["source"] = source
    if norm is not None:
        params["norm"] = norm
    if not cls.minimum_norm:
        params["eps"] = EPS[norm or "linf"]
    return make_attack(name, **params)


def test_every_registered_attack_has_a_fast_setting():
    assert set(FAST) == set(ATTACKS)


@pytest.fixture(scope="module")
def heads(attack_mlp):
    model, _, _ = attack_mlp
    x_tr, y_tr, _, _ = digits_data()
    return {
        "softmax": model,
        "feature": FeatureDecisionModel(model, x_tr, y_tr).eval(),
        "reject": RejectingModel(model).eval(),
    }


@pytest.mark.parametrize("head", ["softmax", "feature", "reject"])
@pytest.mark.parametrize("name", sorted(FAST))
def test_attack_contract(name, head, heads, attack_mlp):
    model = heads[head]
    _, x, y = attack_mlp
    x, y = x[:24], y[:24]
    params_before = [p.detach().clone() for p in model.parameters()]
    attack = build(name, attack_mlp[0])
    r = attack(model, x, y)

    assert r.x_adv.shape == x.shape and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    if not attack.minimum_norm:
        assert bool((distance(r.x_adv, x, attack.norm) <= attack.eps + 1e-5).all())
    assert torch.allclose(r.distance, distance(r.x_adv, x, attack.norm))
    assert r.queries.dtype == torch.int64 and bool((r.queries >= 2).all())
    # success is the model's real decision, and a rejection is never a success
    pred = model.predict(r.x_adv)
    assert torch.equal(r.prediction, pred)
    if name in RANK_GOAL:
        assert not bool((r.success & (pred == REJECT)).any())
    else:
        assert torch.equal(r.success, (pred != y) & (pred != REJECT))
    # the model is untouched: parameters, mode, grads
    assert not model.training
    assert all(torch.equal(a, b.detach()) for a, b in zip(params_before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "name", ["fgsm", "rfgsm", "bim", "mim", "pgd", "apgd", "apgd-t", "square", "autoattack"]
)
def test_l2_ball(name, attack_mlp):
    model, x, y = attack_mlp
    attack = build(name, model, norm="l2")
    r = attack(model, x[:24], y[:24])
    assert bool((distance(r.x_adv, x[:24], "l2") <= 1.0 + 1e-4).all())
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1


@pytest.mark.parametrize("name", sorted(set(FAST) - {"transfer"}))
def test_uses_the_given_labels(name, attack_mlp):
    """Labels the model already gets wrong: nothing to do, x_adv == x, success from the start.
    An attack that looked at the model's predictions instead would perturb these samples."""
    model, x, y = attack_mlp
    x = x[:16]
    wrong = (model.predict(x) + 1) % 10
    if name in RANK_GOAL:  # a label the model ranks last is outside every top-k already
        wrong = model(x).argmin(1)
    r = build(name, model)(model, x, wrong)
    assert bool(r.success.all())
    assert torch.equal(r.x_adv, x)


@pytest.mark.parametrize(
    "name,params",
    [
        ("pgd", {"eps": 0.3, "steps": 20}),
        ("apgd", {"eps": 0.3, "steps": 20}),
        ("apgd-t", {"eps": 0.3, "steps": 20}),
        ("bim", {"eps": 0.3, "steps": 20}),
        ("mim", {"eps": 0.3, "steps": 20}),
        ("cw", {"steps": 60, "search_steps": 4}),
        ("deepfool", {}),
        ("lbfgs", {"search_steps": 4, "max_iter": 50}),
        ("jsma", {"gamma": 0.5}),
        ("square", {"eps": 0.3, "queries": 300}),
    ],
)
def test_targeted_attacks_reach_the_target(name, params, attack_mlp):
    model, x, y = attack_mlp
    x, y = x[:20], y[:20]
    keep = model.predict(x) == y
    x, y = x[keep], y[keep]
    targets = (y + 3) % 10
    r = make_attack(name, **params)(model, x, y, targets=targets)
    assert r.success.float().mean() >= 0.8
    assert torch.equal(r.success, model.predict(r.x_adv) == targets)


def test_eps_zero_changes_nothing(attack_mlp):
    model, x, y = attack_mlp
    for name in ("fgsm", "pgd", "apgd", "square", "autoattack"):
        r = make_attack(name, eps=0.0)(model, x[:8], y[:8])
        assert torch.equal(r.x_adv, x[:8])


def test_bad_parameters_raise_config_errors():
    with pytest.raises(ConfigError, match="valid"):
        make_attack("apgd", eps=0.1, stepz=3)
    with pytest.raises(ConfigError):
        make_attack("bim", eps=0.1, restarts=3)  # BIM fixes restarts: not settable
    with pytest.raises(ConfigError):
        make_attack("cw", boundary_eps=0)
    with pytest.raises(ConfigError):
        make_attack("deepfool", norm="l0")
    with pytest.raises(ConfigError):
        make_attack("nope")


def test_spec_names_every_parameter():
    spec = make_attack("mim", eps=0.1, decay=0.5, seed=3).spec()
    assert spec["name"] == "mim" and spec["decay"] == 0.5 and spec["seed"] == 3
    assert "restarts" not in spec
