"""Reproducible runs: a run pins its torch thread count (default 1) instead of taking the machine's,
records its environment, and prints the command that reproduces it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustlab.store.results import ResultStore

SRC = Path(__file__).resolve().parents[1] / "src"

EXPERIMENT = """
name: threads
data: {name: digits, n_eval: 60}
models:
  - id: lenet
    model: {backbone: lenet, head: softmax}
    train: {epochs: 2, optimizer: adam, lr: 0.003, batch_size: 64}
attacks:
  - {name: pgd, steps: 5}
eps: [0.1]
"""


def _run(spec: Path, run_dir: Path, threads: int, *extra: str) -> dict:
    """`robustlab run` in a fresh process whose OpenMP / MKL pools have `threads` threads."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "robustlab", "run", str(spec), "--out", str(run_dir), "--json",
                           *extra], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(run_dir: Path) -> list[tuple]:
    """Every stored row: key, metrics (but the wall-clock time) and per-sample outcomes."""
    with ResultStore(run_dir, readonly=True) as store:
        return sorted((r.key.id, json.dumps({k: v for k, v in r.metrics.items() if k != "seconds"}, sort_keys=True),
                       json.dumps(r.per_sample, sort_keys=True)) for r in store.rows())


def _environment(run_dir: Path) -> dict:
    with ResultStore(run_dir, readonly=True) as store:
        return store.get_meta("environment")


@pytest.mark.slow
def test_a_rerun_at_one_and_two_threads_gives_identical_rows(tmp_path):
    """The same file run in processes with 1 and 2 OpenMP threads: at the machine's thread count the
    trained weights (and so every row's key) differ in their last bits; pinned, every row is
    identical, keys, metrics and per-sample outcomes alike."""
    spec = tmp_path / "threads.yaml"
    spec.write_text(EXPERIMENT)
    _run(spec, tmp_path / "one", 1)
    _run(spec, tmp_path / "two", 2)
    rows = _rows(tmp_path / "one")
    assert rows and rows == _rows(tmp_path / "two")
    for name in ("one", "two"):
        env = _environment(tmp_path / name)
        assert env["threads"] == 1 and env["train_threads"] == 1 and env["torch"] and env["data"]["version"]
        assert env["command"].startswith("robustlab run ") and env["command"].endswith("--json")
    report = (tmp_path / "one" / "report.md").read_text()
    assert "Reproduce with:" in report and env["command"].replace(str(tmp_path / "two"), str(tmp_path / "one")) \
        in report


def test_evaluate_records_its_environment_and_threads(tmp_path, capsys):
    from robustlab.cli.app import main

    ckpt = tmp_path / "ckpt"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "1", "--out", str(ckpt), "--json"]) == 0
    run = tmp_path / "run"
    assert main(["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--eps", "0.1", "--n-eval", "20",
                 "--threads", "2", "--out", str(run), "--json"]) == 0
    capsys.readouterr()
    with ResultStore(run, readonly=True) as store:
        env = store.get_meta("environment")
        (model,) = store.get_meta("models").values()
    assert env["threads"] == 2 and env["device"] == "cpu" and env["data"]["name"] == "digits"
    assert model["environment"] == env and model["command"].startswith("robustlab evaluate --model")
    import torch

    assert torch.get_num_threads() == int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))  # restored
