"""Budgets as the field writes them: `parse_eps` ("8/255", "0.1"), `format_eps`, and the CLI and
experiment files that go through them."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from robustlab.cli.app import main
from robustlab.cli.options import parse_pairs
from robustlab.core.errors import ConfigError
from robustlab.core.threat import format_eps, parse_eps
from robustlab.experiment.spec import ExperimentSpec


@pytest.mark.parametrize("text", ["8/255", " 8 / 255 ", "0.1", "1e-3", "0", "2/255", "16/255", "0.5/1"])
def test_parse_eps_matches_exact_fraction(text):
    # reference: the exact rational value of the text, rounded once to a float
    num, _, den = text.replace(" ", "").partition("/")
    exact = Fraction(num) / Fraction(den or "1")
    assert parse_eps(text) == float(exact)


def test_parse_eps_numbers_pass_through():
    assert parse_eps(0.1) == 0.1 and parse_eps(0) == 0.0


@pytest.mark.parametrize("bad, says", [
    ("1/0", "denominator"), ("8/-255", "denominator"), ("a/b", "fraction"), ("8/", "fraction"), ("", "fraction"),
    ("-1/255", ">= 0"), ("-0.1", ">= 0"), ("nan", "finite"), ("inf", "finite"), ("1/inf", "finite"),
    ("1/2/3", "fraction"), (float("nan"), "finite"), (True, "number"), (None, "number"),
])
def test_parse_eps_refuses(bad, says):
    with pytest.raises(ConfigError, match=says):
        parse_eps(bad)


@pytest.mark.parametrize("eps, text", [
    (8 / 255, "8/255"), (2 / 255, "2/255"), (1 / 255, "1/255"), (0.1, "0.1"), (0.2, "0.2"), (0.5, "0.5"),
    (0.0, "0"), (1.0, "1"), (0.03, "0.03"), (None, "min-norm"), (0.031, "0.031"),
])
def test_format_eps(eps, text):
    assert format_eps(eps) == text


def test_format_round_trips_through_parse():
    for k in range(1, 256):
        assert parse_eps(format_eps(k / 255)) == k / 255


def test_parse_pairs_reads_budget_fractions():
    assert parse_pairs(["eps=8/255", "eps_min=2/255", "steps=10", "name=a/b"], "-p") == {
        "eps": 8 / 255, "eps_min": 2 / 255, "steps": 10, "name": "a/b"}
    with pytest.raises(ConfigError, match="denominator"):
        parse_pairs(["eps_min=1/0"], "--adv-arg")


def _spec(tmp_path, eps_text, extra=""):
    path = tmp_path / "exp.yaml"
    path.write_text(f"data: {{name: digits, n_eval: 20}}\nmodels: [{{id: m, model: {{backbone: mlp, head: softmax}}"
                    f"{extra}}}]\nattacks: [fgsm]\neps: {eps_text}\n")
    return ExperimentSpec.from_file(path)


def test_experiment_file_takes_fractions(tmp_path):
    spec = _spec(tmp_path, "[0, 2/255, 8/255]", ", train: {epochs: 1, adv: {method: pgd, eps: 8/255, eps_min: 2/255}}")
    assert spec.eps == (0.0, 2 / 255, 8 / 255)
    assert all(isinstance(e, float) for e in spec.eps)
    adv = spec.models[0].train.adv
    assert adv.eps == 8 / 255 and adv.eps_min == 2 / 255


@pytest.mark.parametrize("bad, says", [("[1/0]", "denominator"), ("[a/b]", "fraction"), ("[-1/255]", ">= 0"),
                                       ("[.nan]", "finite")])
def test_experiment_file_refuses_bad_budgets(tmp_path, bad, says):
    with pytest.raises(ConfigError, match=says):
        _spec(tmp_path, bad)


def test_cli_refuses_bad_eps_in_one_line(tmp_path, capsys):
    for option, value in (("--eps", "1/0"), ("--eps", "a/b"), ("--eps", "nan")):
        code = main(["evaluate", "--model", str(tmp_path), option, value])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--eps" in err, err
    code = main(["train", "--adv", "pgd", "--adv-eps", "-1/255", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--adv-eps" in err and ">= 0" in err, err
    assert not (tmp_path / "c").exists()


def test_cli_eps_fraction_reaches_the_evaluation(tmp_path, capsys, monkeypatch):
    (tmp_path / "net.py").write_text("import torch\ndef make():\n    return torch.nn.Sequential("
                                     "torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    seen = {}

    def fake(name, given, data, specs, grid, **kwargs):  # stop before anything is written
        seen["grid"] = grid
        raise ConfigError("stop here")

    monkeypatch.setattr("robustlab.cli.cmd_evaluate.one_model_spec", fake)
    code = main(["evaluate", "--module", f"{tmp_path / 'net.py'}:make", "--untrained", "--data", "digits",
                 "--eps", "8/255", "--eps", "0.1", "--out", str(tmp_path / "run")])
    assert code == 2 and "stop here" in capsys.readouterr().err
    assert seen["grid"] == [8 / 255, 0.1] and math.isclose(seen["grid"][0], 0.0313725490196)
