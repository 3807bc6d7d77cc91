"""The self-tests of an evaluation's attacks: the binarization test and the indicators of failure.

Calibration on known cases (thresholds, 20-30 samples each):
- a correct attack finds the planted adversarial on (almost) every feasible sample: it exists
  by construction inside the ball, while random points on the eps sphere hit it on ~2% only,
  so a pass rate of >= 0.9 cannot come from luck (P(>= 18 of 20 | p = 0.1) < 1e-15);
- a broken attack (tiny step, zero gradients through a masking trap) passes on <= 20%, and its
  interval lies wholly below the correct attack's;
- the indicator that matches each failure is raised on most samples the attack left standing.
"""

from __future__ import annotations

import pytest
import torch

from attack_models import LinearModel
from robustlab.attacks.registry import make_attack
from robustlab.attacks.trace import tracing
from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.norms import distance
from robustlab.selftest import BinarizationConfig, binarization_test
from robustlab.selftest.binarization import binarize, boundary_point, inner_points
from robustlab.selftest.indicators import _restarts_apart, _still_rising, attack_indicators, indicator_summary

EPS = 0.1
ENSEMBLE = {"steps": 20, "n_targets": 1, "queries": 300}  # reduced strength, CPU-fast


class Trap(RobustModel):
    """`base` behind a masking trap in its feature path (where a defense's preprocessing sits):
    ``quantized`` (round to 4 levels, true gradient zero), ``straight-through`` (the same with
    the identity backward: BPDA), ``detached`` (the input's graph is cut), ``saturated``
    (logits x 1000, a float32 softmax saturated to one-hot), ``softmax`` (its scores are the
    probabilities, so CE sees the log of a softmax of probabilities in [0, 1]; the decision is
    still the argmax), ``noise`` (x + N(0, 0.15^2), fresh at every forward)."""

    def __init__(self, base: RobustModel, kind: str) -> None:
        super().__init__(base.num_classes, base.input_shape)
        self.base, self.kind = base, kind

    @property
    def randomized(self) -> bool:
        return self.kind == "noise"

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "quantized":
            return torch.round(x * 3) / 3
        if self.kind == "straight-through":
            return x + (torch.round(x * 3) / 3 - x).detach()
        if self.kind == "detached":
            return x.detach() + 0 * x
        if self.kind == "noise":
            return (x + 0.15 * torch.randn_like(x)).clamp(0, 1)
        return x

    def embed(self, x):
        return self.base.embed(self._pre(x))

    def forward(self, x):
        z = self.base(self._pre(x))
        if self.kind == "softmax":
            return z.softmax(dim=1)
        return 1000 * z if self.kind == "saturated" else z


@pytest.fixture(scope="module")
def batch(digits):
    return digits.x_test[:30].clone(), digits.y_test[:30].clone()


def _test(model, x, name, **params):
    return binarization_test(model, x, make_attack(name, eps=EPS, **params)).summary


# ------------------------------------------------------------------ construction
def test_points_lie_where_the_paper_puts_them(batch):
    x = batch[0][3]
    g = torch.Generator().manual_seed(0)
    for norm in ("linf", "l2"):
        eps = EPS if norm == "linf" else 1.0
        inner = inner_points(x, norm, 0.95 * eps, 200, g)
        assert float(distance(inner, x.expand_as(inner), norm).max()) <= 0.95 * eps + 1e-6
        assert inner.min() >= 0 and inner.max() <= 1
        outer = boundary_point(x, norm, eps, g)
        assert float(distance(outer[None], x[None], norm)) == pytest.approx(eps, rel=1e-4)


