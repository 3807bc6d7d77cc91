"""Bring your own model, safely: `--module` without weights is refused unless `--untrained`; a plain
module given to an attack names `robustlab.wrap`; `wrap(output=)` takes a tuple's or a dict's logits;
the Python API shows the CLI's progress on a terminal (and only there); unknown criteria are refused."""

from __future__ import annotations

import io
from contextlib import contextmanager

import pytest
import torch
from rich.console import Console
from torch import nn

import robustlab
from robustlab.attacks import APGD, PGD
from robustlab.attacks import base as attack_base
from robustlab.attacks.criteria import TopKExcluded, make_criterion
from robustlab.attacks.progress import reporting
from robustlab.cli.app import main
from robustlab.core import progress as core_progress
from robustlab.core.errors import ConfigError, InputError
from robustlab.evaluate import AttackSpec
from robustlab.evaluate.samples import EvalSet
from robustlab.experiment import evaluate_model

NET = "import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"


# ---------------------------------------------------------------- --module without --weights

def test_module_without_weights_is_refused_unless_untrained(tmp_path, capsys, monkeypatch):
    (tmp_path / "net.py").write_text(NET)
    run = tmp_path / "run"
    args = ["evaluate", "--module", f"{tmp_path / 'net.py'}:make", "--data", "digits", "--attack", "fgsm",
            "--eps", "0.1", "--n-eval", "20", "--out", str(run)]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--weights" in err and "--untrained" in err, err
    assert not run.exists()

    seen = {}

    def fake(*args, **kwargs):  # stop before anything is written
        seen["called"] = True
        raise ConfigError("stop here")

    monkeypatch.setattr("robustlab.cli.cmd_evaluate.one_model_spec", fake)
    assert main([*args, "--untrained"]) == 2 and "stop here" in capsys.readouterr().err
    assert seen == {"called": True} and not run.exists()


