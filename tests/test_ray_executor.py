"""The Ray executor on a local 2-CPU Ray instance (one per module): the rows of the in-process
executor, a worker killed mid-task retried with its row written once, a failing cell listed
while the others complete, and a killed driver resumed from the store."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ray = pytest.importorskip("ray", reason="the Ray executor needs the [ray] extra: pip install 'robustlab[ray]'")

from robustlab.experiment import ExecutorSpec, ExperimentSpec, run_grid  # noqa: E402
from robustlab.experiment.executors.ray_executor import RayExecutor  # noqa: E402
from robustlab.store.checkpoints import weights_file  # noqa: E402
from robustlab.store.results import ResultStore  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("fault_attacks")]
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs; workers see tests/ (for the grid_faults plugin)."""
    before = os.environ.get("PYTHONPATH")
    paths = [str(TESTS), *[p for p in sys.path if p.endswith("src")], *(before.split(os.pathsep) if before else [])]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def spec(attacks, eps=(0.1,), **extra) -> ExperimentSpec:
    doc = {
        "name": "ray-grid",
        "data": {"name": "digits", "n_eval": 40},
        "models": [{"id": "mlp", "model": {"backbone": "mlp", "head": "softmax"},
                    "train": {"epochs": 1, "optimizer": "adam", "lr": 0.003}}],
        "attacks": attacks,
        "eps": list(eps),
        "plugins": ["grid_faults"],
        "executor": {"name": "ray", "num_cpus": 1},
    }
    doc.update(extra)
    return ExperimentSpec.from_dict(doc)


def stored(run_dir) -> dict:
    with ResultStore(run_dir) as store:
        return {r.key.as_tuple(): ({k: v for k, v in r.metrics.items() if k != "seconds"}, r.per_sample)
                for r in store.rows()}


def test_ray_rows_equal_local_rows(cluster, tmp_path):
    attacks = ["fgsm", {"name": "pgd", "steps": 4}]
    s = spec(attacks, eps=(0.0, 0.1))
    local = run_grid(dataclasses.replace(s, executor=ExecutorSpec()), tmp_path / "local")
    remote = run_grid(s, tmp_path / "ray", executor=RayExecutor())
    assert local.executor == "local" and remote.executor == "ray"
    assert not local.failures and not remote.failures and remote.computed == local.computed == 4
    assert stored(tmp_path / "ray") == stored(tmp_path / "local")
    ckpt = "checkpoints/mlp"
    a, b = load_file(weights_file(tmp_path / "ray" / ckpt)), load_file(weights_file(tmp_path / "local" / ckpt))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_worker_killed_mid_task_is_retried_and_written_once(cluster, tmp_path):
    marker = tmp_path / "crashed"
    s = spec(["fgsm", {"name": "crash-once", "marker": str(marker)}], eps=(0.05, 0.1))
    outcome = run_grid(s, tmp_path / "run", executor=RayExecutor(max_retries=2))
    assert marker.exists()  # a worker did die
    assert not outcome.failures and outcome.computed == 4
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        counts = db.execute(
            "SELECT attack, eps, COUNT(*) FROM results WHERE kind='attack' GROUP BY attack, eps").fetchall()
    assert len(counts) == 4 and all(n == 1 for *_, n in counts)


def test_failing_cell_is_reported_and_the_others_complete(cluster, tmp_path):
    s = spec(["fgsm", "always-fail"], eps=(0.05, 0.1))
    outcome = run_grid(s, tmp_path / "run", executor=RayExecutor())
    assert len(outcome.failures) == 2 and outcome.computed == 2
    assert all(f.kind == "cell" and "this cell always fails" in f.error for f in outcome.failures)
    # keys are (kind, model, model_digest, defense, attack, ...)
    assert {json.loads(k[4])["name"] for k in stored(tmp_path / "run")} == {"fgsm"}


def test_killed_driver_resumes_without_redoing_cells(cluster, tmp_path):
    """`robustlab run --address` in a subprocess, SIGKILLed after its first rows; the rerun
    computes only the missing cells and leaves the stored ones untouched."""
    eps = [0.02 * i for i in range(1, 7)]
    exp = tmp_path / "exp.json"
    # self_test off: the binarization test would call the sleeping attack once per sample
    doc = spec([{"name": "slow", "sleep": 1.0}], eps=eps, self_test=False).to_dict()
    exp.write_text(json.dumps(doc))
    run_dir = tmp_path / "run"
    db = run_dir / "results.sqlite"
    cmd = [sys.executable, "-m", "robustlab", "run", str(exp), "--out", str(run_dir), "--address", cluster]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    rows = 0
    deadline = time.monotonic() + 300  # Ray is slow to place tasks on a loaded machine
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    rows = conn.execute("SELECT COUNT(*) FROM results WHERE kind='attack'").fetchone()[0]
            except sqlite3.OperationalError:  # the driver is still creating the schema
                rows = 0
            if rows >= 2:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 2 <= rows < len(eps), proc.stderr.read().decode()[-2000:]
    with sqlite3.connect(db) as conn:
        before = dict(conn.execute("SELECT eps, created FROM results WHERE kind='attack'").fetchall())
    outcome = run_grid(ExperimentSpec.from_dict(doc), run_dir, executor=RayExecutor())
    assert not outcome.failures
    assert outcome.stored_before == len(before) and outcome.computed == len(eps) - len(before)
    assert outcome.reused == 1 and outcome.trained == 0
    with sqlite3.connect(db) as conn:
        after = dict(conn.execute("SELECT eps, created FROM results WHERE kind='attack'").fetchall())
        total = conn.execute("SELECT COUNT(*) FROM results WHERE kind='attack'").fetchone()[0]
    assert total == len(eps) and all(after[e] == before[e] for e in before)


def test_checkpoints_through_shared_storage(cluster, tmp_path):
    """With `storage`, the training worker writes the checkpoint there and cells load it by path."""
    s = spec(["fgsm"], executor={"name": "ray", "storage": str(tmp_path / "shared")})
    outcome = run_grid(s, tmp_path / "run", executor=RayExecutor())
    assert not outcome.failures and outcome.computed == 1 and outcome.trained == 1
    (saved,) = (tmp_path / "shared" / "ray-grid").iterdir()
    assert saved.name.startswith("mlp-") and weights_file(saved).is_file()
    assert not (tmp_path / "run" / "checkpoints").exists()
    again = run_grid(s, tmp_path / "run", executor=RayExecutor())
    assert again.reused == 1 and again.stored_before == 1 and again.computed == 0


def test_ray_selftest_rows_equal_local_rows(cluster, tmp_path):
    """The binarization self-test runs as Ray tasks and stores the in-process executor's rows."""
    s = spec(["fgsm", {"name": "pgd", "steps": 4}], eps=(0.0, 0.1), self_test={"samples": 10})
    local = run_grid(dataclasses.replace(s, executor=ExecutorSpec()), tmp_path / "local")
    remote = run_grid(s, tmp_path / "ray", executor=RayExecutor())
    assert local.selftests == remote.selftests == 1 and not remote.failures

    def tests(run_dir):
        with ResultStore(run_dir) as store:
            return [(r.key, r.metrics, r.per_sample) for r in store.rows(kind="selftest")]

    assert tests(tmp_path / "ray") == tests(tmp_path / "local")