def test_binarized_model_plants_an_adversarial_inside_the_ball(digits_mlp, batch):
    x = batch[0][0]
    g = torch.Generator().manual_seed(0)
    model, reason = binarize(digits_mlp, x, "linf", EPS, BinarizationConfig(), g)
    assert reason == "" and model is not None and model.num_classes == 2
    assert int(model.predict(x[None])) == 0
    # the readout on the embedding is the model's decision: scores (-z, z), z = w.f + b
    f = digits_mlp.embed(x[None])
    z = float(model.logit(f.detach())) * model.scale
    assert torch.allclose(model(x[None]), torch.tensor([[-z, z]]), atol=1e-4)
    # the (model's own) score range is kept: saturated scores stay saturated
    own = digits_mlp(inner_points(x, "linf", EPS, 50, g))
    assert model.scale > 0 and float(own.detach().max() - own.detach().min()) > 1


def test_features_that_do_not_depend_on_x_are_infeasible_and_counted(batch):
    class Constant(RobustModel):
        def __init__(self):
            super().__init__(10, (1, 8, 8))
            self.w = torch.nn.Parameter(torch.zeros(()))

        def embed(self, x):
            return torch.ones(len(x), 16) + 0 * self.w + 0 * x.flatten(1)[:, :1]

        def forward(self, x):
            return self.embed(x)[:, :10]

    s = binarization_test(Constant().eval(), batch[0][:5], make_attack("pgd", eps=EPS, steps=5))
    assert (s.summary.feasible, s.summary.infeasible, s.summary.passed) == (0, 5, 0)
    assert "no sample could be binarized" in s.summary.sentence()


def test_minimum_norm_attacks_and_zero_eps_are_refused(digits_mlp, batch):
    with pytest.raises(ConfigError):
        binarization_test(digits_mlp, batch[0][:2], make_attack("deepfool"))
    with pytest.raises(ConfigError):
        binarization_test(digits_mlp, batch[0][:2], make_attack("pgd", eps=0.0))


# ------------------------------------------------------------------ calibration
def test_ensemble_and_pgd_pass_a_softmax_model_a_tiny_step_fails(digits_mlp, batch):
    x = batch[0][:20]
    ensemble = _test(digits_mlp, x, "autoattack", **ENSEMBLE)
    pgd = _test(digits_mlp, x, "pgd", steps=20)
    tiny = _test(digits_mlp, x, "pgd", steps=20, step_size=1e-4)
    assert ensemble.feasible >= 18 and ensemble.rate >= 0.9, ensemble
    assert pgd.rate >= 0.9, pgd
    assert ensemble.random_rate < 0.1  # the planted adversarial is not found by chance
    assert tiny.rate <= 0.2 and tiny.high < ensemble.low, (tiny, ensemble)


def test_masking_traps_make_pgd_and_fgsm_fail_and_the_ensemble_or_bpda_pass(digits_mlp, batch):
    x = batch[0][:12]
    for kind in ("quantized", "detached", "saturated"):
        trap = Trap(digits_mlp, kind).eval()
        pgd, fgsm = _test(trap, x, "pgd", steps=20), _test(trap, x, "fgsm")
        ensemble = _test(trap, x, "autoattack", **ENSEMBLE)  # Square needs no gradient
        assert pgd.feasible >= 10 and pgd.rate <= 0.2 and fgsm.rate <= 0.2, (kind, pgd, fgsm)
        assert ensemble.rate >= 0.9 and pgd.high < ensemble.low, (kind, ensemble)
    bpda = _test(Trap(digits_mlp, "straight-through").eval(), x, "pgd", steps=20)
    assert bpda.rate >= 0.9, bpda


