"""The ensemble and the checks against false robustness: worst case per sample, no weaker
than its members, not fooled by a model whose gradient is zero, transfer matrices."""

from __future__ import annotations

import pytest

from attack_models import QuantizedModel, train_digits_mlp
from robustlab.attacks import APGD, APGDT, BIM, PGD, AutoAttack, Square, Transfer
from robustlab.evaluate.transfer import transfer_matrix


def robust_accuracy(model, x, y, result) -> float:
    return float((model.predict(result.x_adv) == y).float().mean())


def test_apgd_is_never_weaker_than_pgd_at_the_same_budget(attack_mlp):
    model, x, y = attack_mlp
    x, y = x[:200], y[:200]
    for eps in (0.05, 0.1):
        pgd = PGD(eps, steps=20)(model, x, y)
        apgd = APGD(eps, steps=20)(model, x, y)
        assert robust_accuracy(model, x, y, apgd) <= robust_accuracy(model, x, y, pgd)


def test_ensemble_is_the_worst_case_of_its_members(attack_mlp):
    model, x, y = attack_mlp
    x, y = x[:120], y[:120]
    eps = 0.08
    ens = AutoAttack(eps, steps=20, n_targets=3, queries=200)
    r = ens(model, x, y)
    members = ens.members()
    results = [m(model, x, y) for m in members]
    # the first member runs on the same points with the same seed: its wins are kept exactly
    assert bool((r.success | ~results[0].success).all())
    for m in results:
        assert robust_accuracy(model, x, y, r) <= robust_accuracy(model, x, y, m)
    # each success is credited to the member that found it, and only standing points were attacked
    member = r.extras["member"]  # NaN where the clean input was already wrong (not attacked)
    attacked = model.predict(x) == y
    assert bool((member[attacked & r.success] >= 0).all())
    assert bool((member[attacked & ~r.success] == -1).all())
    assert bool(member[~attacked].isnan().all())


def test_quantized_model_does_not_look_robust_to_the_ensemble(attack_mlp):
    """Zero input gradient almost everywhere: gradient attacks fail, the ensemble must not."""
    model, x, y = attack_mlp
    quant = QuantizedModel(model, levels=3).eval()
    x, y = x[:100], y[:100]
    keep = quant.predict(x) == y
    x, y = x[keep], y[keep]
    eps = 0.15
    apgd = robust_accuracy(quant, x, y, APGD(eps, steps=20)(quant, x, y))
    apgd_t = robust_accuracy(quant, x, y, APGDT(eps, steps=10, n_targets=2)(quant, x, y))
    ens = robust_accuracy(quant, x, y, AutoAttack(eps, steps=20, n_targets=2, queries=400)(quant, x, y))
    square = robust_accuracy(quant, x, y, Square(eps, queries=400)(quant, x, y))
    crafted = Transfer(eps, source=model, attack_params={"steps": 20})(quant, x, y)
    transfer = robust_accuracy(quant, x, y, crafted)
    assert apgd > 0.8 and apgd_t > 0.8  # the gradient attacks are masked
    assert ens <= apgd - 0.2  # Square sees through it
    assert ens <= square + 0.05  # Square inside the ensemble only sees what APGD left: other draws
    assert transfer < apgd  # crafting on the unquantized twin transfers too


@pytest.fixture(scope="module")
def second_model():
    model, _, _ = train_digits_mlp(hidden=(32,), steps=200, seed=1)
    return model


def test_transfer_matrix(attack_mlp, second_model):
    model, x, y = attack_mlp
    x, y = x[:80], y[:80]
    attack = BIM(0.1, steps=10)  # deterministic: crafting on a subset changes nothing
    m = transfer_matrix({"a": model, "b": second_model}, x, y, attack)
    assert m.sources == ["a", "b"] and m.targets == ["a", "b"]
    white_a = robust_accuracy(model, x, y, attack(model, x, y))
    assert m.accuracy[0][0] == pytest.approx(white_a)
    # white-box is at least as strong as transfer on each target
    assert m.accuracy[0][0] <= m.accuracy[1][0] and m.accuracy[1][1] <= m.accuracy[0][1]
    # the Transfer attack gives the off-diagonal cell
    t = Transfer(0.1, source=second_model, attack="bim", attack_params={"steps": 10})(model, x, y)
    assert robust_accuracy(model, x, y, t) == pytest.approx(m.accuracy[1][0])
