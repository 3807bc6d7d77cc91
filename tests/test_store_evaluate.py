"""The results store (atomic rows, resume after a kill) and the metrics computed from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from robustlab.core import REJECT
from robustlab.evaluate import AttackSpec, cell_metrics, evaluate_grid, summarize, worst_case
from robustlab.store import ResultKey, ResultStore


def test_put_is_idempotent(tmp_path):
    store = ResultStore(tmp_path)
    key = ResultKey("m", "none", '{"name":"pgd"}', 0.1, "test", "linf", "digest", '{"name":"d"}', "s1", "64")
    assert not store.has(key)
    assert store.put(key, {"a": 1}, {"y": [1, 2]})
    assert not store.put(key, {"a": 2}, {"y": [3]})  # the first write wins, no duplicate
    assert store.count() == 1 and store.get(key).metrics == {"a": 1}
    store.close()
    assert ResultStore(tmp_path).get(key).per_sample == {"y": [1, 2]}


def test_not_a_database(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"garbage" * 100)
    from robustlab.store import StoreError

    with pytest.raises(StoreError, match="not a robustlab results database"):
        ResultStore(tmp_path).count()


def _cell(y, clean, adv, success):
    n = len(y)
    return {"y": y, "clean_pred": clean, "adv_pred": adv, "success": success,
            "l2": [0.5] * n, "linf": [0.1] * n, "queries": [3] * n}


def test_cell_metrics_split_success_failed_detected():
    y = [0, 1, 2, 3, 4, 5]
    clean = [0, 1, 2, 3, 4, 0]  # the last is misclassified from the start
    adv = [9, 1, REJECT, 7, 4, 0]
    success = [True, False, False, True, False, True]
    m = cell_metrics(_cell(y, clean, adv, success))
    assert m["clean_accuracy"] == pytest.approx(5 / 6)
    assert m["robust_accuracy"] == pytest.approx(2 / 6)
    assert (m["success"], m["failed"], m["detected"]) == (2, 2, 1)
    assert m["success_rate"] == pytest.approx(2 / 5) and m["detection_rate"] == pytest.approx(1 / 5)


def test_worst_case_is_per_sample():
    y = [0, 1, 2, 3]
    clean = [0, 1, 2, 3]
    a = _cell(y, clean, [9, 1, 2, 3], [True, False, False, False])
    b = _cell(y, clean, [0, 9, 2, REJECT], [False, True, False, False])
    w = worst_case([a, b])
    assert w["robust_accuracy"] == pytest.approx(1 / 4)  # only sample 2 survives both
    assert (w["success"], w["detected"], w["failed"]) == (2, 1, 1)
    # worst case is never above any member
    assert w["robust_accuracy"] <= min(cell_metrics(a)["robust_accuracy"], cell_metrics(b)["robust_accuracy"])


def test_grid_eps0_equals_clean_and_rerun_skips(tmp_path, digits_mlp, attack_batch):
    x, y = attack_batch
    store = ResultStore(tmp_path)
    specs = [AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 5})]
    keys = evaluate_grid(digits_mlp, "mlp", x, y, specs, [0.0, 0.1], store)
    assert store.count() == 4 and len(keys) == 4
    clean = float((digits_mlp.predict(x) == y).float().mean())
    rows = summarize(store)
    for r in rows:
        assert r["clean_accuracy"] == pytest.approx(clean)
        if r["eps"] == 0:
            assert r["robust_accuracy"] == pytest.approx(clean)
    worst = [r for r in rows if r["attack"] == "worst-case" and r["eps"] == 0.1][0]
    members = [r for r in rows if r["attack"] != "worst-case" and r["eps"] == 0.1]
    assert worst["robust_accuracy"] <= min(m["robust_accuracy"] for m in members)
    created = [row.metrics["seconds"] for row in store.rows()]
    evaluate_grid(digits_mlp, "mlp", x, y, specs, [0.0, 0.1], store)  # nothing recomputed
    assert [row.metrics["seconds"] for row in store.rows()] == created


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from robustlab.core import seed_everything
    from robustlab.data import load_dataset
    from robustlab.evaluate import AttackSpec, evaluate_grid
    from robustlab.models import build_model
    from robustlab.store import ResultStore
    seed_everything(0)
    d = load_dataset("digits", seed=0)
    m = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}).eval()
    x, y = d.x_test[:200], d.y_test[:200]
    evaluate_grid(m, "mlp", x, y, [AttackSpec("pgd", {"steps": 60, "random_start": False})],
                  [0.01 * i for i in range(1, 13)], ResultStore(sys.argv[1]), batch_size=50)
    """
)


def test_resume_after_kill(tmp_path):
    """Kill a run after its first rows land; the rerun completes it, no row lost or duplicated,
    and the outcome equals an uninterrupted run."""
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, str(script), str(killed_dir)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed_dir / "results.sqlite").exists() and 1 <= ResultStore(killed_dir).count() < 12:
            break
        time.sleep(0.05)
    partial = ResultStore(killed_dir).count()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= partial < 12, "the run finished before it could be killed"
    subprocess.run([sys.executable, str(script), str(killed_dir)], env=env, check=True)
    subprocess.run([sys.executable, str(script), str(clean_dir)], env=env, check=True)
    resumed, clean = ResultStore(killed_dir), ResultStore(clean_dir)
    assert resumed.count() == clean.count() == 12
    for a, b in zip(sorted(resumed.rows(), key=lambda r: r.key.eps), sorted(clean.rows(), key=lambda r: r.key.eps),
                    strict=True):
        assert a.key == b.key and a.per_sample == b.per_sample