def test_on_a_randomized_model_the_ensemble_with_eot_finds_the_adversarial_planted_in_expectation(digits_mlp, batch):
    """Noise (sigma 0.15 > eps 0.1) flips single draws: the readout is fitted on features averaged
    over draws and every decision is the one from the scores averaged over 128 draws. Most
    samples are then feasible (measured 18/30, 21/30 before a failing rule gave 2/20); the
    reduced ensemble with EOT finds the planted adversarial (measured 17/18), PGD on single draws
    does not (6/21: its steps follow one draw's gradient) and the two intervals are disjoint.
    PGD with eot=10 lies between (11/20): it stops at the first point its 10-draw mean calls
    adversarial, which fresh draws often put back on the clean side (eot=30: 12/13)."""
    x = batch[0]
    trap = Trap(digits_mlp, "noise").eval()
    torch.manual_seed(0)
    one_draw = _test(trap, x, "pgd", steps=20)
    torch.manual_seed(0)
    ensemble = _test(trap, x, "autoattack", eot=10, **ENSEMBLE)
    assert one_draw.feasible >= 15 and ensemble.feasible >= 15, (one_draw, ensemble)
    assert ensemble.rate >= 0.8 and one_draw.rate <= 0.5 and one_draw.high < ensemble.low, (one_draw, ensemble)


def test_a_softmax_output_is_no_trap_for_sign_steps(digits_mlp, batch, attack_batch):
    """Scores that are probabilities: CE on them has gradients shrunk but not zero, and PGD's
    sign steps ignore their scale. On this model PGD finds what it finds on the logits (the same
    robust count), raises no unavailable gradients and passes the binarization test, as does the
    ensemble (measured 30/30 each): the binarized model keeps only the scores' range (<= 1
    here), not the softmax, so the test could not see a softmax that did mask."""
    trap = Trap(digits_mlp, "softmax").eval()
    xs, ys = attack_batch
    scores = trap(xs).detach()
    assert torch.allclose(scores.sum(dim=1), torch.ones(len(xs)))
    assert torch.equal(trap.predict(xs), digits_mlp.predict(xs))
    pgd = make_attack("pgd", eps=EPS, steps=20)
    torch.manual_seed(0)
    on_trap = pgd(trap, xs, ys)
    torch.manual_seed(0)
    on_logits = pgd(digits_mlp, xs, ys)
    fooled, fooled_logits = int(on_trap.success.sum()), int(on_logits.success.sum())  # measured 62 and 62
    assert abs(fooled - fooled_logits) <= 2, (fooled, fooled_logits)
    flags = attack_indicators(trap, pgd, xs, ys, on_trap)
    assert not bool(flags["unavailable_gradients"].any())
    x = batch[0][:20]
    for s in (_test(trap, x, "pgd", steps=20), _test(trap, x, "autoattack", **ENSEMBLE)):
        assert s.feasible >= 18 and s.rate >= 0.9, s


def test_the_matching_indicators_are_raised(digits_mlp, batch, attack_batch):
    x, y = batch

    def indicators(model, name, **params):
        attack = make_attack(name, eps=EPS, **params)
        with tracing():
            result = attack(model, x, y)
        return indicator_summary(attack_indicators(model, attack, x, y, result), result)

    def share(s, name):
        return s[name]["raised"] / max(s["failed"], 1)

    for kind in ("quantized", "detached", "saturated"):
        s = indicators(Trap(digits_mlp, kind).eval(), "pgd", steps=20)
        assert s["failed"] >= 20 and share(s, "unavailable_gradients") == 1.0, (kind, s)
    tiny = indicators(digits_mlp, "pgd", steps=20, step_size=1e-4)
    assert share(tiny, "incomplete_optimization") >= 0.8, tiny
    # FGSM: on the samples where it failed but PGD succeeds (its failure is demonstrated), the
    # loss still rises beyond its single step
    xs, ys = attack_batch
    fgsm = make_attack("fgsm", eps=EPS)
    r_fgsm = fgsm(digits_mlp, xs, ys)
    flags = attack_indicators(digits_mlp, fgsm, xs, ys, r_fgsm)
    beaten = ~r_fgsm.success & make_attack("pgd", eps=EPS, steps=20)(digits_mlp, xs, ys).success
    assert flags["silent_success"] is None and int(beaten.sum()) >= 3
    assert flags["incomplete_optimization"][beaten].float().mean() >= 0.8, flags
    torch.manual_seed(0)
    noisy = Trap(digits_mlp, "noise").eval()
    one_draw = indicators(noisy, "pgd", steps=20)
    assert share(one_draw, "silent_success") >= 0.3, one_draw
    with_eot = indicators(noisy, "pgd", steps=20, eot=10)
    assert with_eot["silent_success"]["raised"] <= 1, with_eot
    good = indicators(digits_mlp, "pgd", steps=20, restarts=2)
    assert good["failed"] >= 5, good  # a correct attack on a normal model: (almost) nothing raised
    assert good["silent_success"]["raised"] == good["unavailable_gradients"]["raised"] == 0, good
    assert share(good, "incomplete_optimization") <= 0.2 and share(good, "unstable_predictions") <= 0.2, good
    assert good["transfer_failure"] is None


