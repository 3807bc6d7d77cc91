"""`robustlab train` under torchrun: 2 gloo processes train exactly what one process computes
when it splits each batch the same way.

Why not compare with plain one-process training weight for weight: the two compute the same
gradient in a different float order (one 64-row product against two 32-row products and their
average), a difference of about 1e-9 per gradient entry. Adam divides each update by the
gradient's own running magnitude, so on the many parameters whose gradient is nearly zero
(first-layer weights of rarely lit pixels, units that rarely fire) that 1e-9 becomes an update
difference of up to ~1e-6 after one step, and 66 steps through ReLU boundaries make it 7.8e-3:
no tolerance follows from float32 rounding there. So the weights are compared **exactly**
against a one-process reference that shards each batch as the ranks do and averages the two
shards' gradients (a + b is the same float either way round, and halving is exact); the plain
one-process training is only held to the same quality. `shard_weight` is tested on its own:
with an odd batch the weighted average of the ranks' gradients is the batch mean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file

from robustlab.cli.app import main
from robustlab.core.contract import batched_predict
from robustlab.core.runtime import seed_everything
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.store.checkpoints import weights_file
from robustlab.train import TrainConfig, train
from robustlab.train import trainer as trainer_module
from robustlab.train.distributed import shard_weight
from robustlab.train.objectives import ObjectiveOutput

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this build")

ARGS = ["train", "--data", "digits", "--backbone", "mlp", "--epochs", "3", "--optimizer", "adam", "--lr", "0.003",
        "--json"]
MODEL = {"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}


class ShardedReference:
    """The trainer's data-parallel hook for `size` ranks, all in this process: each batch is split
    as the ranks split it (entries r, r + size, ...), each shard's loss gets its own forward and
    backward with the shapes a rank sees, and the gradients add up to their weighted mean."""

    def __init__(self, model, objective, size: int = 2) -> None:
        self.model, self.inner, self.size = model, objective, size

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        return batch  # the whole batch: `objective` splits it

    def objective(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        n = len(x)
        total = torch.zeros(())
        scores = torch.empty(n, self.model.num_classes)
        for rank in range(self.size):
            idx = torch.arange(rank, n, self.size)
            out = self.inner(self.model, x[idx], y[idx], epoch)
            weight = len(idx) * self.size / n  # each rank's share of the batch
            total = total + (out.loss if weight == 1.0 else out.loss * weight) / self.size
            scores[idx] = out.scores.detach()
        return ObjectiveOutput(total, scores)

    def sum(self, *values: float) -> list[float]:
        return [float(v) for v in values]

    def accuracy(self, model, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((batched_predict(model, x) == y).float().mean())


def test_two_gloo_processes_train_like_one_and_save_one_checkpoint(tmp_path, capsys, monkeypatch):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*launcher, "-m", "robustlab", *ARGS, "--out", str(tmp_path / "ddp")],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1  # rank 0 alone reports
    two = json.loads(printed[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # one checkpoint, nothing else
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["config.json", weights_file(tmp_path / "ddp").name]

    # the reference: the same run in this process, each batch split as the ranks split it
    data = load_dataset("digits", seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' thread count: the same kernels, the same float order
    try:
        seed_everything(0)
        model = build_model(MODEL)
        monkeypatch.setattr(trainer_module, "data_parallel", lambda m, o: ShardedReference(m, o))
        history = train(model, data.x_train, data.y_train, TrainConfig(epochs=3, optimizer="adam", lr=0.003, seed=0),
                        x_test=data.x_test, y_test=data.y_test)
    finally:
        torch.set_num_threads(threads)
    ddp = load_file(weights_file(tmp_path / "ddp"))
    reference = {k: v.detach() for k, v in model.state_dict().items()}
    assert ddp.keys() == reference.keys()
    assert all(torch.equal(ddp[k], reference[k]) for k in ddp), \
        max(float((ddp[k] - reference[k]).abs().max()) for k in ddp)
    for a, b in zip(history, two["history"], strict=True):
        assert a.test_accuracy == pytest.approx(b["test_accuracy"], abs=1e-6)  # float32 vs float64 division
        assert a.train_accuracy == b["train_accuracy"]
        assert a.loss == pytest.approx(b["loss"], rel=1e-6)  # per-rank sums: the same terms, grouped apart

    # plain one-process training: the same quality (weights differ by float order, see above)
    monkeypatch.undo()
    assert main([*ARGS, "--out", str(tmp_path / "single")]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert one["clean_accuracy"] > 0.8 and two["clean_accuracy"] > 0.8
    assert abs(two["clean_accuracy"] - one["clean_accuracy"]) <= 0.03


@pytest.mark.parametrize("batch,size", [(29, 2), (64, 2), (31, 3), (2, 3)])
def test_weighted_shard_gradients_average_to_the_batch_mean(batch, size):
    """What DDP computes from the ranks' gradients, (1/size) sum_r w_r g_r, is the batch-mean
    gradient: with an odd batch (15 + 14 entries) the unweighted average is not."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(batch, 6, dtype=torch.float64), torch.randint(0, 3, (batch,))

    def grad(loss: torch.Tensor) -> torch.Tensor:
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(net.parameters()))])

    full = grad(F.cross_entropy(net(x), y))
    weighted = torch.zeros_like(full)
    plain = torch.zeros_like(full)
    for rank in range(size):
        idx = torch.arange(rank, max(batch, size), size) % batch  # DataParallel.shard's entries
        g = grad(F.cross_entropy(net(x[idx]), y[idx]))
        weighted += shard_weight(batch, rank, size) * g / size
        plain += g / size
    torch.testing.assert_close(weighted, full, rtol=1e-12, atol=1e-12)
    if batch % size:
        assert not torch.allclose(plain, full, rtol=1e-3, atol=1e-6)  # what equal weights would give
