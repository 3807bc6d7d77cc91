"""Data-parallel training with `torch.distributed` (DDP), for processes launched by `torchrun`.

`robustlab train` runs unchanged under ``torchrun --nproc_per_node N``: each process calls
`init_from_env` (which joins the process group torchrun describes in the environment:
NCCL on CUDA, gloo on the CPU), and the trainer asks `data_parallel` for a `DataParallel`
when a group is up. Every rank draws the same seeded batch order; rank r trains on
entries r, r+N, r+2N, ... of each batch, and DDP averages the gradients, each rank's
weighted by its share of the batch (`shard_weight`: an odd last batch is not split evenly),
so N processes take the same steps over the same global batches as one process (up to float
summation order; batch-norm statistics stay per rank). Epoch metrics are summed over the ranks, test
accuracy is computed on a 1/N share of the test set per rank and summed; the caller saves
the checkpoint on rank 0 only (`is_main`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from robustlab.core.contract import RobustModel, batched_predict
from robustlab.train.objectives import Objective, ObjectiveOutput


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher) with WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group the launcher describes (once); return this rank's device
    (``cuda:LOCAL_RANK`` when `device` is CUDA, else `device`). Without a launcher: `device`."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def rank_and_size() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Rank 0, or a plain single process: the one that saves and prints."""
    return rank_and_size()[0] == 0


def finish() -> None:
    """Wait for every rank, then leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_weight(batch: int, rank: int, size: int) -> float:
    """The factor on rank `rank`'s gradient that makes DDP's average over `size` ranks the mean
    over the `batch` entries: (entries it owns) x size / batch. 1.0 when the batch divides evenly;
    an odd last batch (15 and 14 entries of 29) would otherwise weight the ranks' means equally,
    and a wrapped duplicate (batch < size) gets 0."""
    own = len(range(rank, batch, size))
    return 1.0 if own * size == batch else own * size / batch


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loss: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        ctx.weight = weight
        return loss.view_as(loss)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.weight, None


def scale_gradient(loss: torch.Tensor, weight: float) -> torch.Tensor:
    """`loss` unchanged in value, its gradient times `weight` (the identity when weight is 1)."""
    return loss if weight == 1.0 else _ScaleGradient.apply(loss, weight)


class _Step(nn.Module):
    """The objective applied to the model, as one module: DDP then sees every parameter the
    loss uses (the model's and the objective's own) whichever model methods it calls."""

    def __init__(self, model: RobustModel, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, y: torch.Tensor, epoch: int):
        out = self.objective(self.model, x, y, epoch)
        return out.loss, out.scores


class DataParallel:
    """The trainer's hook for one DDP run: shards batches, computes the loss through DDP,
    sums metrics over ranks."""

    def __init__(self, model: RobustModel, objective: Objective) -> None:
        self.rank, self.size = rank_and_size()
        device = next(model.parameters()).device
        self._ddp = DistributedDataParallel(
            _Step(model, objective),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,  # heads and two-phase objectives leave some parameters out
        )

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's entries of a global batch (never empty: tiny batches wrap around)."""
        self._weight = shard_weight(len(batch), self.rank, self.size)
        idx = torch.arange(self.rank, max(len(batch), self.size), self.size) % len(batch)
        return batch[idx]

    def objective(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        loss, scores = self._ddp(x, y, epoch)
        return ObjectiveOutput(scale_gradient(loss, self._weight), scores)

    def sum(self, *values: torch.Tensor | float) -> list[float]:
        """Each value summed over the ranks."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    @torch.no_grad()
    def accuracy(self, model: RobustModel, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of `predict` on (x, y), each rank predicting its 1/N share."""
        mine = slice(self.rank, None, self.size)
        correct = (batched_predict(model, x[mine]) == y[mine].cpu()).sum()
        total_correct, total = self.sum(correct, len(y[mine]))
        return total_correct / max(total, 1.0)


def data_parallel(model: RobustModel, objective: Objective) -> DataParallel | None:
    """A `DataParallel` hook when a process group with more than one rank is up, else None."""
    return DataParallel(model, objective) if rank_and_size()[1] > 1 else None
