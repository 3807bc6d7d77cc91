"""AutoAttack's protocols (standard, plus, rand) against the reference's settings and, where
torchattacks is installed, against the reference's members run with the reference's settings
(torchattacks' port of fra31/auto-attack stands in for the reference, which is not on PyPI);
EOT on randomized models: draws batched, the rand protocol's strength, both verdicts named."""

from __future__ import annotations

import pytest
import torch

from attack_models import CountingModel, NoisyModel, reference_autoattack
from robustlab.attacks import APGD, FAB, FABT, AutoAttack, Square, make_attack
from robustlab.attacks.apgd import APGDT
from robustlab.attacks.base import input_gradient
from robustlab.attacks.eot import DRAW_ROWS, EOT
from robustlab.attacks.objectives import cross_entropy
from robustlab.core.errors import ConfigError
from robustlab.evaluate import AttackSpec, evaluate_grid, summarize
from robustlab.evaluate.runner import DEFAULT_ATTACKS, eot_specs_for_randomized, spec_label
from robustlab.experiment.spec import ExperimentSpec
from robustlab.report.headline import headline_rows, threat_model
from robustlab.store.results import ResultStore


def _settings(attack) -> tuple:
    """(class, loss, steps, restarts, targets, queries, p_init) of a member."""
    return (type(attack).__name__, getattr(attack, "loss", None), getattr(attack, "steps", None),
            getattr(attack, "restarts", None), getattr(attack, "n_targets", None),
            getattr(attack, "queries", None), getattr(attack, "p_init", None))


# The reference (fra31/auto-attack, AutoAttack.set_version and run_standard_evaluation), member by member.
REFERENCE = {
    "standard": [("APGD", "ce", 100, 1, None, None, None), ("APGDT", "dlr", 100, 1, 9, None, None),
                 ("FABT", None, 100, 1, 9, None, None), ("Square", None, None, None, None, 5000, 0.8)],
    "plus": [("APGD", "ce", 100, 5, None, None, None), ("APGD", "dlr", 100, 5, None, None, None),
             ("FAB", None, 100, 5, None, None, None), ("Square", None, None, None, None, 5000, 0.8),
             ("APGDT", "dlr", 100, 1, 9, None, None), ("FABT", None, 100, 1, 9, None, None)],
    "rand": [("APGD", "ce", 100, 1, None, None, None), ("APGD", "dlr", 100, 1, None, None, None)],
}


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("version", sorted(REFERENCE))
def test_each_version_runs_the_reference_members_with_its_settings(version, norm):
    aa = AutoAttack(0.1, norm=norm, version=version)
    members = aa.members()
    assert [_settings(m) for m in members] == REFERENCE[version]
    for m in members:
        assert m.norm == norm and m.eot == 1  # the ensemble wraps the model in EOT once, for all
        if isinstance(m, FAB):
            assert m.eps == 0.1  # FAB's points count only within the budget, as in the reference
    assert aa.eot == (20 if version == "rand" else 1)
    assert version.split("-")[0] in aa.protocol.lower()


def test_the_default_is_robustlab_s_ensemble_and_says_so():
    aa = make_attack("autoattack", eps=0.1)
    assert aa.version == "robustlab" and "not AutoAttack standard" in aa.protocol
    assert [type(m) for m in aa.members()] == [APGD, APGDT, Square]
    assert [type(m) for m in AutoAttack(0.1, version="standard").members()] == [APGD, APGDT, FABT, Square]


def test_the_version_is_part_of_the_spec_key_and_label():
    standard = make_attack("autoattack", eps=0.1, version="standard")
    default = make_attack("autoattack", eps=0.1)
    assert standard.spec()["version"] == "standard" and default.spec()["version"] == "robustlab"
    assert standard.spec() != default.spec()
    assert spec_label({k: v for k, v in standard.spec().items() if k != "eps"}) == "autoattack(version=standard)"
    assert spec_label({k: v for k, v in default.spec().items() if k != "eps"}) == "autoattack"
    rand = make_attack("autoattack", eps=0.1, version="rand").spec()
    assert rand["eot"] == 20 and make_attack("autoattack", eps=0.1, version="rand", eot=5).spec()["eot"] == 5
    with pytest.raises(ConfigError, match="version must be one of robustlab, standard, plus, rand"):
        make_attack("autoattack", eps=0.1, version="fast")
    with pytest.raises(ConfigError):
        make_attack("autoattack", eps=0.1, norm="l1", version="standard")  # robustlab's APGD has no L1


