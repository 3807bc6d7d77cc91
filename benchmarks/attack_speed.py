"""Attack speed: each iterative attack's time divided by its floor, measured in one run.

The floor of an attack that makes S gradient steps is the time of S forward+backward
passes (input gradient only, `torch.autograd.grad`) on the same model and batch: no
attack can take a step for less. A ratio of 1.05 means 5% overhead for projections,
bookkeeping, the clean check and the final judging pass.

Two settings per attack: "no early stop" (eps so small that no sample is fooled, so every
step runs on the whole batch: pure overhead) and "typical eps" (early stop active).

    python benchmarks/attack_speed.py [--batch 250] [--steps 40] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from robustlab.attacks import PGD
from robustlab.core import pick_device, seed_everything
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.train import TrainConfig, train


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(device: torch.device) -> Callable[[], float]:
    """Process CPU time on the CPU (robust to other processes on a shared machine; exact with
    one torch thread), wall time on CUDA."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def once(fn: Callable[[], object], device: torch.device) -> float:
    now = clock(device)
    sync(device)
    start = now()
    fn()
    sync(device)
    return now() - start


def paired(fn: Callable[[], object], reference: Callable[[], object], device: torch.device, repeats: int):
    """(median time of fn, median time of reference, median of the per-pair ratios), the two run
    alternately so that drifts in machine load hit both alike."""
    fn(), reference()
    pairs = [(once(fn, device), once(reference, device)) for _ in range(repeats)]
    t_fn = statistics.median(p[0] for p in pairs)
    t_ref = statistics.median(p[1] for p in pairs)
    return t_fn, t_ref, statistics.median(a / b for a, b in pairs)


def floor(model, x, y, passes: int) -> None:
    """`passes` forward+backward passes for the input gradient, nothing else."""
    for _ in range(passes):
        xr = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y, reduction="sum")
        torch.autograd.grad(loss, xr)


def trained_lenet(device: torch.device):
    """LeNet-5 on 2,000 Fashion-MNIST images (digits upscaled to 28x28 when it is absent)."""
    try:
        data = load_dataset("fashion-mnist", download=False).subset(n_train=3000, n_test=1000)
    except Exception:  # noqa: BLE001 - any failure: fall back on the embedded data
        data = load_dataset("digits", resize=28)
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": "softmax", "num_classes": data.num_classes,
                         "input_shape": list(data.input_shape)}).to(device)
    train(model, data.x_train.to(device), data.y_train.to(device),
          TrainConfig(epochs=8, optimizer="adam", lr=0.002, weight_decay=0.0, batch_size=128))
    return model.eval(), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU time is exact with 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    model, data = trained_lenet(device)
    # Only correctly classified samples: the attack then works on the whole batch, as the floor does.
    correct = (model.predict(data.x_test.to(device)) == data.y_test.to(device)).cpu()
    x = data.x_test[correct][: args.batch].to(device)
    y = data.y_test[correct][: args.batch].to(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {len(x)}, steps {args.steps}, "
          f"data {data.name}, model lenet, clock {'process CPU time' if device.type == 'cpu' else 'wall'}")
    floor_fn = lambda: floor(model, x, y, args.steps)  # noqa: E731
    cases = [
        ("PGD Linf, no early stop (eps 1e-4)", PGD(1e-4, steps=args.steps)),
        ("PGD L2, no early stop (eps 1e-3)", PGD(1e-3, norm="l2", steps=args.steps)),
        ("PGD Linf, eps 0.1 (early stop)", PGD(0.1, steps=args.steps)),
    ]
    print(f"{'attack':42s} {'ms':>8s} {'floor ms':>9s} {'ratio to floor':>15s} {'robust acc':>11s}")
    for label, attack in cases:
        t, t_floor, ratio = paired(lambda a=attack: a(model, x, y), floor_fn, device, args.repeats)
        acc = float((attack(model, x, y).prediction == y).float().mean())
        print(f"{label:42s} {1000 * t:8.1f} {1000 * t_floor:9.1f} {ratio:15.3f} {acc:11.3f}")


if __name__ == "__main__":
    main()
