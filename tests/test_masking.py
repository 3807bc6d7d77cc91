"""Gradient-masking checks: each rule fires on the symptom it names and stays quiet otherwise."""

from __future__ import annotations

import torch

from robustlab.core.contract import RobustModel
from robustlab.evaluate import check_probe, check_rows, gradient_probe


def row(attack, eps, acc, model="m"):
    return {"model": model, "defense": "none", "attack": attack, "eps": eps, "robust_accuracy": acc}


def raised(flags):
    return {f.check for f in flags if f.raised}


def test_healthy_rows_raise_nothing():
    rows = [
        row("fgsm", 0.1, 0.5),
        row("pgd(steps=40)", 0.1, 0.3),
        row("fgsm", 0.5, 0.2),
        row("pgd(steps=40)", 0.5, 0.05),
        row("square", 0.1, 0.4),
    ]
    flags = check_rows(rows, {"m": 10})
    assert raised(flags) == set()
    assert {f.check for f in flags} >= {
        "single-step stronger than iterative",
        "robustness rises with eps",
        "accuracy does not reach chance at a huge budget",
        "black-box stronger than white-box",
    }


def test_each_symptom_is_flagged():
    rows = [
        row("fgsm", 0.1, 0.2),
        row("pgd(steps=40)", 0.1, 0.6),  # single step beats iterative
        row("square", 0.2, 0.1),
        row("pgd(steps=40)", 0.2, 0.7),  # black box beats white box; rises
        row("pgd(steps=40)", 0.5, 0.65),
    ]  # far above chance at eps 0.5
    assert raised(check_rows(rows, {"m": 10})) == {
        "single-step stronger than iterative",
        "black-box stronger than white-box",
        "robustness rises with eps",
        "accuracy does not reach chance at a huge budget",
    }


class Quantized(RobustModel):
    """Rounds its input to 4 levels before a linear layer: zero input gradient almost everywhere."""

    def __init__(self) -> None:
        super().__init__(10, (1, 8, 8))
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(64, 10)

    def embed(self, x):
        return (torch.round(x * 3) / 3).flatten(1)

    def forward(self, x):
        return self.linear(self.embed(x))


def test_probe_flags_zero_gradients_but_not_a_normal_model(digits_mlp, attack_batch):
    x, y = attack_batch
    bad = gradient_probe(Quantized().eval(), x, y)
    assert bad["zero_fraction"] == 1.0
    assert raised(check_probe("q", bad)) == {
        "zero or non-finite gradients",
        "gradients no better than random directions",
    }
    good = gradient_probe(digits_mlp, x, y)
    assert good["zero_fraction"] == 0.0 and good["uninformative_fraction"] < 0.2
    assert raised(check_probe("m", good)) == set()


class Scaled(RobustModel):
    """A trained model's logits times `scale`: the same decisions, a float32 softmax saturated to
    one-hot on confident samples (what ArcFace's scale-64 cosines do)."""

    def __init__(self, base, scale: float) -> None:
        super().__init__(base.num_classes, base.input_shape)
        self.base, self.scale = base, scale

    def embed(self, x):
        return self.base.embed(x)

    def forward(self, x):
        return self.scale * self.base(x)


class Shattered(RobustModel):
    """A trained model plus a tiny, class-dependent, very high-frequency ripple: the decisions
    barely move, but the input gradient is dominated by the ripple (shattered gradients)."""

    def __init__(self, base) -> None:
        super().__init__(base.num_classes, base.input_shape)
        self.base = base
        g = torch.Generator().manual_seed(0)
        self.register_buffer("r", torch.randn(base.num_classes, 64, generator=g))

    def embed(self, x):
        return self.base.embed(x)

    def forward(self, x):
        return self.base(x) + 0.05 * torch.sin(1e4 * x.flatten(1) @ self.r.T)


def test_saturated_logits_no_longer_raise_a_false_alarm(digits_mlp, attack_batch):
    """Cross-entropy saturates on huge logits (both the gradient step and random steps gain 0 in
    float32), so a CE probe calls good gradients uninformative; the margin probe does not."""
    x, y = attack_batch
    model = Scaled(digits_mlp, 200.0).eval()
    assert torch.equal(model.predict(x), digits_mlp.predict(x))
    ce = gradient_probe(model, x, y, loss="ce")
    assert ce["uninformative_fraction"] > 0.5  # the false alarm the old probe raised
    probe = gradient_probe(model, x, y)  # default: margin
    assert probe["loss"] == "margin" and probe["uninformative_fraction"] < 0.1
    assert raised(check_probe("arc", probe)) == set()


def test_real_masking_still_fires(digits_mlp, attack_batch):
    x, y = attack_batch
    shattered = Shattered(digits_mlp).eval()
    probe = gradient_probe(shattered, x, y)
    assert probe["zero_fraction"] == 0.0 and probe["uninformative_fraction"] > 0.5
    assert raised(check_probe("s", probe)) == {"gradients no better than random directions"}
    assert raised(check_probe("q", gradient_probe(Quantized().eval(), x, y))) == {
        "zero or non-finite gradients", "gradients no better than random directions"}


def test_norms_are_never_compared_across():
    """Linf FGSM against L2 PGD at the same eps is no evidence of masking (the old rules guessed
    the norm from the label and raised here); the same pair in one norm still is."""
    rows = [
        {**row("fgsm", 0.3, 0.2), "kind": "single-step", "norm": "linf"},
        {**row("pgd(norm=l2)", 0.3, 0.8), "kind": "iterative", "norm": "l2"},
    ]
    assert raised(check_rows(rows, {"m": 10})) == set()
    rows.append({**row("pgd", 0.3, 0.6), "kind": "iterative", "norm": "linf"})
    assert "single-step stronger than iterative" in raised(check_rows(rows, {"m": 10}))