def test_an_experiment_file_selects_a_version():
    doc = {"name": "v", "data": {"name": "digits", "n_eval": 20},
           "models": [{"id": "m", "model": {"backbone": "mlp", "head": "softmax"}}],
           "attacks": [{"name": "autoattack", "version": "rand"}], "eps": [0.1]}
    spec = ExperimentSpec.from_dict(doc)
    assert spec.attacks[0].spec.params["version"] == "rand"
    with pytest.raises(ConfigError, match="version"):
        ExperimentSpec.from_dict({**doc, "attacks": [{"name": "autoattack", "version": "nope"}]})


def test_standard_successes_are_real_and_inside_the_budget(digits_mlp, digits):
    x, y = digits.x_test[:60], digits.y_test[:60]
    for norm, eps in (("linf", 0.08), ("l2", 0.6)):
        r = AutoAttack(eps, norm=norm, version="standard", steps=10, n_targets=3, queries=100)(digits_mlp, x, y)
        assert torch.equal(r.success, digits_mlp.predict(r.x_adv) != y)
        assert float(r.distance.max()) <= eps * (1 + 1e-5)
        assert r.extras["member_queries"].shape[1] == 4


# --------------------------------------------------------------------------- EOT
def test_eot_batches_the_draws_and_square_spends_none(digits_mlp, digits):
    counting = CountingModel(digits_mlp).eval()
    x = digits.x_test[:30]
    calls: list[int] = []
    counting.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    EOT(counting, 20)(x[:12])
    assert calls == [240]  # 20 draws of 12 images: one pass
    calls.clear()
    EOT(counting, 20)(x)
    assert calls == [240, 240, 120] and max(calls) <= DRAW_ROWS  # 600 rows on a CPU: 8, 8 and 4 draws
    calls.clear()
    Square(0.05, queries=40, eot=10)(counting, x, digits.y_test[:30])
    # draws only judging: two mean-score checks of 300 rows (passes of 240 and 60), the verdict's 10 draws
    assert max(calls) == 240 and sum(c > 30 for c in calls) <= 2 * 2 + 10 * 2
    assert sum(c <= 30 for c in calls) >= 39  # each query: one draw


def test_the_eot_gradient_is_the_mean_over_draws_pass_by_pass(digits_mlp, digits):
    # on a deterministic model every draw is the same: the mean over 20 draws, made in passes of at
    # most DRAW_ROWS rows each backpropagated on its own, is the one-draw gradient, scores and loss
    x, y = digits.x_test[:60], digits.y_test[:60]

    def loss(s):
        return cross_entropy(s, y, None, 10)

    assert EOT(digits_mlp, 20).passes(60, x.device) == [4] * 5
    assert EOT(digits_mlp, 20).passes(60, torch.device("meta")) == [20]  # not a CPU: one pass
    grad, scores, per_sample = EOT(digits_mlp, 20).loss_gradient(x, loss)
    ref_grad, ref_scores, ref_loss = input_gradient(digits_mlp, x, loss)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(scores, ref_scores.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_sample, ref_loss.detach(), rtol=1e-5, atol=1e-5)


def test_randomized_models_get_the_rand_protocol_by_default():
    specs = eot_specs_for_randomized([AttackSpec(n) for n in DEFAULT_ATTACKS])
    assert specs[0].params == {"version": "rand"} and specs[1].params == {"eot": 10}
    kept = eot_specs_for_randomized([AttackSpec("autoattack", {"version": "standard"}),
                                     AttackSpec("autoattack", {"version": "rand"})])
    assert kept[0].params == {"version": "standard", "eot": 10} and kept[1].params == {"version": "rand"}


