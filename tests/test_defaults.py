"""Defaults that train: the shortest `robustlab train` reaches >= 90% on digits for every head,
the same defaults reach the CLI, the YAML runner and the Python API, and a run that ends near
chance says so (in the output and in the JSON)."""

from __future__ import annotations

import json
import math

import pytest

from robustlab.cli.app import main
from robustlab.data import load_dataset
from robustlab.experiment import ExperimentSpec, run_experiment
from robustlab.models.heads import HEADS
from robustlab.store.checkpoints import read_checkpoint_config, weights_file
from robustlab.train import TrainConfig
from robustlab.train import defaults as D
from robustlab.train.defaults import auto_epochs, training_warning


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS.names())
def test_shortest_train_command_trains_every_head(head, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # `robustlab train` writes checkpoints/<name> under the working directory
    args = ["train", "--json"] if head == "softmax" else ["train", "--head", head, "--json"]
    assert main(args) == 0
    doc = _last_json(capsys.readouterr().out)
    assert doc["model"]["head"] == head and doc["model"]["backbone"] == "lenet"
    assert doc["clean_accuracy"] >= 0.90, (head, doc["clean_accuracy"])
    assert doc["warning"] is None
    assert weights_file(tmp_path / doc["checkpoint"]).is_file()


def test_epochs_adapt_to_the_data_size():
    assert auto_epochs(1346, 64) == math.ceil(D.TARGET_STEPS / math.ceil(1346 / 64))  # digits: 22 batches
    assert auto_epochs(60000, 64) == D.MIN_EPOCHS  # Fashion-MNIST: 938 batches already
    assert auto_epochs(10, 64) == D.MAX_EPOCHS
    for n in (10, 500, 1346, 5000, 60000):
        e = auto_epochs(n, 64)
        assert D.MIN_EPOCHS <= e <= D.MAX_EPOCHS
        assert e == D.MIN_EPOCHS or e == D.MAX_EPOCHS or e * math.ceil(n / 64) >= D.TARGET_STEPS


def test_resolve_keeps_what_is_given_and_fills_the_rest():
    auto = TrainConfig().resolved(1346, "softmax")
    assert (auto.optimizer, auto.lr, auto.weight_decay, auto.batch_size) == ("adam", D.LR["adam"], 0.0, D.BATCH_SIZE)
    sgd = TrainConfig(optimizer="sgd", epochs=3).resolved(1346, "softmax")
    assert (sgd.lr, sgd.weight_decay, sgd.epochs) == (D.LR["sgd"], D.WEIGHT_DECAY["sgd"], 3)
    pcl = TrainConfig(epochs=20).resolved(1346, "pcl")
    assert pcl.objective_args == {"warmup_epochs": 5}
    assert TrainConfig(epochs=20, objective_args={"warmup_epochs": 2}).resolved(1346, "pcl").objective_args == {
        "warmup_epochs": 2}
    assert TrainConfig().resolved(1346, "pcl").resolved(1346, "pcl") == TrainConfig().resolved(1346, "pcl")


def test_cli_yaml_and_python_use_the_same_defaults(tmp_path, capsys):
    data = load_dataset("digits", seed=0)
    expected = TrainConfig(epochs=1).resolved(len(data.y_train), "pcl").to_dict()
    assert main(["train", "--head", "pcl", "--epochs", "1", "--out", str(tmp_path / "c"), "--json"]) == 0
    assert _last_json(capsys.readouterr().out)["train"] == expected
    spec = ExperimentSpec.from_dict({"name": "d", "models": [{"id": "m", "model": {"backbone": "lenet", "head": "pcl"},
                                                             "train": {"epochs": 1}}], "attacks": ["fgsm"], "eps": [0]})
    run_experiment(spec, tmp_path / "run")
    stored = read_checkpoint_config(tmp_path / "run" / "checkpoints" / "m")["metadata"]["train"]
    assert stored == expected


def test_warning_thresholds():
    assert "far below" in training_warning(0.23, 10, "digits")  # the run the issue reports
    assert training_warning(0.95, 10, "digits") is None
    assert training_warning(0.20, 10, "somewhere") is not None and training_warning(0.6, 10, "somewhere") is None
    assert training_warning(None, 10, "digits") is None


def test_a_run_near_chance_says_so(tmp_path, capsys):
    assert main(["train", "--backbone", "mlp", "--epochs", "0", "--out", str(tmp_path / "c"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = _last_json(captured.out)
    assert doc["clean_accuracy"] < 0.3 and "far below" in doc["warning"]
    assert "warning" in captured.err
    assert read_checkpoint_config(tmp_path / "c")["metadata"]["warning"] == doc["warning"]
    assert main(["train", "--backbone", "mlp", "--epochs", "0", "--out", str(tmp_path / "d")]) == 0
    assert "warning" in capsys.readouterr().out


def test_an_experiment_run_near_chance_says_so(tmp_path, capsys):
    yaml_file = tmp_path / "e.yaml"
    yaml_file.write_text("name: e\nmodels:\n  - id: untrained\n    model: {backbone: mlp, head: softmax}\n"
                         "    train: {epochs: 0}\nattacks: [fgsm]\neps: [0]\n")
    assert main(["run", str(yaml_file), "--out", str(tmp_path / "run"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = _last_json(captured.out)
    assert "far below" in doc["warnings"]["untrained"] and "warning" in captured.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "far below" in next(iter(report["models"].values()))["warning"]
    assert "far below" in (tmp_path / "run" / "report.md").read_text().split("## Models")[1]
