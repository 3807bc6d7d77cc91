"""Every registered attack is selectable from `robustlab evaluate` by name with its parameters;
autoattack is the default."""

from __future__ import annotations

import json

import pytest

from robustlab.attacks import attack_parameters
from robustlab.cli import cmd_evaluate
from robustlab.cli.app import main
from robustlab.evaluate.runner import AttackSpec
from test_cli import run_cli


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-attacks") / "ckpt"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "2", "--optimizer", "adam",
                 "--lr", "0.003", "--out", str(path), "--json"]) == 0
    return path


def test_autoattack_is_the_default(capsys, ckpt, tmp_path):
    """`evaluate` without --attack and --eps runs the ensemble (plus FGSM for the single-step check)
    over the default grid, which reaches the huge budget the chance check needs."""
    code, out, err = run_cli(capsys, "evaluate", "--model", str(ckpt), "-p", "steps=3", "-p", "queries=20",
                             "-p", "n_targets=2", "--n-eval", "20", "--out", str(tmp_path / "run"), "--json")
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    attacks = {r["attack"] for r in doc["rows"]}
    assert attacks == {"autoattack(n_targets=2, queries=20, steps=3)", "fgsm", "worst-case"}
    assert sorted({r["eps"] for r in doc["rows"]}) == list(cmd_evaluate.DEFAULT_EPS)
    ensemble = [r for r in doc["rows"] if r["attack"].startswith("autoattack")]
    assert all(r["kind"] == "ensemble" and [m["kind"] for m in r["member_success"]]
               == ["iterative", "iterative", "black-box"] for r in ensemble)
    checks = {f["check"]: f["status"] for f in doc["masking"]}
    assert checks["accuracy does not reach chance at a huge budget"] != "not run"
    assert "single-step stronger than iterative" in checks and "black-box stronger than white-box" in checks


@pytest.mark.parametrize(
    "args",
    [
        ["--attack", "autoattack", "--steps", "5", "-p", "queries=20", "-p", "n_targets=2"],
        ["--attack", "autoattack", "-p", "version=standard", "--steps", "3", "-p", "queries=20", "-p", "n_targets=2",
         "--attack", "fab"],
        ["--attack", "mim", "--steps", "3", "--attack", "apgd-t", "-p", "n_targets=2"],
        ["--attack", "square", "--norm", "l2", "-p", "queries=10", "--attack", "deepfool"],
        ["--attack", "cw", "-p", "steps=5", "-p", "search_steps=2", "--attack", "jsma"],
    ],
)
def test_attacks_by_name_with_parameters(capsys, ckpt, tmp_path, args):
    code, out, err = run_cli(capsys, "evaluate", "--model", str(ckpt), *args, "--eps", "0.1", "--n-eval", "20",
                             "--out", str(tmp_path / "run"), "--json")
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])["rows"]
    chosen = [args[i + 1] for i, a in enumerate(args) if a == "--attack"]
    given = [args[i + 1] for i, a in enumerate(args) if a == "-p"]
    for name in chosen:
        mine = [r for r in rows if r["attack"].split("(")[0] == name]
        assert mine and all(r["n"] == 20 for r in mine)
        accepted = set(attack_parameters(name))
        for pair in given:  # every -p the attack takes shows in its resolved spec
            if pair.split("=")[0] in accepted:
                assert all(pair in r["attack"] for r in mine), (pair, mine[0]["attack"])
    for r in rows:
        if r["attack"].startswith("square("):  # -p queries=10 reached Square: <= 10 queries + 2 judgements
            assert "queries=10" in r["attack"] and r["mean_queries"] <= 12


def test_transfer_source_is_a_checkpoint(ckpt):
    attack = AttackSpec("transfer", {"source": str(ckpt), "attack": "bim"}).build(0.1)
    assert attack.source.num_classes == 10 and attack.eps == 0.1


def test_a_single_attack_evaluation_says_its_numbers_are_upper_bounds(capsys, ckpt, tmp_path):
    """`--attack pgd` alone: the headline (console and --json) says the numbers are upper bounds from
    a single attack, not the ensemble; the default attacks do not; FMR / FNMR are not printed for a
    softmax classifier on digits."""
    args = ["evaluate", "--model", str(ckpt), "--attack", "pgd", "--steps", "3", "--eps", "0.1", "--n-eval", "20",
            "--out", str(tmp_path / "run")]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "Upper bounds from single attacks (pgd(steps=3)), not the ensemble" in out
    assert "Linf perturbations, eps 0.1 on the [0, 1] pixel scale" in out and "FMR" not in out
    code, out, err = run_cli(capsys, *args, "--json")
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["threat_model"]["protocol"] == "single attacks" and doc["threat_model"]["single_attack_text"]
    assert doc["identification_applies"] is False
    code, out, err = run_cli(capsys, "evaluate", "--model", str(ckpt), "-p", "steps=3", "-p", "queries=20",
                             "-p", "n_targets=2", "--eps", "0.1", "--n-eval", "20", "--out", str(tmp_path / "r2"))
    assert code == 0, err
    assert "Upper bounds from single attacks" not in out and "protocol: reduced ensemble" in out
