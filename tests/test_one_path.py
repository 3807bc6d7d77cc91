"""One evaluation path: `evaluate` is a one-model experiment, so the same checkpoint evaluated by
`evaluate` and by `run` (an experiment file pointing at it) is one model, labelled by its weights
digest, with the same rows, in the store and in the report; and `evaluate` writes the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustlab.cli.app import main
from robustlab.core.digest import label_name, model_digest, model_label
from robustlab.data.spec import DataSpec
from robustlab.defenses import build_defense
from robustlab.experiment.tasks import dataset_for
from robustlab.store.checkpoints import load_checkpoint
from robustlab.store.results import ResultStore

ATTACKS = ["--attack", "fgsm", "--attack", "pgd", "--steps", "3", "--eps", "0", "--eps", "0.1", "--n-eval", "40"]
KINDS = ("attack", "probe", "identification", "selftest")


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def _rows(run_dir: Path) -> dict:
    """Every row of the store by key: metrics without the wall time, and the per-sample record."""
    with ResultStore(run_dir, readonly=True) as store:
        return {r.key: ({k: v for k, v in r.metrics.items() if k != "seconds"}, r.per_sample)
                for kind in KINDS for r in store.rows(kind=kind)}


def _timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _models(run_dir: Path) -> list[str]:
    with ResultStore(run_dir, readonly=True) as store:
        return list(store.get_meta("models", {}) or {})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("one") / "mlp"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "1", "--out", str(path)]) == 0
    return path


def test_evaluate_and_run_give_one_model_with_identical_rows(capsys, ckpt, tmp_path):
    label = model_label("mlp", model_digest(load_checkpoint(ckpt)))
    assert main(["evaluate", "--model", str(ckpt), *ATTACKS, "--out", str(tmp_path / "ev"), "--json"]) == 0
    evaluated = _last_json(capsys.readouterr().out)
    assert evaluated["model"] == label  # the folder name and the weights digest
    (tmp_path / "exp.yaml").write_text(
        "name: same\ndata: {name: digits, n_eval: 40}\n"
        f"models: [{{checkpoint: {json.dumps(str(ckpt))}}}]\n"
        "attacks: [fgsm, {name: pgd, steps: 3}]\neps: [0, 0.1]\n")
    assert main(["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run"), "--json"]) == 0
    ran = _last_json(capsys.readouterr().out)
    assert ran["counts"]["trained"] == 0 and ran["counts"]["computed"] == 4  # evaluated as it is, never trained
    by_evaluate, by_run = _rows(tmp_path / "ev"), _rows(tmp_path / "run")
    assert {k.kind for k in by_run} == set(KINDS)
    assert by_evaluate == by_run  # the same keys (label, digest, samples, attack, ...) and the same numbers
    assert _models(tmp_path / "ev") == _models(tmp_path / "run") == [label]
    assert {r["model"] for r in ran["rows"]} == {label}
    # evaluate into the run's directory: the same model, nothing recomputed, one model in the report
    assert main(["evaluate", "--model", str(ckpt), *ATTACKS, "--out", str(tmp_path / "run"), "--json"]) == 0
    again = _last_json(capsys.readouterr().out)
    assert again["counts"]["computed"] == 0 and again["counts"]["stored_before"] == 4
    assert _rows(tmp_path / "run").keys() == by_run.keys() and _models(tmp_path / "run") == [label]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert list(report["models"]) == [label] and report["rows"] == again["rows"]
    assert _timeless(report["rows"]) == _timeless(evaluated["rows"]) == _timeless(ran["rows"])


def test_a_model_run_trained_is_the_model_evaluate_sees(capsys, tmp_path):
    """A model trained by `run` is labelled by its id and weights digest: `evaluate` on its
    checkpoint finds every row already stored under the same label."""
    (tmp_path / "exp.yaml").write_text(
        "name: t\ndata: {name: digits, n_eval: 40}\n"
        "models: [{id: m, model: {backbone: mlp}, train: {epochs: 1}}]\n"
        "attacks: [fgsm, {name: pgd, steps: 3}]\neps: [0, 0.1]\n")
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "exp.yaml"), "--out", str(run), "--json"]) == 0
    capsys.readouterr()
    label = model_label("m", model_digest(load_checkpoint(run / "checkpoints" / "m")))
    assert _models(run) == [label]
    before = _rows(run)
    assert main(["evaluate", "--model", str(run / "checkpoints" / "m"), *ATTACKS, "--out", str(run),
                 "--json"]) == 0
    doc = _last_json(capsys.readouterr().out)
    assert doc["model"] == label and doc["counts"]["computed"] == 0 and _rows(run) == before
    with ResultStore(run, readonly=True) as store:
        meta = store.get_meta("models")[label]
    assert meta["history"] and meta["n_test"] and meta["swept"] == []  # the run's entry kept (training curves)


def test_evaluate_writes_the_report_and_says_where(capsys, ckpt, tmp_path):
    run = tmp_path / "ev"
    assert main(["evaluate", "--model", str(ckpt), *ATTACKS, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    for name in ("report.html", "report.md", "report.json"):
        assert (run / name).is_file()
    flat = "".join(out.split())  # rich may wrap a long path
    assert f"report:{(run / 'report.html').resolve()}" in flat
    report = json.loads((run / "report.json").read_text())
    assert report["rows"] and {r["model"] for r in report["rows"]} == set(report["models"])


@pytest.mark.ray
def test_evaluate_on_ray_gives_the_local_rows(capsys, ckpt, tmp_path):
    """`evaluate --executor ray` is the same one-model run on Ray tasks: the same rows as local."""
    pytest.importorskip("ray", reason="the Ray executor needs the [ray] extra")
    args = ["--attack", "fgsm", "--eps", "0", "--eps", "0.1", "--n-eval", "30", "--no-self-test", "--json"]
    assert main(["evaluate", "--model", str(ckpt), *args, "--out", str(tmp_path / "local")]) == 0
    assert main(["evaluate", "--model", str(ckpt), *args, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    doc = _last_json(capsys.readouterr().out)
    assert doc["counts"]["executor"] == "ray" and doc["counts"]["computed"] == 2
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")


def test_evaluate_gives_the_training_warning_run_gives(capsys, tmp_path):
    """A checkpoint that did not train: `evaluate` warns as `run` does for its own models (stderr,
    --json, the store's meta and so the report)."""
    ckpt = tmp_path / "untrained"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "0", "--out", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--eps", "0.1", "--n-eval", "20",
                 "--no-self-test", "--out", str(tmp_path / "ev"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = _last_json(captured.out)
    assert doc["warning"] and "did not train" in doc["warning"] and "didnottrain" in "".join(captured.err.split())
    with ResultStore(tmp_path / "ev", readonly=True) as store:
        assert store.get_meta("models")[doc["model"]]["warning"] == doc["warning"]


def _defended_rows(run_dir: Path) -> dict:
    return {k: v for k, v in _rows(run_dir).items() if k.defense != "none"}


def test_a_defense_built_by_defend_or_by_run_is_one_defended_model(capsys, ckpt, tmp_path):
    """Feature squeezing (bits:4, no fitting) over one checkpoint, built by `defend` and evaluated
    by `evaluate`, or declared in a file's `defenses:` and built by `run`: the same content, so one
    label (`model_label(defense_label, model_digest)`), the same rows, one defended model in the
    store and the report, linked to its base on both paths."""
    defended = tmp_path / "mlp-sq4"
    assert main(["defend", "squeeze", "-s", "bits:4", "--model", str(ckpt), "--out", str(defended)]) == 0
    label = model_label("squeeze(bits:4)", model_digest(load_checkpoint(defended)))
    (tmp_path / "exp.yaml").write_text(
        "name: same\ndata: {name: digits, n_eval: 40}\n"
        f"models: [{{checkpoint: {json.dumps(str(ckpt))}, id: base}}]\n"
        "defenses: [{id: sq, name: squeeze, squeezers: ['bits:4']}]\n"
        "attacks: [fgsm, {name: pgd, steps: 3}]\neps: [0, 0.1]\n")
    assert main(["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run"), "--json"]) == 0
    ran = _last_json(capsys.readouterr().out)
    assert main(["evaluate", "--model", str(defended), *ATTACKS, "--out", str(tmp_path / "ev"), "--json"]) == 0
    evaluated = _last_json(capsys.readouterr().out)
    assert evaluated["model"] == label and {r["defense"] for r in evaluated["rows"]} == {"squeeze(bits:4)"}
    by_run, by_evaluate = _defended_rows(tmp_path / "run"), _defended_rows(tmp_path / "ev")
    assert {k.model for k in by_run} == {label} and {k.kind for k in by_run} == set(KINDS)
    assert by_run == by_evaluate  # the same keys (label, defense, digest, samples, ...) and numbers
    assert _timeless([r for r in ran["rows"] if r["defense"] != "none"]) == _timeless(evaluated["rows"])
    # evaluate into the run's directory: nothing recomputed, still one defended model, linked to its base
    assert main(["evaluate", "--model", str(defended), *ATTACKS, "--out", str(tmp_path / "run"), "--json"]) == 0
    again = _last_json(capsys.readouterr().out)
    assert again["counts"]["computed"] == 0 and again["model"] == label
    base = model_label("base", model_digest(load_checkpoint(ckpt)))
    assert sorted(_models(tmp_path / "run")) == sorted([base, label])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert sorted(report["models"]) == sorted([base, label])
    (link,) = report["defended"]
    assert (link["model"], link["defense"], link["base"]) == (label, "squeeze(bits:4)", base)
    assert "defended from base" in (tmp_path / "run" / "report.md").read_text()
    # on the evaluate path alone, the link goes to the base checkpoint when it is evaluated there
    assert main(["evaluate", "--model", str(ckpt), *ATTACKS, "--out", str(tmp_path / "ev"), "--json"]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    (link,) = report["defended"]
    assert (link["model"], link["base"]) == (label, model_label("mlp", model_digest(load_checkpoint(ckpt))))


def test_a_defended_label_follows_its_content(tmp_path):
    """Identical defended content, one label; a different defense parameter (no weights differ)
    or a different fitted buffer, another label."""
    base = main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "0", "--out", str(tmp_path / "m")])
    assert base == 0
    model, data = load_checkpoint(tmp_path / "m"), dataset_for(DataSpec(name="digits"))
    four = build_defense("squeeze", model, data, squeezers=["bits:4"]).model
    again = build_defense("squeeze", model, data, squeezers=["bits:4"]).model
    five = build_defense("squeeze", model, data, squeezers=["bits:5"]).model
    assert model_digest(four) == model_digest(again) != model_digest(five)
    assert dict(four.state_dict()).keys() == dict(five.state_dict()).keys()
    detector = build_defense("squeeze-detector", model, data, squeezers=["bits:4"], fpr=0.1).model
    moved = build_defense("squeeze-detector", model, data, squeezers=["bits:4"], fpr=0.1).model
    assert model_digest(detector) == model_digest(moved)
    moved.threshold.add_(1.0)
    assert model_digest(detector) != model_digest(moved)


@pytest.mark.parametrize("name", ["mlp", "squeeze(bits:4)", "squeeze-detector(bits:2+median:2)", "a:b"])
def test_a_label_gives_back_its_name(name):
    """Tables and the console name a model by its label's name part: a defended model's name has
    colons of its own (``bits:4``), so the name is everything before the digest."""
    assert label_name(model_label(name, "0123456789abcdef")) == name
