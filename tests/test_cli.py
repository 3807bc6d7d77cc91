"""The `robustlab` command: help, train/evaluate --json, report, datasets, one-line errors."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robustlab.cli.app import main
from robustlab.store.checkpoints import weights_file

COMMANDS = ["demo", "train", "evaluate", "report", "datasets", "run"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "Usage" in out


def test_entry_point_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "robustlab", "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0
    for command in COMMANDS:
        assert command in done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet checkpoint trained for 2 epochs on digits through the CLI."""
    ckpt = tmp_path_factory.mktemp("cli") / "ckpt"
    code = main(["train", "--data", "digits", "--backbone", "lenet", "--epochs", "2", "--optimizer", "adam",
                 "--lr", "0.003", "--out", str(ckpt), "--json"])
    assert code == 0
    return ckpt


def test_train_json_and_checkpoint(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "--data", "digits", "--backbone", "mlp", "--epochs", "1",
                           "--out", str(tmp_path / "c"), "--json")
    assert code == 0
    doc = last_json(out)
    assert doc["checkpoint"] == str(tmp_path / "c") and 0 <= doc["clean_accuracy"] <= 1
    assert weights_file(tmp_path / "c").is_file() and len(doc["history"]) == 1


def test_evaluate_json_matches_report(capsys, trained, tmp_path):
    run_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "evaluate", "--model", str(trained), "--attack", "fgsm", "--attack", "pgd",
                           "--steps", "5", "--eps", "0", "--eps", "0.1", "--n-eval", "60",
                           "--out", str(run_dir), "--json")
    assert code == 0
    doc = last_json(out)
    rows = doc["rows"]
    assert {r["attack"] for r in rows} == {"fgsm", "pgd(steps=5)", "worst-case"}
    assert all(r["n"] == 60 for r in rows)
    from robustlab.core.stats import clopper_pearson

    for r in rows:  # every rate carries its exact 95% interval over its n samples
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(clopper_pearson(round(r["robust_accuracy"] * 60), 60))
        assert r["intervals"]["clean_accuracy"]["n"] == 60
    zero = [r for r in rows if r["eps"] == 0]
    assert all(r["robust_accuracy"] == r["clean_accuracy"] for r in zero)
    code, out, _ = run_cli(capsys, "report", str(run_dir), "--json")
    assert code == 0
    paths = last_json(out)
    report = json.loads(Path(paths["json"]).read_text())
    assert report["rows"] == rows  # the same numbers, from the same store
    ident = doc["identification"]
    assert report["identification"][doc["model"]] == ident
    assert 0 <= ident["fmr"] <= 1 and 0 <= ident["fnmr"] <= 1 and ident["confidence_adv"] is not None
    assert ident["intervals"]["fmr"]["n"] == ident["n_pairs"] // 2
    assert ident["accuracy"] == pytest.approx(zero[0]["clean_accuracy"])
    assert {f["check"] for f in doc["masking"]} >= {"robustness rises with eps", "zero or non-finite gradients"}
    html = Path(paths["html"]).read_text()
    assert "<table" in html and "data:image/png;base64," in html
    assert not re.search(r"""src=["'](?!data:)""", html)  # self-contained: no external resources
    md = Path(paths["markdown"]).read_text()
    assert "| model |" in md and "worst-case" in md
    worst = next(r for r in rows if r["attack"] == "worst-case" and r["eps"] == 0.1)
    assert f"{100 * worst['ci_low']:.1f}-{100 * worst['ci_high']:.1f}" in md  # shown beside the rate


def test_datasets_json(capsys):
    code, out, _ = run_cli(capsys, "datasets", "--json")
    assert code == 0
    found = {d["name"]: d for d in last_json(out)}
    assert found["digits"]["available"] is True
    assert "mnist" in found and found["mnist"]["where"]


@pytest.mark.parametrize(
    "args,match",
    [
        (["evaluate", "--model", "/nonexistent/ckpt"], "no checkpoint"),
        (["train", "--data", "nope", "--epochs", "1"], "unknown"),
        (["train", "--backbone", "transformer", "--epochs", "1"], "unknown backbone"),
        (["report", "/nonexistent/run"], "holds no results"),
    ],
)
def test_errors_are_one_line(capsys, args, match):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and match in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_attack_and_pickle_are_refused(capsys, trained, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", "--model", str(trained), "--attack", "nope", "--out",
                           str(tmp_path / "r"))
    assert code == 2 and "unknown attack 'nope'" in err
    code, _, err = run_cli(capsys, "evaluate", "--model", str(trained), "--param", "stepz=3", "--out",
                           str(tmp_path / "r"))
    assert code == 2 and "stepz" in err
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps({"w": 1}))
    code, _, err = run_cli(capsys, "evaluate", "--model", str(bad))
    assert code == 2 and "pickle" in err


def test_debug_shows_traceback(capsys):
    code, _, err = run_cli(capsys, "--debug", "report", "/nonexistent/run")
    assert code == 2 and "Traceback" in err


def test_run_experiment_file(capsys, tmp_path):
    spec = tmp_path / "exp.yaml"
    spec.write_text(
        "name: tiny\n"
        "data: {name: digits, n_eval: 40}\n"
        "models:\n  - id: m\n    model: {backbone: mlp, head: softmax}\n    train: {epochs: 1}\n"
        "attacks: [fgsm]\n"
        "eps: [0, 0.1]\n"
    )
    code, out, _ = run_cli(capsys, "run", str(spec), "--out", str(tmp_path / "run"), "--json")
    assert code == 0
    rows = last_json(out)["rows"]
    assert len(rows) == 2 and all(r["n"] == 40 for r in rows)
    # rerun: checkpoint and results are reused
    code, out2, _ = run_cli(capsys, "run", str(spec), "--out", str(tmp_path / "run"), "--json")
    assert code == 0 and last_json(out2)["rows"] == rows
    spec.write_text("name: bad\nmodels: []\n")
    code, _, err = run_cli(capsys, "run", str(spec))
    assert code == 2 and "at least one model" in err


@pytest.mark.parametrize("head", ["triplet", "pcl", "arcface"])
def test_train_and_evaluate_metric_heads(capsys, tmp_path, head):
    ckpt = tmp_path / head
    code, out, _ = run_cli(capsys, "train", "--data", "digits", "--backbone", "mlp", "--head", head, "--epochs", "2",
                           "--optimizer", "adam", "--lr", "0.003", "--out", str(ckpt), "--json")
    assert code == 0
    trained = last_json(out)
    assert trained["model"]["head"] == head
    code, out, _ = run_cli(capsys, "evaluate", "--model", str(ckpt), "--attack", "pgd", "--steps", "3", "--eps", "0",
                           "--eps", "0.1", "--n-eval", "50", "--out", str(tmp_path / "run"), "--json")
    assert code == 0
    doc = last_json(out)
    clean = [r for r in doc["rows"] if r["eps"] == 0][0]
    assert clean["robust_accuracy"] == clean["clean_accuracy"]
    assert clean["clean_accuracy"] == pytest.approx(doc["identification"]["accuracy"])
    code, _, err = run_cli(capsys, "train", "--head", head, "-p", "head.nonsense=1", "--epochs", "1")
    assert code == 2 and "nonsense" in err
