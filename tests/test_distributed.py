"""`robustlab train` under torchrun: 2 gloo processes train the model 1 process trains.

Both take the same optimizer steps over the same global batches (each rank half of each
batch, gradients averaged by DDP), so they differ only by float summation order: the
stated tolerance is 1 percentage point of test accuracy and 1e-3 on any weight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch.distributed as dist
from safetensors.torch import load_file

from robustlab.cli.app import main
from robustlab.store.checkpoints import weights_file

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this build")

ARGS = ["train", "--data", "digits", "--backbone", "mlp", "--epochs", "3", "--optimizer", "adam", "--lr", "0.003",
        "--json"]


def test_two_gloo_processes_train_like_one_and_save_one_checkpoint(tmp_path, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*launcher, "-m", "robustlab", *ARGS, "--out", str(tmp_path / "ddp")],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1  # rank 0 alone reports
    two = json.loads(printed[0])

    assert main([*ARGS, "--out", str(tmp_path / "single")]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]  # one checkpoint, nothing else
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["config.json", weights_file(tmp_path / "ddp").name]
    assert abs(two["clean_accuracy"] - one["clean_accuracy"]) <= 0.01
    assert one["clean_accuracy"] > 0.8
    for a, b in zip(one["history"], two["history"], strict=True):
        assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.01  # gathered over both ranks
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    w1, w2 = load_file(weights_file(tmp_path / "single")), load_file(weights_file(tmp_path / "ddp"))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-3
