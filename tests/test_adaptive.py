"""Adaptive evaluation of defenses: BPDA through non-differentiable steps, EOT over random draws,
whole-pipeline losses (a detection is no success), masking checks that see the true gradients."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from attack_models import NoisyModel
from robustlab.attacks import PGD
from robustlab.attacks.eot import EOT, is_randomized
from robustlab.attacks.objectives import get_attack_loss
from robustlab.core.contract import REJECT, RobustModel
from robustlab.defenses import SqueezeDetector, SqueezedModel, true_gradients
from robustlab.evaluate import AttackSpec, evaluate_grid, masking_flags, record_probe, summarize
from robustlab.store.results import ResultStore


@pytest.fixture(scope="module")
def binarized(digits_mlp):
    """The digits MLP behind 1-bit squeezing: a defense that only masks gradients."""
    return SqueezedModel(digits_mlp, ["bits:1"]).eval()


def _robust(model, x, y, **kw) -> float:
    r = PGD(eps=kw.pop("eps", 0.3), steps=kw.pop("steps", 20), **kw)(model, x, y)
    return float((r.prediction == y).float().mean())


def test_bpda_gradient_nonzero_where_true_gradient_is_zero(binarized, digits):
    x = digits.x_test[:16].clone().requires_grad_(True)
    y = digits.y_test[:16]
    (g_bpda,) = torch.autograd.grad(F.cross_entropy(binarized(x), y), x)
    with true_gradients(binarized):
        out = binarized(x)
        (g_true,) = torch.autograd.grad(F.cross_entropy(out, y), x, allow_unused=True)
    assert g_true is None or float(g_true.abs().max()) == 0.0
    assert bool((g_bpda.flatten(1).norm(dim=1) > 0).all())
    assert binarized.bpda  # the context restores the adaptive path


def test_masking_defense_plain_pgd_robust_adaptive_not(binarized, digits, tmp_path):
    x, y = digits.x_test[:150], digits.y_test[:150]
    with true_gradients(binarized):
        plain = _robust(binarized, x, y)
    adaptive = _robust(binarized, x, y)
    assert plain >= 0.5, plain  # the true gradient is zero: PGD cannot move
    assert adaptive <= plain - 0.35, (plain, adaptive)
    # robustlab's evaluation runs the adaptive path and its checks name the masking
    with ResultStore(tmp_path / "run") as store:
        record_probe(store, "m", binarized, x, y)
        evaluate_grid(binarized, "m", x, y, [AttackSpec("pgd", {"steps": 20})], [0.3], store,
                      defense="squeeze(bits:1)")
        row = [r for r in summarize(store) if r["attack"].startswith("pgd")][0]
        flags = {f["check"]: f for f in masking_flags(store)}
    assert row["robust_accuracy"] == pytest.approx(adaptive, abs=0.05)
    masked = flags["defense masks its true gradients"]
    assert masked["raised"] and "bpda" in masked["message"]


def test_eot_reports_a_noisy_model_less_robust_than_one_draw(digits_mlp, digits):
    torch.manual_seed(0)
    noisy = NoisyModel(digits_mlp, 0.25).eval()
    x, y = digits.x_test[:200], digits.y_test[:200]
    assert is_randomized(noisy, x[:8]) and not is_randomized(digits_mlp, x[:8])
    one_draw = _robust(noisy, x, y, eps=0.1, steps=10)
    with_eot = _robust(noisy, x, y, eps=0.1, steps=10, eot=10)
    assert with_eot < one_draw - 0.05, (one_draw, with_eot)


def test_eot_verdict_any_draw_fooled_counts():
    """A model right on each draw with probability 1/2: one draw calls ~half robust, EOT's
    verdict over 10 draws (a success when any draw is fooled) calls almost none robust."""

    class Coin(RobustModel):
        def __init__(self):
            super().__init__(2, (1, 2, 2))
            self.w = torch.nn.Parameter(torch.zeros(()))

        def embed(self, x):
            return x.flatten(1)

        def forward(self, x):
            flip = torch.rand(len(x)) < 0.5
            return torch.stack([flip.float(), (~flip).float()], dim=1) + 0 * self.w

    torch.manual_seed(1)
    x, y = torch.rand(400, 1, 2, 2), torch.zeros(400, dtype=torch.long)
    one = PGD(eps=0.0)(Coin().eval(), x, y)
    eot = PGD(eps=0.0, eot=10)(Coin().eval(), x, y)
    assert 0.4 < float(one.success.float().mean()) < 0.6
    assert float(eot.success.float().mean()) > 0.98


def test_evaluation_turns_eot_on_for_a_randomized_model(digits_mlp, digits, tmp_path):
    noisy = NoisyModel(digits_mlp, 0.2).eval()
    x, y = digits.x_test[:40], digits.y_test[:40]
    with ResultStore(tmp_path / "run") as store:
        keys = evaluate_grid(noisy, "noisy", x, y, [AttackSpec("fgsm")], [0.05], store)
    assert '"eot":10' in keys[0].attack.replace(" ", "")


def test_pipeline_losses_treat_the_reject_column_as_a_competitor():
    # class 1 beats the true class 0, but the detector's column (index 3) beats both
    scores = torch.tensor([[1.0, 2.0, 0.0, 3.0]])
    y, t = torch.tensor([0]), torch.tensor([1])
    for name in ("margin", "dlr", "ce"):
        fn = get_attack_loss(name)
        detected = fn(scores, y, None, 3)
        undetected = fn(scores[:, :3], y, None, 3)
        assert detected < undetected, name  # the attacker is further from success when detected
    margin = get_attack_loss("margin")
    assert float(margin(scores, y, None, 3)) == pytest.approx(2.0 - 3.0)
    assert float(margin(scores, y, t, 3)) == pytest.approx(2.0 - 3.0)
    assert float(margin(scores[:, :3], y, None, 3)) == pytest.approx(2.0 - 1.0)


def test_whole_pipeline_attack_on_the_squeeze_detector(digits_mlp, digits):
    det = SqueezeDetector(digits_mlp, ["bits:2", "median:2"]).eval()
    det.fit_threshold(digits.x_train[:300], 0.05)
    x, y = digits.x_test[:120], digits.y_test[:120]
    r = PGD(eps=0.2, steps=30, loss="margin")(det, x, y)
    pred = det.predict(r.x_adv)
    assert not bool((r.success & (pred == REJECT)).any())  # a detected example is never a success
    assert torch.equal(r.success, (pred != y) & (pred != REJECT))
    assert float(r.success.float().mean()) > 0.5  # the adaptive attack gets through the detector


def test_eot_wraps_once_and_keeps_the_contract(digits_mlp, digits):
    e = EOT(digits_mlp, 3)
    x = digits.x_test[:5]
    assert torch.allclose(e(x), digits_mlp(x), atol=1e-6)  # deterministic model: mean = itself
    assert torch.equal(e.predict(x), digits_mlp.predict(x))


def test_distillation_masks_cross_entropy_not_the_logit_margin(digits_mlp, digits):
    """Distilled at T = 100 and deployed at T = 1, the softmax saturates: PGD on the cross-entropy
    stalls (float32 gradients vanish), PGD on the logit margin does not; the probe sees it."""
    from robustlab.defenses import build_defense
    from robustlab.evaluate import gradient_probe

    distilled = build_defense("distillation", digits_mlp, digits, temperature=100, epochs=15, lr=0.01).model
    x, y = digits.x_test[:150], digits.y_test[:150]
    assert distilled.attack_losses == ("margin", "dlr")
    ce = _robust(distilled, x, y, eps=0.1, steps=20, loss="ce")
    margin = _robust(distilled, x, y, eps=0.1, steps=20, loss="margin")
    assert margin < ce - 0.2, (ce, margin)
    probe = gradient_probe(distilled, x, y, loss="ce")  # the default probe uses the margin (issue 12)
    assert probe["zero_fraction"] + probe["uninformative_fraction"] > 0.3
    margin_probe = gradient_probe(distilled, x, y)
    assert margin_probe["uninformative_fraction"] < probe["zero_fraction"] + probe["uninformative_fraction"]