def test_ensemble_members_count():
    """An ensemble counts as iterative against a single-step attack, and its black-box member
    fooling samples its white-box members could not is black-box beating white-box."""
    members = [{"label": "apgd", "kind": "iterative", "count": 30}, {"label": "apgd-t", "kind": "iterative",
                                                                     "count": 2},
               {"label": "square", "kind": "black-box", "count": 0}]
    ens = {**row("autoattack", 0.1, 0.5), "kind": "ensemble", "member_kinds": ["black-box", "iterative"],
           "norm": "linf", "n": 100, "member_success": members}
    fgsm = {**row("fgsm", 0.1, 0.3), "kind": "single-step", "norm": "linf"}
    flags = {f.check: f for f in check_rows([ens, fgsm], {"m": 10})}
    assert flags["single-step stronger than iterative"].raised
    assert not flags["black-box stronger than white-box"].raised
    members[2]["count"] = 7  # Square fooled 7 of 100 that APGD left standing
    flags = {f.check: f for f in check_rows([{**ens, "member_success": members}], {"m": 10})}
    assert flags["black-box stronger than white-box"].raised and "square fooled 7" in \
        flags["black-box stronger than white-box"].message


def test_checks_are_three_state_and_the_verdict_counts_only_those_that_ran():
    """No eps >= 0.5 and no black-box attack: those two checks are "not run" (with why), never
    counted as passed; the verdict counts the checks that ran and names the others."""
    from robustlab.evaluate.masking import masking_verdicts

    rows = [row("fgsm", 0.1, 0.5), row("pgd(steps=40)", 0.1, 0.3), row("pgd(steps=40)", 0.2, 0.1)]
    flags = check_rows(rows, {"m": 10})
    status = {f.check: f.status for f in flags}
    assert status == {
        "single-step stronger than iterative": "passed",
        "robustness rises with eps": "passed",
        "black-box stronger than white-box": "not run",
        "accuracy does not reach chance at a huge budget": "not run",
    }
    assert not any(f.raised for f in flags if f.status == "not run")
    probe = {"zero_fraction": 0.0, "nonfinite_fraction": 0.0, "uninformative_fraction": 0.1}
    verdict = masking_verdicts([f.to_dict() for f in flags + check_probe("m", probe)])["m"]
    assert verdict["checks"] == 4 and verdict["passed"] == 4 and verdict["raised"] == []
    assert set(verdict["not_run"]) == {"black-box stronger than white-box",
                                       "accuracy does not reach chance at a huge budget"}
    assert verdict["verdict"].startswith("No sign of gradient masking in 4 checks that ran.")
    assert "2 not run" in verdict["verdict"] and "add an eps >= 0.5" in verdict["verdict"]


def test_a_bpda_defense_verdict_does_not_ask_for_the_adaptive_attack_it_already_ran():
    from robustlab.evaluate.masking import masking_verdicts

    probe = {"zero_fraction": 0.0, "nonfinite_fraction": 0.0, "uninformative_fraction": 0.1,
             "gradient_path": "bpda", "true_zero_fraction": 1.0, "true_nonfinite_fraction": 0.0,
             "true_uninformative_fraction": 1.0}
    verdict = masking_verdicts([f.to_dict() for f in check_probe("m [squeeze]", probe)])["m [squeeze]"]
    assert verdict["raised"] == ["defense masks its true gradients"] and verdict["adaptive"]
    assert "confirm it with adaptive" not in verdict["verdict"] and "adaptive (BPDA) path" in verdict["verdict"]


def _cell(model, defense, attack, eps, acc, kind="iterative"):
    return {"model": model, "defense": defense, "samples": "s", "norm": "linf", "attack": attack, "eps": eps,
            "robust_accuracy": acc, "kind": kind, "clean_accuracy": 0.9, "n": 100}


def test_a_single_attack_above_the_bases_ensemble_is_raised():
    """The issue's distilled model: PGD-20 alone leaves 65.0%, the undefended base 41.7% under the
    ensemble; the check raises (and passes once the ensemble also runs on the defended model)."""
    from robustlab.evaluate.masking import check_against_base

    defended = [{"model": "d", "defense": "distillation", "name": "d", "base": "b", "base_name": "b"}]
    base = [_cell("b", "none", "autoattack", 0.1, 0.417, "ensemble")]
    single = [_cell("d", "distillation", "pgd(steps=20)", 0.1, 0.650)]
    (flag,) = check_against_base(base + single, defended)
    assert flag.status == "raised" and "65.0%" in flag.message and "41.7%" in flag.message
    ensemble = single + [_cell("d", "distillation", "autoattack", 0.1, 0.383, "ensemble"),
                         _cell("d", "distillation", "worst-case", 0.1, 0.383, "worst-case")]
    assert check_against_base(base + ensemble, defended)[0].status == "passed"
    assert check_against_base(single, defended)[0].status == "not run"  # no base rows in the run


def test_the_threat_model_says_when_no_ensemble_member_ran():
    from robustlab.report.headline import headline_rows, threat_model

    single = [_cell("m", "none", "pgd(steps=20)", e, a) for e, a in ((0, 0.9), (0.1, 0.65))]
    t = threat_model(single, headline_rows(single, {}))
    assert t["protocol"] == "single attacks" and t["norms"] == ["linf"] and t["eps"] == [0.1]
    assert "Upper bounds from single attacks (pgd(steps=20)), not the ensemble" in t["single_attack_text"]
    both = single + [_cell("m", "none", "autoattack", 0.1, 0.4, "ensemble")]
    t = threat_model(both, headline_rows(both, {}))
    assert t["protocol"] == "full ensemble" and "single_attack_text" not in t