# ------------------------------------------------------------------ indicator rules
def test_still_rising_and_restart_spread_rules():
    steps = torch.arange(20, dtype=torch.float32)
    rising = steps.view(1, 1, 20)  # still climbing at the end
    flat = torch.cat([steps[:10], torch.full((10,), 9.0)]).view(1, 1, 20)  # converged
    frozen = torch.cat([steps[:5], torch.full((15,), float("nan"))]).view(1, 1, 20)  # stopped early
    assert _still_rising(torch.cat([rising, flat, frozen])).tolist() == [True, False, True]
    apart = torch.tensor([[[0.0, 1.0], [0.0, 5.0]]])  # restarts end at 1 and 5
    close = torch.tensor([[[0.0, 5.0], [0.0, 5.1]]])
    once = torch.tensor([[[0.0, 5.0], [float("nan"), float("nan")]]])
    assert _restarts_apart(torch.cat([apart, close, once])).tolist() == [True, False, False]


def test_trace_is_off_by_default_and_records_losses_when_on(digits_mlp, batch):
    x, y = batch
    attack = make_attack("apgd", eps=EPS, steps=10)
    assert "loss_trace" not in attack(digits_mlp, x, y).extras
    with tracing():
        result = attack(digits_mlp, x, y)
    trace = result.extras["loss_trace"]
    assert trace.shape == (len(x), 1, 11)
    live = ~result.success & (digits_mlp.predict(x) == y)
    assert torch.isfinite(trace[live]).all()  # samples never fooled: every step recorded
    targeted = make_attack("apgd-t", eps=EPS, steps=10, n_targets=2)  # its two runs go in one batch
    with tracing():
        result = targeted(digits_mlp, x, y)
    trace = result.extras["loss_trace"]
    assert trace.shape == (len(x), 2, 11)
    live = ~result.success & (digits_mlp.predict(x) == y)
    assert torch.isfinite(trace[live]).all()  # each (sample, run) row in its own place
    assert not torch.equal(trace[live][:, 0], trace[live][:, 1])  # two targets, two curves


def test_a_linear_model_is_passed_by_fgsm(batch):
    """On a linear model the planted region is a half-space in input space, whose highest point
    in the Linf ball is the FGSM corner: FGSM must find it on every feasible sample."""
    torch.manual_seed(0)
    model = LinearModel(torch.randn(10, 64), torch.zeros(10), (1, 8, 8)).eval()
    s = _test(model, batch[0][:10], "fgsm")
    assert s.feasible >= 8 and s.passed == s.feasible, s


@pytest.mark.slow
def test_ensemble_passes_an_adversarially_trained_model(digits, batch):
    """PGD-trained at eps 0.1 (flatter loss around each sample): the planted adversarial is
    still found by the reduced ensemble on >= 90% of the feasible samples."""
    from robustlab.core.runtime import seed_everything
    from robustlab.models import build_model
    from robustlab.train import TrainConfig, train
    from robustlab.train.adversarial import AdvConfig

    seed_everything(0)
    model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
    cfg = TrainConfig(epochs=8, optimizer="adam", lr=0.003, weight_decay=0.0, batch_size=64, seed=0,
                      adv=AdvConfig(method="pgd", eps=EPS, steps=5, guard=0))
    train(model, digits.x_train, digits.y_train, cfg)
    model.eval()
    s = _test(model, batch[0][:20], "autoattack", **ENSEMBLE)
    assert s.feasible >= 15 and s.rate >= 0.9, s


