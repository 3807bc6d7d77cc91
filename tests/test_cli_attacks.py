"""Every registered attack is selectable from `robustlab evaluate` by name with its parameters;
autoattack is the default."""

from __future__ import annotations

import json

import pytest

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


def test_autoattack_is_the_default():
    assert cmd_evaluate.DEFAULT_ATTACKS == ("autoattack",)


@pytest.mark.parametrize(
    "args",
    [
        ["--attack", "autoattack", "--steps", "5", "-p", "queries=20", "-p", "n_targets=2"],
        ["--attack", "mim", "--steps", "3", "--attack", "apgd-t", "-p", "n_targets=2"],
        ["--attack", "square", "--norm", "l2", "-p", "queries=10", "--attack", "deepfool"],
        ["--attack", "cw", "-p", "steps=5", "-p", "search_steps=2", "--attack", "jsma"],
    ],
)
def test_attacks_by_name_with_parameters(capsys, ckpt, tmp_path, args):
    code, out, err = run_cli(capsys, "evaluate", "--model", str(ckpt), *args, "--eps", "0.1", "--n-eval", "20",
                             "--run-dir", str(tmp_path / "run"), "--json")
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])["rows"]
    chosen = [args[i + 1] for i, a in enumerate(args) if a == "--attack"]
    for name in chosen:
        mine = [r for r in rows if r["attack"].split("(")[0] == name]
        assert mine and all(r["n"] == 20 for r in mine)


def test_transfer_source_is_a_checkpoint(ckpt):
    attack = AttackSpec("transfer", {"source": str(ckpt), "attack": "bim"}).build(0.1)
    assert attack.source.num_classes == 10 and attack.eps == 0.1
