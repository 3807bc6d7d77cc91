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


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
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
          f"data {data.name}, model lenet")
    t_floor = timed(lambda: floor(model, x, y, args.steps), device, args.repeats)
    print(f"floor: {args.steps} forward+backward passes: {1000 * t_floor:.1f} ms")
    cases = [
        ("PGD Linf, no early stop (eps 1e-4)", PGD(1e-4, steps=args.steps)),
        ("PGD L2, no early stop (eps 1e-3)", PGD(1e-3, norm="l2", steps=args.steps)),
        ("PGD Linf, eps 0.1 (early stop)", PGD(0.1, steps=args.steps)),
    ]
    print(f"{'attack':42s} {'ms':>8s} {'ratio to floor':>15s} {'robust acc':>11s}")
    for label, attack in cases:
        t = timed(lambda a=attack: a(model, x, y), device, args.repeats)
        r = attack(model, x, y)
        print(f"{label:42s} {1000 * t:8.1f} {t / t_floor:15.3f} {float((r.prediction == y).float().mean()):11.3f}")


if __name__ == "__main__":
    main()
