"""Adversarial training: its losses against naive loops, the training attack's budget, that it
buys robustness, the catastrophic-overfitting guard, reproducibility, and its errors."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch.nn import functional as F

from robustlab.attacks import PGD
from robustlab.cli.app import main
from robustlab.core import ConfigError, seed_everything
from robustlab.core.contract import RobustModel
from robustlab.experiment.spec import ExperimentSpec
from robustlab.losses import adversarial_triplet, logit_pairing, trades_kl
from robustlab.models import build_model
from robustlab.train import TrainConfig, make_objective, train
from robustlab.train.adversarial import AdvConfig, adversarial, recipe_label

MLP = {"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}
LENET = {**MLP, "backbone": "lenet"}


def _model(cfg=MLP, seed=0):
    seed_everything(seed)
    return build_model(cfg)


# ------------------------------------------------------------------ losses vs naive float64 loops
def test_trades_kl_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    total = 0.0
    for i in range(6):
        zp = [math.exp(v) for v in a[i].double().tolist()]
        zq = [math.exp(v) for v in b[i].double().tolist()]
        p = [v / sum(zp) for v in zp]
        q = [v / sum(zq) for v in zq]
        total += sum(pc * math.log(pc / qc) for pc, qc in zip(p, q, strict=True))
    assert abs(float(trades_kl(a, b)) - total / 6) < 1e-5
    assert float(trades_kl(a, a)) == pytest.approx(0.0, abs=1e-6)


def test_logit_pairing_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    naive = sum((float(a[i, j]) - float(b[i, j])) ** 2 for i in range(4) for j in range(3)) / 12
    assert abs(float(logit_pairing(a, b)) - naive) < 1e-6


def test_adversarial_triplet_matches_naive_loop():
    g = torch.Generator().manual_seed(2)
    anchors, positives, clean = (torch.randn(8, 4, generator=g) for _ in range(3))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    positives[:4] = anchors[:4] + 0.01  # these anchors satisfy the margin: hinge 0

    def dist(u, v):
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(u, v, strict=True)))

    terms = []
    for i in range(8):
        a = anchors[i].double().tolist()
        d_ap = dist(a, positives[i].double().tolist())
        d_an = min(dist(a, clean[j].double().tolist()) for j in range(8) if labels[j] != labels[i])
        terms.append(max(0.0, d_ap - d_an + 0.2))
    assert max(terms) > 0.0 and min(terms) == 0.0  # both sides of the hinge are exercised
    assert abs(float(adversarial_triplet(anchors, positives, clean, labels, 0.2)) - sum(terms) / 8) < 1e-5


# ------------------------------------------------------------------ the training attack's budget
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_training_attack_stays_in_box_and_sampled_ball(digits, digits_mlp, norm):
    model = digits_mlp
    eps_max = 0.2 if norm == "linf" else 1.0
    cfg = AdvConfig(method="pgd", eps=eps_max, eps_min=eps_max / 4, sampling="sample", norm=norm, steps=5)
    obj = adversarial(make_objective("cross_entropy", model), model, cfg, seed=3)
    x, y = digits.x_train[:64], digits.y_train[:64]
    eps = obj.batch_eps(len(x), epoch=0, device=x.device)
    assert bool(((eps >= eps_max / 4) & (eps <= eps_max)).all()) and float(eps.std()) > 0.01 * eps_max
    x_adv = obj.perturb(model, x, y, 0, eps)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(size.mean()) > 0.5 * float(eps.mean())  # it moved
    # it ascends the objective's own loss, and leaves the model's gradients alone
    assert all(p.grad is None for p in model.parameters())
    assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.5


def test_eps_per_batch_and_warmup(digits):
    model = _model()
    cfg = AdvConfig(method="pgd", eps=0.2, eps_min=0.1, sampling="batch", warmup_epochs=4)
    obj = adversarial(make_objective("cross_entropy", model), model, cfg)
    e0, e3 = obj.batch_eps(32, 0, torch.device("cpu")), obj.batch_eps(32, 3, torch.device("cpu"))
    assert bool((e0 == e0[0]).all()) and 0.1 / 4 <= float(e0[0]) <= 0.2 / 4 + 1e-7
    assert 0.1 <= float(e3[0]) <= 0.2


def test_n_fgsm_noise_exceeds_eps_within_its_radius(digits):
    model = _model()
    cfg = AdvConfig(method="n-fgsm", eps=0.1)
    obj = adversarial(make_objective("cross_entropy", model), model, cfg)
    x, y = digits.x_train[:64], digits.y_train[:64]
    captured = {}
    inner = obj.inner.forward

    def spy(m, xb, yb, epoch):
        captured["x"] = xb.detach()
        return inner(m, xb, yb, epoch)

    obj.inner.forward = spy
    obj(model, x, y, 0)  # n-fgsm's loss: the wrapped objective on its x_adv
    size = (captured["x"] - x).flatten(1).abs().amax(1)
    assert float(size.max()) > 0.1 + 1e-3 and bool((size <= 0.3 + 1e-5).all())
    assert captured["x"].min() >= 0 and captured["x"].max() <= 1


@pytest.mark.parametrize("head", ["triplet", "pcl"])
def test_attack_ascends_a_metric_heads_own_loss(digits, head):
    model = _model({**LENET, "head": head})
    objective = make_objective(model.head.objective, model)
    obj = adversarial(objective, model, AdvConfig(method="pgd", eps=0.2, steps=5))
    batch = objective.make_batches(digits.y_train, 64, torch.Generator().manual_seed(0))[0]
    x, y = digits.x_train[batch], digits.y_train[batch]
    epoch = 5  # past PCL's CE-only warm-up
    x_adv = obj.perturb(model, x, y, epoch, obj.batch_eps(len(x), epoch, x.device))
    seed_everything(1)
    clean = float(objective(model, x, y, epoch).loss.detach())
    seed_everything(1)
    adv = float(objective(model, x_adv, y, epoch).loss.detach())
    assert adv > clean + 1e-3


# ------------------------------------------------------------------ it works: robustness, guard
def _fit(digits, adv, epochs, model_cfg=MLP, schedule="cosine", guard_n=200):
    model = _model(model_cfg)
    cfg = TrainConfig(epochs=epochs, optimizer="adam", lr=0.003, weight_decay=0.0, batch_size=64, seed=0,
                      schedule=schedule, adv=adv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logs = train(model, digits.x_train, digits.y_train, cfg,
                     x_test=digits.x_test[:guard_n], y_test=digits.y_test[:guard_n])
    co = [w for w in caught if "catastrophic overfitting" in str(w.message)]
    return model.eval(), logs, co


@pytest.fixture(scope="module")
def pgd_run(digits):
    return _fit(digits, {"method": "pgd", "eps": 0.1, "steps": 7}, epochs=12)


def test_pgd_training_buys_robustness(digits, pgd_run):
    standard, _, _ = _fit(digits, None, epochs=12)
    robust, _, _ = pgd_run
    attack = PGD(eps=0.1, steps=20)
    x, y = digits.x_test, digits.y_test
    acc_std = 1 - float(attack(standard, x, y).success.float().mean())
    acc_adv = 1 - float(attack(robust, x, y).success.float().mean())
    assert acc_adv > acc_std + 0.1, (acc_std, acc_adv)


def test_overfitting_guard_quiet_on_pgd(pgd_run):
    _, logs, co = pgd_run
    assert not co and all(log.extra["overfitting"] == 0.0 for log in logs)
    assert all(log.extra["guard_pgd_accuracy"] <= log.extra["guard_fgsm_accuracy"] + 0.05 for log in logs)


def test_overfitting_guard_fires_on_fgsm_without_random_start(digits):
    """Goodfellow's FGSM training (no random start) at a large eps overfits to FGSM: its FGSM
    accuracy climbs while PGD's stays near 0 (measured: 24% vs 3% at epoch 4)."""
    _, logs, co = _fit(digits, {"method": "fgsm-mix", "eps": 0.3}, epochs=6, schedule="constant")
    flagged = [log for log in logs if log.extra["overfitting"]]
    assert flagged and co
    for log in flagged:
        assert log.extra["guard_pgd_accuracy"] < 0.5 * log.extra["guard_fgsm_accuracy"]