def test_dlr_on_two_classes_is_the_logit_difference():
    """With two classes DLR's ratio is +-1 whatever the scores (no gradient: APGD-T could not move
    on a binarized model); it is then the logit difference."""
    from robustlab.attacks.objectives import dlr

    scores = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    loss = dlr(scores, y, None, 2)
    assert loss.tolist() == [-3.0, 2.5]
    (grad,) = torch.autograd.grad(loss.sum(), scores)
    assert grad.tolist() == [[-1.0, 1.0], [-1.0, 1.0]]
    assert dlr(scores.detach(), y, torch.tensor([1, 1]), 2).tolist() == [-3.0, 2.5]


# ------------------------------------------------------------------ in the evaluation
def test_evaluation_stores_keyed_selftests_and_a_weak_attack_raises_the_verdict(digits_mlp, digits, tmp_path):
    from robustlab.evaluate import AttackSpec, eval_set
    from robustlab.experiment import Evaluation
    from robustlab.store.results import ResultStore

    samples = eval_set(digits, 40, seed=0)
    weak = [AttackSpec("pgd", {"steps": 10, "step_size": 1e-4})]
    result = Evaluation(tmp_path / "a", samples, weak, [0.0, 0.1], self_test=12).run(digits_mlp, "m")
    (test,) = result.selftests  # eps 0 is not tested
    assert test["eps"] == 0.1 and test["n"] == 12 and test["feasible"] >= 10 and test["rate"] <= 0.2
    (flag,) = [f for f in result.masking if "binarization" in f["check"]]
    assert flag["raised"] and "found the planted adversarial on" in flag["message"] and "steps" in flag["message"]
    with ResultStore(tmp_path / "a") as store:
        (row,) = store.rows(kind="selftest")
        assert row.key.samples == samples.digest and row.key.eps == 0.1 and len(row.per_sample["found"]) == 12
    from robustlab.report import write_report

    write_report(tmp_path / "a")
    report = (tmp_path / "a" / "report.md").read_text()
    assert "## Attack self-tests" in report and test["sentence"] in report
    # a rerun reads the row back; a strong attack passes; --no-self-test stores none
    again = Evaluation(tmp_path / "a", samples, weak, [0.0, 0.1], self_test=12).run(digits_mlp, "m")
    assert again.selftests == result.selftests
    strong = Evaluation(tmp_path / "b", samples, [AttackSpec("pgd", {"steps": 10})], [0.1], self_test=12)
    passed = strong.run(digits_mlp, "m")
    assert passed.selftests[0]["rate"] >= 0.9
    assert not [f for f in passed.masking if "binarization" in f["check"]][0]["raised"]
    off = Evaluation(tmp_path / "c", samples, weak, [0.1], self_test=0).run(digits_mlp, "m")
    assert off.selftests == [] and not [f for f in off.masking if "binarization" in f["check"]]


def test_grid_cells_carry_the_indicators_and_they_feed_the_masking_verdict(digits_mlp, digits, tmp_path):
    from robustlab.evaluate import AttackSpec, eval_set
    from robustlab.experiment import Evaluation
    from robustlab.report import write_report

    samples = eval_set(digits, 40, seed=0)
    pgd = [AttackSpec("pgd")]  # 40 steps
    trap = Evaluation(tmp_path / "q", samples, pgd, [0.0, 0.1], self_test=0).run(Trap(digits_mlp, "quantized"), "q")
    (cell,) = [r for r in trap.rows if r["eps"] == 0.1 and r["attack"] != "worst-case"]
    ind = cell["indicators"]
    assert ind["failed"] >= 20 and ind["unavailable_gradients"]["raised"] == ind["failed"]
    assert all("indicators" not in r for r in trap.rows if r["eps"] == 0.0)  # eps 0: nothing to indicate
    (flag,) = [f for f in trap.masking if f["check"] == "indicators of attack failure"]
    assert flag["raised"] and "BPDA" in flag["message"]
    good = Evaluation(tmp_path / "m", samples, pgd, [0.1], self_test=0).run(digits_mlp, "m")
    (flag,) = [f for f in good.masking if f["check"] == "indicators of attack failure"]
    assert not flag["raised"], flag
    write_report(tmp_path / "q")
    assert "Indicators of attack failure" in (tmp_path / "q" / "report.md").read_text()