def test_untrained_goes_with_module_and_no_weights(tmp_path, capsys):
    (tmp_path / "w.safetensors").write_bytes(b"")
    code = main(["evaluate", "--module", "x:make", "--weights", str(tmp_path / "w.safetensors"), "--untrained",
                 "--data", "digits", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--untrained" in err, err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a plain module given to an attack

def test_a_plain_module_given_to_an_attack_names_wrap(attack_batch):
    x, y = attack_batch
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(InputError, match=r"Sequential is a plain torch.nn.Module; wrap it: robustlab.wrap\(net, "
                                         r"num_classes=.*input_shape="):
        PGD(eps=0.1, steps=2)(net, x[:4], y[:4])
    with pytest.raises(InputError, match=r"robustlab.wrap\("):
        PGD(eps=0.1, steps=2)(lambda t: t, x[:4], y[:4])


# ---------------------------------------------------------------- wrap(output=)

class Heads(nn.Module):
    """The same logits as `body`, returned inside a tuple or a dict."""

    def __init__(self, body: nn.Module, how: str) -> None:
        super().__init__()
        self.body, self.how = body, how

    def forward(self, x):
        logits = self.body(x)
        features = x.flatten(1)[:, :5]
        if self.how == "tuple":
            return logits, features
        if self.how == "features-first":
            return features, logits
        return {"features": features, "logits": logits}


@pytest.fixture()
def body(digits_mlp):
    """A plain module computing digits_mlp's logits."""
    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = digits_mlp

        def forward(self, x):
            return self.inner(x)

    return Body()


@pytest.mark.parametrize("how, output", [("tuple", None), ("tuple", 0), ("features-first", 1),
                                         ("features-first", -1), ("dict", "logits")])
def test_wrap_takes_the_logits_among_the_outputs(body, attack_batch, how, output):
    """Sample for sample the same PGD outcome as the module that returns the logits alone."""
    x, y = attack_batch
    reference = robustlab.wrap(body, num_classes=10, input_shape=(1, 8, 8))
    model = robustlab.wrap(Heads(body, how), num_classes=10, input_shape=(1, 8, 8), output=output)
    torch.testing.assert_close(model(x), reference(x))
    attack = PGD(eps=0.1, steps=5)
    ours, theirs = attack(model, x, y), attack(reference, x, y)
    assert torch.equal(ours.success, theirs.success) and torch.equal(ours.x_adv, theirs.x_adv)


def test_wrap_refuses_a_dict_without_output_and_names_its_keys(body, attack_batch):
    model = robustlab.wrap(Heads(body, "dict"), num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(InputError, match=r"returns a dict \(keys features, logits\); choose the logits: "
                                         r"wrap\(\.\.\., output=KEY\)"):
        model(attack_batch[0][:2])
    with pytest.raises(InputError, match=r"output='scores'.*got keys features, logits"):
        robustlab.wrap(Heads(body, "dict"), num_classes=10, input_shape=(1, 8, 8), output="scores")(
            attack_batch[0][:2])


def test_wrap_output_errors_are_one_line(body, attack_batch):
    x = attack_batch[0][:2]
    with pytest.raises(InputError, match=r"output=2\) needs the module to return a tuple with that index, got a "
                                         r"tuple of 2"):
        robustlab.wrap(Heads(body, "tuple"), num_classes=10, input_shape=(1, 8, 8), output=2)(x)
    with pytest.raises(InputError, match=r"shape \(2, 5\).*pick them with wrap\(\.\.\., output=\)"):
        robustlab.wrap(Heads(body, "features-first"), num_classes=10, input_shape=(1, 8, 8))(x)
    with pytest.raises(ConfigError, match="output must be an index"):
        robustlab.wrap(body, num_classes=10, input_shape=(1, 8, 8), output=1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- progress in the Python API

@contextmanager
def _recording(calls):
    def update(message, done, total):
        calls.append((message, done, total))

    yield update


def test_default_bars_only_on_a_terminal_and_never_under_pytest(monkeypatch):
    monkeypatch.setattr(core_progress.sys.stderr, "isatty", lambda: True, raising=False)
    assert not core_progress.on_terminal()  # pytest sets PYTEST_CURRENT_TEST
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert core_progress.on_terminal()
    monkeypatch.setenv("ROBUSTLAB_PROGRESS", "0")
    assert not core_progress.on_terminal()
    monkeypatch.delenv("ROBUSTLAB_PROGRESS")
    core_progress.show_progress(False)
    try:
        assert not core_progress.on_terminal()
    finally:
        core_progress.show_progress(True)
    monkeypatch.setattr(core_progress.sys.stderr, "isatty", lambda: False, raising=False)
    assert not core_progress.on_terminal()


def test_the_terminal_bar_draws_with_rich():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    with core_progress.terminal_bar(console) as update:
        update("evaluate m pgd eps=0.1", 3, 8)
    assert "evaluate m pgd eps=0.1" in stream.getvalue() and "3/8" in stream.getvalue()


def test_evaluate_model_shows_progress_by_default_and_not_when_told(digits_mlp, attack_batch, tmp_path,
                                                                    monkeypatch):
    calls: list = []
    monkeypatch.setattr(core_progress, "on_terminal", lambda: True)
    monkeypatch.setattr(core_progress, "terminal_bar", lambda console=None: _recording(calls))
    x, y = attack_batch
    data = EvalSet(x[:20], y[:20])
    specs = [AttackSpec("fgsm")]
    evaluate_model(digits_mlp, "m", data, specs, [0.1], tmp_path / "a", self_test=0)
    assert calls and calls[-1] == ("done", 1, 1)
    calls.clear()
    evaluate_model(digits_mlp, "m", data, specs, [0.1], tmp_path / "b", self_test=0, progress=False)
    assert calls == []


def test_run_experiment_shows_progress_by_default_and_not_when_told(tmp_path, monkeypatch):
    from robustlab.experiment import ExperimentSpec, run_experiment

    calls: list = []
    monkeypatch.setattr(core_progress, "on_terminal", lambda: True)
    monkeypatch.setattr(core_progress, "terminal_bar", lambda console=None: _recording(calls))
    doc = {"name": "p", "data": {"name": "digits", "n_eval": 20}, "attacks": ["fgsm"], "eps": [0.1],
           "models": [{"id": "m", "model": {"backbone": "mlp", "head": "softmax"}, "train": {"epochs": 1}}]}
    run_experiment(ExperimentSpec.from_dict(doc), tmp_path / "a")
    assert any(m.startswith("train m") for m, _, _ in calls) and any("fgsm" in m for m, _, _ in calls)
    calls.clear()
    run_experiment(ExperimentSpec.from_dict(doc), tmp_path / "b", progress=False)
    assert calls == []


def test_an_attack_on_a_large_batch_shows_its_members_progress(digits_mlp, attack_batch, monkeypatch):
    calls: list = []
    monkeypatch.setattr(attack_base, "on_terminal", lambda: True)
    monkeypatch.setattr(attack_base, "terminal_bar", lambda console=None: _recording(calls))
    monkeypatch.setattr(attack_base, "PROGRESS_SAMPLES", 100)
    x, y = attack_batch
    attack = APGD(eps=0.1, steps=10)
    attack(digits_mlp, x[:50], y[:50])
    assert calls == []  # a small call: no bar
    attack(digits_mlp, x, y)
    assert calls and all(m.startswith("apgd | ") and "of 120 standing" in m for m, _, _ in calls)
    assert calls[-1][2] == 10
    calls.clear()
    with reporting(None):  # the caller claims the run silent
        attack(digits_mlp, x, y)
    assert calls == []


# ---------------------------------------------------------------- criteria by name

@pytest.mark.parametrize("name", ["topk_excluded", "topk_excluded:5", "misclassifed", "top5"])
def test_unknown_criterion_names_are_refused_listing_the_valid_ones(name):
    with pytest.raises(ConfigError, match=r"unknown success criterion .*; known: misclassified, targeted, topk"):
        make_criterion(name)


@pytest.mark.parametrize("name", ["topk", "topk:", "topk:0", "topk:-2", "topk:abc", "topk:2.5"])
def test_topk_without_a_valid_k_is_refused_not_read_as_top_1(name):
    with pytest.raises(ConfigError, match=r"topk:K needs an integer K >= 1"):
        make_criterion(name)


@pytest.mark.parametrize("name, k", [("topk:3", 3), ("TopK:1", 1), (" topk:5 ", 5)])
def test_topk_needs_its_k(name, k):
    criterion = make_criterion(name)
    assert isinstance(criterion, TopKExcluded) and criterion.k == k


def test_the_cli_refuses_an_unknown_criterion(tmp_path, capsys):
    (tmp_path / "net.py").write_text(NET)
    code = main(["evaluate", "--module", f"{tmp_path / 'net.py'}:make", "--untrained", "--data", "digits",
                 "--n-eval", "20", "--attack", "pgd",
                 "-p", "criterion=topk_excluded", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "unknown success criterion 'topk_excluded'" in err, err
    assert "known: misclassified, targeted, topk" in err, err
    assert not (tmp_path / "run").exists()