def test_same_seed_same_weights(digits):
    adv = {"method": "pgd", "eps": 0.2, "eps_min": 0.05, "sampling": "sample", "steps": 3, "guard": 32}

    def run(seed):
        model = _model(LENET, seed)
        cfg = TrainConfig(epochs=1, batch_size=64, seed=seed, adv=adv)
        train(model, digits.x_train[:256], digits.y_train[:256], cfg, x_test=digits.x_test[:64],
              y_test=digits.y_test[:64])
        return model.state_dict()

    a, b, c = run(4), run(4), run(5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["backbone.conv1.weight"], c["backbone.conv1.weight"])


@pytest.mark.parametrize("method", ["fgsm-mix", "fgsm-rs", "trades", "alp", "tla"])
def test_every_method_trains_and_logs(digits, method):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=64, seed=0, adv={"method": method, "eps": 0.1, "guard": 0})
    logs = train(model, digits.x_train[:256], digits.y_train[:256], cfg)
    assert math.isfinite(logs[0].loss) and logs[0].extra == {}
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.endswith("weight"))


# ------------------------------------------------------------------ config, serialisation, errors
def test_recipe_round_trips_through_dict_and_yaml_spec():
    cfg = TrainConfig(epochs=2, adv={"method": "trades", "eps": 0.1, "args": {"beta": 3}})
    d = cfg.to_dict()
    assert d["adv"]["method"] == "trades" and d["adv"]["args"] == {"beta": 3}
    assert TrainConfig(**{**d, "milestones": tuple(d["milestones"])}) == cfg
    spec = ExperimentSpec.from_dict({"models": [{"model": {"backbone": "mlp"}, "train": d}], "attacks": ["fgsm"]})
    assert spec.models[0].train.adv == cfg.adv
    assert recipe_label(d) == "trades-10 linf eps=0.1 beta=3" and recipe_label({}) == "standard"
    assert TrainConfig().adv is None


