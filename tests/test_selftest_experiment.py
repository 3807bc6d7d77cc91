"""The binarization self-test in experiment files: one keyed "selftest" row per (model,
defense, eps > 0), the very row `robustlab evaluate` writes for the same model, attacks and
samples; a rerun reads it back; `self_test: false` and `robustlab run --no-self-test` turn it
off; a failed cell's attack is left out of its self-test."""

from __future__ import annotations

import json
import textwrap

import pytest

from robustlab.cli.app import main
from robustlab.core.errors import ConfigError
from robustlab.experiment import ExperimentSpec, run_grid
from robustlab.store.checkpoints import load_checkpoint
from robustlab.store.results import ResultStore

pytestmark = pytest.mark.usefixtures("fault_attacks")  # tests/grid_faults.py: an attack that always fails

ATTACKS = ["fgsm", {"name": "pgd", "steps": 5}]


def spec_doc(**extra) -> dict:
    doc = {
        "name": "st",
        "data": {"name": "digits", "n_eval": 30},
        "models": [{"id": "mlp", "model": {"backbone": "mlp", "head": "softmax"},
                    "train": {"epochs": 3, "optimizer": "adam", "lr": 0.003}}],
        "attacks": ATTACKS,
        "eps": [0.0, 0.1],
        "self_test": {"samples": 12},
        "plugins": ["grid_faults"],
    }
    doc.update(extra)
    return doc


def _selftests(run_dir):
    with ResultStore(run_dir) as store:
        return store.rows(kind="selftest"), store.rows()


def test_rows_are_evaluates_rows_and_a_rerun_reads_them_back(tmp_path):
    from robustlab.evaluate import AttackSpec, eval_set
    from robustlab.experiment import Evaluation
    from robustlab.experiment.tasks import dataset_for

    spec = ExperimentSpec.from_dict(spec_doc(defenses=[{"name": "squeeze", "squeezers": ["bits:3"]}]))
    outcome = run_grid(spec, tmp_path / "run")
    tests, cells = _selftests(tmp_path / "run")
    # one row per (model, defense) at the one eps > 0, on 12 samples, for both attacks
    assert sorted(r.key.defense for r in tests) == sorted(["none", "squeeze(bits:3)"])
    assert outcome.selftests == 2 and outcome.counts()["selftests"] == 2 and not outcome.failures
    for r in tests:
        assert r.key.eps == 0.1 and r.key.kind == "selftest" and r.metrics["n"] == 12
        assert len(r.per_sample["found"]) == 12 and r.metrics["feasible"] >= 10
        assert [a["name"] for a in json.loads(r.key.attack)["attacks"]] == ["fgsm", "pgd"]
        same = [c for c in cells if c.key.defense == r.key.defense]
        assert {(c.key.model, c.key.model_digest, c.key.samples, c.key.data) for c in same} == {
            (r.key.model, r.key.model_digest, r.key.samples, r.key.data)}
    # the reference: `evaluate` on the same checkpoint, attacks, samples and model key
    (undefended,) = [r for r in tests if r.key.defense == "none"]
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "mlp").eval()
    samples = eval_set(dataset_for(spec.data), 30, spec.data.seed)
    result = Evaluation(tmp_path / "eval", samples, [AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 5})],
                        [0.0, 0.1], self_test=12).run(model, undefended.key.model)
    (reference,) = _selftests(tmp_path / "eval")[0]
    assert reference.key == undefended.key
    assert reference.per_sample == undefended.per_sample and result.selftests == [undefended.metrics]
    # the report shows them; a rerun computes nothing again
    from robustlab.report import write_report

    write_report(tmp_path / "run")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Attack self-tests" in report and undefended.metrics["sentence"] in report
    again = run_grid(spec, tmp_path / "run")
    assert again.selftests == 0 and again.computed == 0 and not again.failures
    assert [(r.key, r.metrics) for r in _selftests(tmp_path / "run")[0]] == [(r.key, r.metrics) for r in tests]


def test_a_failed_cells_attack_is_not_self_tested(tmp_path):
    outcome = run_grid(ExperimentSpec.from_dict(spec_doc(attacks=["fgsm", "always-fail"])), tmp_path)
    assert [f.kind for f in outcome.failures] == ["cell"]
    (row,) = _selftests(tmp_path)[0]
    assert [a["name"] for a in json.loads(row.key.attack)["attacks"]] == ["fgsm"]


def test_the_file_and_the_cli_turn_it_off(tmp_path, capsys):
    run_grid(ExperimentSpec.from_dict(spec_doc(self_test=False)), tmp_path / "a")
    tests, cells = _selftests(tmp_path / "a")
    assert tests == [] and len(cells) == 4
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent("""
        name: st
        data: {name: digits, n_eval: 30}
        models: [{id: mlp, model: {backbone: mlp, head: softmax}, train: {epochs: 1}}]
        attacks: [fgsm]
        eps: [0.1]
    """))
    assert main(["run", str(exp), "--out", str(tmp_path / "b"), "--no-self-test", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"]
    assert counts["selftests"] == 0 and _selftests(tmp_path / "b")[0] == []
    # without the flag the default runs (on every one of the 30 samples: fewer than the default 100)
    assert main(["run", str(exp), "--out", str(tmp_path / "b"), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"]
    (row,) = _selftests(tmp_path / "b")[0]
    assert counts["selftests"] == 1 and counts["computed"] == 0 and row.metrics["n"] == 30


@pytest.mark.parametrize("value, message", [
    ({"samples": 0}, "self_test.samples must be >= 1"),
    ({"n": 5}, r"self_test: unknown keys \[.n.\]"),
    ("yes", "true, false or a mapping"),
])
def test_bad_self_test_option_is_one_clear_error(value, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentSpec.from_dict(spec_doc(self_test=value))


def test_the_option_round_trips():
    for value, samples in ((None, 100), (True, 100), (False, 0), ({"samples": 7}, 7)):
        doc = spec_doc(self_test=value)
        spec = ExperimentSpec.from_dict(doc)
        assert spec.self_test == samples
        assert ExperimentSpec.from_dict(spec.to_dict()).self_test == samples
