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