@pytest.mark.parametrize(
    "adv, match",
    [
        ({"method": "pgd", "eps": -0.1}, "eps must be"),
        ({"method": "pgd", "eps": float("nan")}, "eps must be"),
        ({"method": "free"}, "unknown adversarial-training method"),
        ({"method": "pgd", "steps": 0}, "steps must be"),
        ({"method": "fgsm-rs", "steps": 3}, "single-step"),
        ({"method": "trades", "args": {"beta": -1}}, "beta must be"),
        ({"method": "pgd", "args": {"beta": 6}}, "takes no argument"),
        ({"method": "pgd", "eps": 0.1, "eps_min": 0.2}, "eps_min"),
        ({"method": "pgd", "sampling": "epoch"}, "sampling"),
        ({"method": "pgd", "norm": "l1"}, "norm"),
        ({"method": "pgd", "colour": 1}, "unknown keys"),
    ],
)
def test_bad_recipes_are_config_errors(adv, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(adv=adv)


class _NoEmbedding(RobustModel):
    def __init__(self):
        super().__init__(10, (1, 8, 8))
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_methods_that_do_not_apply_fail_before_training(digits):
    model = _NoEmbedding()
    before = model.linear.weight.clone()
    with pytest.raises(ConfigError, match="tla does not apply.*embedding"):
        train(model, digits.x_train[:64], digits.y_train[:64], TrainConfig(epochs=1, adv={"method": "tla"}))
    assert torch.equal(before, model.linear.weight)
    with pytest.raises(ConfigError, match="trades does not apply.*k-NN"):
        train(_model({**MLP, "head": "triplet"}), digits.x_train[:64], digits.y_train[:64],
              TrainConfig(epochs=1, adv={"method": "trades"}))


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--adv", "pgd", "--adv-eps", "-0.1"], "eps must be"),
        (["--adv", "pgd", "--adv-eps", "nan"], "eps must be"),
        (["--adv", "madry"], "unknown adversarial-training method"),
        (["--adv", "pgd", "--adv-steps", "0"], "steps must be"),
        (["--adv", "tla", "--head", "triplet", "-p", "adv.margin=-1"], "margin must be"),
        (["--adv", "trades", "--head", "triplet"], "does not apply"),
        (["--adv-eps", "0.1"], "need --adv"),
    ],
)
def test_cli_bad_values_one_line_nothing_written(capsys, tmp_path, extra, match):
    out = tmp_path / "ckpt"
    code = main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "1", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_cli_train_and_evaluate_show_the_recipe(capsys, tmp_path):
    ckpt = tmp_path / "ckpt"
    code = main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "1", "--adv", "pgd",
                 "--adv-eps", "0.1", "--adv-steps", "3", "-p", "adv.eps_min=0.05", "-p", "adv.guard=64",
                 "--out", str(ckpt), "--json"])
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and doc["train"]["adv"]["steps"] == 3 and doc["train"]["adv"]["eps_min"] == 0.05
    assert "guard_pgd_accuracy" in doc["history"][0]["extra"] and doc["overfitting_epochs"] == []
    code = main(["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--eps", "0.1", "--n-eval", "50",
                 "--out", str(tmp_path / "run"), "--json"])
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and doc["training"] == "pgd-3 linf eps=0.05-0.1/batch"
    assert doc["masking"], "the gradient-masking checks run on adversarially trained models too"
    assert all(r["training"] == doc["training"] for r in doc["rows"])