def test_a_too_small_step_raises_the_incomplete_optimization_verdict(digits_mlp, digits, tmp_path):
    from robustlab.evaluate import AttackSpec, eval_set
    from robustlab.experiment import Evaluation

    samples = eval_set(digits, 40, seed=0)
    tiny = [AttackSpec("pgd", {"steps": 20, "step_size": 1e-4})]
    result = Evaluation(tmp_path / "t", samples, tiny, [0.1], self_test=0).run(digits_mlp, "m")
    (flag,) = [f for f in result.masking if f["check"] == "indicators of attack failure"]
    assert flag["raised"] and "incomplete optimization" in flag["message"] and "more steps" in flag["message"]


def test_an_attack_beaten_at_its_budget_does_not_raise_the_indicator_verdict(digits_mlp, digits, tmp_path):
    """The tiny-step PGD's incomplete optimization raises the verdict alone; beside a full PGD
    that goes lower at the same eps, the worst case no longer rests on it, so it does not."""
    from robustlab.evaluate import AttackSpec, eval_set
    from robustlab.experiment import Evaluation

    samples = eval_set(digits, 40, seed=0)
    tiny = AttackSpec("pgd", {"steps": 20, "step_size": 1e-4})
    result = Evaluation(tmp_path / "t", samples, [tiny, AttackSpec("pgd")], [0.1], self_test=0).run(digits_mlp, "m")
    cells = {r["attack"]: r for r in result.rows if r["attack"] != "worst-case"}
    assert len(cells) == 2 and min(c["robust_accuracy"] for c in cells.values()) < max(
        c["robust_accuracy"] for c in cells.values())
    (flag,) = [f for f in result.masking if f["check"] == "indicators of attack failure"]
    assert not flag["raised"], flag


def test_metric_heads_wrapped_modules_and_rejecting_models_are_binarized(digits_mlp, digits, batch):
    """The readout goes on each model's `embed`: a nearest-class-mean decision (not a function of
    its scores), a user module wrapped with a named feature layer, and a model with a reject
    column, whose refusals the binarized model keeps. PGD passes each (>= 90% of >= 10)."""
    from torch import nn

    from attack_models import FeatureDecisionModel, RejectingModel
    from robustlab import wrap

    x = batch[0][:12]
    metric = FeatureDecisionModel(digits_mlp, digits.x_train, digits.y_train).eval()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(200):
        loss = nn.functional.cross_entropy(net(digits.x_train), digits.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    wrapped = wrap(net, num_classes=10, input_shape=(1, 8, 8), features="2")
    rejecting = RejectingModel(digits_mlp, threshold=0.6).eval()
    for model in (metric, wrapped, rejecting):
        s = _test(model, x, "pgd", steps=20)
        assert s.feasible >= 10 and s.rate >= 0.9, (type(model).__name__, s)
    g = torch.Generator().manual_seed(0)
    binarized, _ = binarize(rejecting, x[0], "linf", EPS, BinarizationConfig(), g)
    assert binarized is not None and binarized.can_reject
    noise = torch.rand(64, 1, 8, 8, generator=g)  # unsure inputs: some refused, some not
    refused = rejecting.predict(noise) == -1
    assert 0 < int(refused.sum()) < 64 and torch.equal(binarized.predict(noise) == -1, refused)
