"""Bring your own model: `robustlab.wrap` on a plain nn.Module gives, sample for sample, the same
attack outcomes as the same network built natively; the CLI path loads safetensors only; the
examples run."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import robustlab
from robustlab.attacks import PGD
from robustlab.attacks.autoattack import AutoAttack
from robustlab.cli.app import main
from robustlab.core.errors import ConfigError
from robustlab.evaluate import AttackSpec, evaluate_grid, summarize
from robustlab.models import build_model
from robustlab.store.results import ResultStore
from robustlab.train import TrainConfig, train

EXAMPLES = Path(__file__).parents[1] / "examples"
MEAN, STD = 0.3, 0.4


class PlainNet(nn.Module):
    """What a user brings: flatten -> linear -> relu -> linear, optionally normalizing its own input."""

    def __init__(self, normalize: bool) -> None:
        super().__init__()
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 1, 1, 1))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std if self.normalize else x)


@pytest.fixture(scope="module")
def native(digits):
    model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8],
                         "backbone_args": {"hidden": [64]}, "normalize": {"mean": [MEAN], "std": [STD]}})
    train(model, digits.x_train, digits.y_train, TrainConfig(epochs=4, seed=0))
    return model.eval()


def _plain_copy(native, normalize: bool) -> PlainNet:
    net = PlainNet(normalize)
    net.body[1].load_state_dict(native.backbone.layers[0].state_dict())
    net.body[3].load_state_dict(native.head.linear.state_dict())
    return net


@pytest.mark.parametrize("inside", [True, False], ids=["module-normalizes", "wrap-normalizes"])
def test_wrapped_equals_native_to_the_sample(native, digits, inside):
    net = _plain_copy(native, normalize=inside)
    norm = {} if inside else {"mean": [MEAN], "std": [STD]}
    model = robustlab.wrap(net, num_classes=10, input_shape=(1, 8, 8), **norm)
    x, y = digits.x_test[:150], digits.y_test[:150]
    assert torch.equal(model.predict(x), native.predict(x))
    for attack in (PGD(eps=0.1, steps=10), AutoAttack(eps=0.1, steps=10, n_targets=2, queries=60)):
        a, b = attack(model, x, y), attack(native, x, y)
        assert torch.equal(a.success, b.success) and torch.equal(a.prediction, b.prediction)
        assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
        assert 0 < a.success.float().mean() < 1  # a real test: some samples fall, some stand


def test_wrapped_model_through_evaluate_grid_and_store(native, digits, tmp_path):
    model = robustlab.wrap(_plain_copy(native, True), num_classes=10, input_shape=(1, 8, 8))
    x, y = digits.x_test[:80], digits.y_test[:80]
    specs = [AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 5})]
    with ResultStore(tmp_path / "w") as sw, ResultStore(tmp_path / "n") as sn:
        evaluate_grid(model, "m", x, y, specs, [0.0, 0.1], sw)
        evaluate_grid(native, "m", x, y, specs, [0.0, 0.1], sn)
        def timeless(rows):
            return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

        assert timeless(summarize(sw)) == timeless(summarize(sn))
    assert model.embed(x).shape == (80, 10)
    with_features = robustlab.wrap(_plain_copy(native, True), num_classes=10, input_shape=(1, 8, 8), features="body.2")
    assert torch.allclose(with_features.embed(x), native.embed(x))


def test_wrap_rejects_bad_arguments(native):
    net = _plain_copy(native, True)
    with pytest.raises(ConfigError, match="both mean and std"):
        robustlab.wrap(net, num_classes=10, input_shape=(1, 8, 8), mean=[0.5])
    with pytest.raises(ConfigError, match="one per channel"):
        robustlab.wrap(net, num_classes=10, input_shape=(1, 8, 8), mean=[0.5, 0.5], std=[0.2, 0.2])
    with pytest.raises(ConfigError, match="no submodule"):
        robustlab.wrap(net, num_classes=10, input_shape=(1, 8, 8), features="nope")


def test_cli_module_path_safetensors_only(native, tmp_path, capsys):
    factory = tmp_path / "mynet.py"
    factory.write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))\n")
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    net[1].load_state_dict(native.backbone.layers[0].state_dict())
    net[3].load_state_dict(native.head.linear.state_dict())
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    args = ["evaluate", "--module", f"{factory}:make", "--weights", str(tmp_path / "w.safetensors"), "--data", "digits",
            "--mean", str(MEAN), "--std", str(STD), "--attack", "fgsm", "--eps", "0.1", "--n-eval", "60",
            "--out", str(tmp_path / "run"), "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (row,) = doc["rows"]
    native_row = _native_fgsm(native, tmp_path)
    assert row["robust_accuracy"] == native_row["robust_accuracy"] and row["n"] == 60
    torch.save(net.state_dict(), tmp_path / "w.pt")  # a pickle: refused before anything is read or written
    bad = args.copy()
    bad[bad.index("--weights") + 1] = str(tmp_path / "w.pt")
    bad[bad.index("--out") + 1] = str(tmp_path / "run2")
    assert main(bad) == 2
    assert "never loads pickles" in capsys.readouterr().err and not (tmp_path / "run2").exists()


def _native_fgsm(native, tmp_path):
    from robustlab.data import load_dataset
    from robustlab.experiment import eval_split

    x, y = eval_split(load_dataset("digits"), 60, seed=0)
    with ResultStore(tmp_path / "native") as store:
        evaluate_grid(native, "n", x, y, [AttackSpec("fgsm")], [0.1], store)
        (row,) = summarize(store)
    return row


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_examples_run(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path / "out"), "--epochs", "3"])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "worst case:" in printed and (tmp_path / "out" / "run" / "report.html").is_file()


@pytest.mark.parametrize("name", sorted(__import__("test_attacks_properties").FAST))
def test_every_attack_takes_a_wrapped_module(native, digits, name):
    from test_attacks_properties import build

    model = robustlab.wrap(_plain_copy(native, True), num_classes=10, input_shape=(1, 8, 8))
    x, y = digits.x_test[:24], digits.y_test[:24]
    attack = build(name, source=native)
    result = attack(model, x, y)
    assert result.x_adv.shape == x.shape and float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    assert torch.equal(result.prediction, model.predict(result.x_adv))  # judged by the wrapped model's decision


def test_readme_snippet_runs(monkeypatch):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Your own model")[1].split("## ")[0]
    code = section.split("```python")[1].split("```")[0]
    assert len(code.strip().splitlines()) < 10
    import robustlab.attacks.autoattack as aa

    real = aa.AutoAttack

    def small(eps, **kwargs):  # the same code at a test's budget
        return real(eps, steps=3, n_targets=2, queries=10, **kwargs)

    monkeypatch.setattr(aa, "AutoAttack", small)
    monkeypatch.setattr("robustlab.attacks.AutoAttack", small)
    exec(compile(code, "README.md", "exec"), {})
