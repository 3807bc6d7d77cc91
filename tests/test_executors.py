"""The experiment's tasks and the in-process executor: same rows as the store path, failures
listed without stopping the grid, checkpoints as bytes refused when they are pickles, and no
Ray import by default."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load

from robustlab.cli.app import main
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.evaluate import AttackSpec, evaluate_grid
from robustlab.experiment import ExperimentSpec, GridFailed, run_experiment, run_grid
from robustlab.experiment.tasks import (
    CheckpointBlob,
    EvalTask,
    ModelSource,
    TrainTask,
    dataset_for,
    eval_data,
    run_eval_task,
    run_train_task,
)
from robustlab.store.checkpoints import load_checkpoint, save_checkpoint
from robustlab.store.results import ResultStore

pytestmark = pytest.mark.usefixtures("fault_attacks")  # tests/grid_faults.py, for this module only


def spec_doc(**extra) -> dict:
    doc = {
        "name": "grid",
        "data": {"name": "digits", "n_eval": 40},
        "models": [{"id": "mlp", "model": {"backbone": "mlp", "head": "softmax"},
                    "train": {"epochs": 1, "optimizer": "adam", "lr": 0.003}}],
        "attacks": ["fgsm"],
        "eps": [0.1],
        "plugins": ["grid_faults"],
    }
    doc.update(extra)
    return doc


def test_tasks_give_the_rows_of_evaluate_grid(tmp_path, digits_mlp):
    """run_eval_task on a checkpoint as bytes == evaluate_grid on the model in memory."""
    save_checkpoint(digits_mlp, tmp_path / "ck")
    blob = CheckpointBlob.from_directory(tmp_path / "ck")
    spec = ExperimentSpec.from_dict(spec_doc(attacks=[{"name": "pgd", "steps": 5}]))
    x, y = eval_data(spec.data)
    attack = spec.attacks[0].spec  # a GridAttack: its AttackSpec
    with ResultStore(tmp_path / "run") as store:
        (key,) = evaluate_grid(digits_mlp, "m", x, y, [attack], [0.1], store)
        reference = store.get(key)
    task = EvalTask(key, ModelSource("m"), spec.data, attack, 0.1)
    out = run_eval_task(task, blob)
    assert out.key == key and out.per_sample == reference.per_sample
    assert {k: v for k, v in out.metrics.items() if k != "seconds"} == {
        k: v for k, v in reference.metrics.items() if k != "seconds"}


def test_train_task_is_the_trainer_with_the_same_seed(digits):
    """Training through the task twice gives identical bytes, and the model predicts as trained."""
    spec = ExperimentSpec.from_dict(spec_doc())
    mspec = spec.models[0]
    task = TrainTask(mspec, spec.data, mspec.digest(spec.data, digits.num_classes, digits.input_shape))
    a, b = run_train_task(task), run_train_task(task)
    wa, wb = load(a.blob.weights), load(b.blob.weights)  # (header key order and timings may differ)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    model = a.blob.load()
    data = dataset_for(spec.data)
    acc = float((model.predict(data.x_test) == data.y_test).float().mean())
    assert acc == pytest.approx(a.metadata["clean_accuracy"])


def test_blob_with_pickle_weights_is_refused(tmp_path, digits_mlp):
    save_checkpoint(digits_mlp, tmp_path / "ck")
    good = CheckpointBlob.from_directory(tmp_path / "ck")
    torch.save({"w": torch.zeros(2)}, tmp_path / "evil.pt")
    evil = CheckpointBlob.from_files(good.config, (tmp_path / "evil.pt").read_bytes())
    with pytest.raises(CheckpointError, match="pickle"):
        evil.load()


def test_failing_cell_is_listed_and_the_others_complete(tmp_path):
    doc = spec_doc(attacks=["fgsm", "always-fail", {"name": "pgd", "steps": 3}], eps=[0.05, 0.1])
    outcome = run_grid(ExperimentSpec.from_dict(doc), tmp_path)
    assert [f.kind for f in outcome.failures] == ["cell", "cell"]
    assert all("always-fail" in f.label and "this cell always fails" in f.error for f in outcome.failures)
    with ResultStore(tmp_path) as store:
        specs = [json.loads(r.key.attack) for r in store.rows()]
    attacks = sorted((a["name"], a.get("steps")) for a in specs)
    assert attacks == [("fgsm", None)] * 2 + [("pgd", 3)] * 2
    assert outcome.counts()["failed"] == 2 and outcome.computed == 4
    with pytest.raises(GridFailed, match="always fails"):
        run_experiment(ExperimentSpec.from_dict(doc), tmp_path)


def test_cli_names_the_failed_cell_and_exits_1(capsys, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent(f"""
        name: g
        data: {{name: digits, n_eval: 40}}
        plugins: [grid_faults]
        models: [{{id: mlp, model: {{backbone: mlp, head: softmax}}, train: {{epochs: 1}}}}]
        attacks: [fgsm, {{name: fail-once, marker: {tmp_path / 'marker'}}}]
        eps: [0.1]
    """))
    code = main(["run", str(exp), "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "fail-once" in failed[0] and "made to fail once" in failed[0]
    assert "1 computed, 1 failed" in captured.out
    # the rerun computes only the cell that failed; every row is there once
    code = main(["run", str(exp), "--out", str(tmp_path / "run"), "--json"])
    counts = __import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"]
    assert code == 0 and counts["stored_before"] == 1 and counts["computed"] == 1 and counts["reused"] == 1
    with ResultStore(tmp_path / "run") as store:
        keys = [r.key.as_tuple() for r in store.rows()]
    assert len(keys) == len(set(keys)) == 2


def test_bad_executor_is_one_clear_error(capsys, tmp_path):
    with pytest.raises(ConfigError, match="unknown executor"):
        ExperimentSpec.from_dict(spec_doc(executor="slurm"))
    with pytest.raises(ConfigError, match="num_gpus"):
        ExperimentSpec.from_dict(spec_doc(executor={"name": "ray", "num_gpus": -1}))
    with pytest.raises(ConfigError, match="plugin"):
        ExperimentSpec.from_dict(spec_doc(plugins=["no_such_module_here"]))
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: g\nmodels: [{model: {backbone: mlp}}]\nattacks: [fgsm]\n")
    code = main(["run", str(exp), "--executor", "nope", "--out", str(tmp_path / "r")])
    assert code == 2 and "unknown executor" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_default_run_does_not_import_ray(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from robustlab.experiment import ExperimentSpec, run_grid
        doc = {{"name": "g", "data": {{"name": "digits", "n_eval": 20}},
               "models": [{{"id": "m", "model": {{"backbone": "mlp", "head": "softmax"}}, "train": {{"epochs": 1}}}}],
               "attacks": ["fgsm"], "eps": [0.1]}}
        out = run_grid(ExperimentSpec.from_dict(doc), {str(tmp_path)!r})
        assert out.computed == 1 and not out.failures
        print("ray" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_result_key_is_the_planned_one(tmp_path):
    """Rows carry the complete key the planner builds: model id and weights digest, defense, the
    resolved attack spec, norm, eps, data, samples and batch (see `ResultKey`)."""
    from robustlab.core.digest import model_digest
    from robustlab.evaluate import eval_set, plan_cells
    from robustlab.evaluate.runner import cell_key

    spec = ExperimentSpec.from_dict(spec_doc(eps=[0.0, 0.1]))
    outcome = run_grid(spec, tmp_path)
    model = outcome.rows[0]["model"]
    digest = model_digest(load_checkpoint(tmp_path / "checkpoints" / spec.models[0].id))
    samples = eval_set(dataset_for(spec.data), spec.data.n_eval, spec.data.seed)
    with ResultStore(tmp_path) as store:
        for cell in plan_cells([AttackSpec("fgsm")], [0.0, 0.1]):
            assert store.has(cell_key(cell, model, digest, samples, "none", spec.batch_size))


def test_ray_executor_without_ray_is_one_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    from robustlab.experiment.executors import ray_executor

    monkeypatch.setattr(ray_executor, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'robustlab\[ray\]'"):
        run_grid(ExperimentSpec.from_dict(spec_doc(executor="ray")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_local_progress_reports_training_steps_and_inside_cells(tmp_path):
    heard: list[tuple[str, int, int]] = []
    doc = spec_doc(attacks=[{"name": "apgd", "steps": 10}], eps=[0.1])
    run_grid(ExperimentSpec.from_dict(doc), tmp_path, progress=lambda m, d, t: heard.append((m, d, t)))
    steps = [(d, t) for m, d, t in heard if m == "train mlp"]
    assert steps[-1][0] == steps[-1][1] > 1  # every optimizer step, up to the last
    inside = [m for m, _, _ in heard if " | apgd" in m]
    assert inside and all(m.startswith("mlp apgd(steps=10) eps=0.1 | ") for m in inside)
    assert heard[-1] == ("done", 1, 1)
