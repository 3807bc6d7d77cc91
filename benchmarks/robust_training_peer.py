"""Peer check of `robust_training.py`'s standard Fashion-MNIST model: robustlab's full-strength
ensemble against torchattacks' AutoAttack (standard version: APGD-CE, APGD-T, FAB-T, Square) on
the same test images, sample by sample. The model is retrained exactly as the benchmark trains
it (1,000 images per class, 10 epochs, seed 0).

    PYTHONPATH=src python benchmarks/robust_training_peer.py [N]   # N test images (default 300)

Prints JSON (robust accuracy of each, how many samples each one alone leaves standing, wall
seconds, `uptime`); the measured run is in robust_training_peer.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import torch
import torchattacks
from robust_training import EPS

from robustlab.attacks import AutoAttack
from robustlab.core.contract import batched_predict
from robustlab.core.runtime import seed_everything
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.train import TrainConfig, train


def main(n: int) -> dict:
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", train_per_class=1000, seed=0)
    order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))
    x, y = data.x_test[order[:n]], data.y_test[order[:n]]  # the benchmark's attacked images, first n
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": "softmax", "num_classes": 10,
                         "input_shape": list(data.input_shape)})
    cfg = TrainConfig(seed=0, epochs=10, batch_size=128, optimizer="adam", lr=1e-3, weight_decay=0.0)
    train(model, data.x_train, data.y_train, cfg)
    model.eval()
    start = time.perf_counter()
    ours = ~AutoAttack(eps=EPS, norm="linf", steps=100, n_targets=9, queries=5000)(model, x, y).success
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    x_peer = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard", n_classes=10, seed=0)(x, y)
    t_peer = time.perf_counter() - start
    with torch.no_grad():
        peer = model(x_peer).argmax(1) == y
    return {
        "n": n, "clean": float((batched_predict(model, x) == y).float().mean()),
        "robustlab_robust": float(ours.float().mean()), "torchattacks_robust": float(peer.float().mean()),
        "robust_in_both": int((ours & peer).sum()), "only_robustlab_robust": int((ours & ~peer).sum()),
        "only_torchattacks_robust": int((~ours & peer).sum()),
        "seconds": {"robustlab": t_ours, "torchattacks": t_peer},
        "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300), indent=1))