def test_a_randomized_model_reports_the_mean_over_draws_and_the_any_draw_verdict(digits_mlp, digits, tmp_path):
    noisy = NoisyModel(digits_mlp, 0.2).eval()
    x, y = digits.x_test[:40], digits.y_test[:40]
    with ResultStore(tmp_path / "run") as store:
        evaluate_grid(noisy, "noisy", x, y, [AttackSpec("autoattack", {"steps": 10})], [0.1], store)
        rows = [r for r in summarize(store) if r["attack"] != "worst-case"]
    row = rows[0]
    assert row["attack"] == "autoattack(eot=20, steps=10, version=rand)" and row["eot_draws"] == 20
    # the any-draw verdict (robust only if right on every draw) is at most the mean over draws
    assert 0 <= row["robust_accuracy"] <= row["robust_accuracy_mean_over_draws"] <= 1


# --------------------------------------------------------------------------- against the reference
@pytest.mark.peers
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_standard_agrees_with_the_reference_sample_by_sample(digits_mlp, digits, norm, eps):
    pytest.importorskip("torchattacks")
    x, y = digits.x_test[:200], digits.y_test[:200]
    ours = AutoAttack(eps, norm=norm, version="standard")(digits_mlp, x, y)
    ours_robust = digits_mlp.predict(ours.x_adv) == y
    torch.manual_seed(0)
    ref_robust = digits_mlp.predict(reference_autoattack(digits_mlp, "standard", norm, eps)(x, y)) == y
    agreement = float((ours_robust == ref_robust).float().mean())
    gap = abs(float(ours_robust.float().mean()) - float(ref_robust.float().mean()))
    assert 0.05 < float(ref_robust.float().mean()) < 0.95  # a budget where the protocol has work to do
    assert agreement >= 0.98 and gap <= 0.005, (agreement, gap)


@pytest.mark.peers
def test_rand_reaches_the_reference_rand_mean_accuracy_over_draws(digits_mlp, digits):
    pytest.importorskip("torchattacks")
    noisy = NoisyModel(digits_mlp, 0.2).eval()
    x, y = digits.x_test[:100], digits.y_test[:100]
    torch.manual_seed(0)
    ours = AutoAttack(0.1, version="rand")(noisy, x, y)
    torch.manual_seed(0)
    ref = reference_autoattack(noisy, "rand", "linf", 0.1)(x, y)

    def mean_over_draws(x_adv: torch.Tensor) -> float:
        torch.manual_seed(1)
        return float(torch.stack([(noisy.predict(x_adv) == y).float() for _ in range(40)]).mean())

    ours_mean, ref_mean = mean_over_draws(ours.x_adv), mean_over_draws(ref)
    assert ours_mean <= ref_mean + 0.01, (ours_mean, ref_mean)
    assert abs(float(ours.extras["draw_accuracy"].mean()) - ours_mean) < 0.05  # its own estimate, 20 draws


def test_the_report_rows_name_the_protocol(digits_mlp, digits, tmp_path):
    x, y = digits.x_test[:20], digits.y_test[:20]
    with ResultStore(tmp_path / "run") as store:
        evaluate_grid(digits_mlp, "mlp", x, y, [AttackSpec("autoattack", {"steps": 2, "n_targets": 1, "queries": 5}),
                                                 AttackSpec("autoattack", {"steps": 2, "n_targets": 1, "queries": 5,
                                                                           "version": "standard"}),
                                                 AttackSpec("fgsm")], [0.1], store)
        rows = {r["attack"]: r for r in summarize(store)}
        head = threat_model(list(rows.values()), headline_rows(list(rows.values()), {}))
    assert "robustlab ensemble (APGD-CE, APGD-T, Square), not AutoAttack standard" in head["text"]
    assert "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)" in head["text"]
    assert rows["autoattack(n_targets=1, queries=5, steps=2)"]["protocol"] == \
        "robustlab ensemble (APGD-CE, APGD-T, Square), not AutoAttack standard"
    assert rows["autoattack(n_targets=1, queries=5, steps=2, version=standard)"]["protocol"].startswith(
        "AutoAttack standard")
    assert "protocol" not in rows["fgsm"]
