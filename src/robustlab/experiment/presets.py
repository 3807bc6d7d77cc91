"""Built-in experiments. `DEMO` is what `robustlab demo` runs: the same small LeNet-5 backbone on
the embedded digits with a classification head (softmax) and two feature-space heads (triplet
loss with a k-NN decision, prototype conformity loss with a nearest-prototype decision), plus a
softmax MLP, attacked side by side, with the attacks' binarization self-test on 30 images."""

from __future__ import annotations

from typing import Any

_ADAM = {"epochs": 20, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0, "batch_size": 64}

DEMO: dict[str, Any] = {
    "name": "demo",
    "data": {"name": "digits", "seed": 0},
    "models": [
        {
            "id": "mlp-softmax",
            "model": {"backbone": "mlp", "head": "softmax", "backbone_args": {"hidden": [256, 128]}},
            "train": {**_ADAM, "lr": 0.002},
        },
        {"id": "lenet-softmax", "model": {"backbone": "lenet", "head": "softmax"}, "train": _ADAM},
        {"id": "lenet-triplet-knn", "model": {"backbone": "lenet", "head": "triplet"}, "train": _ADAM},
        {
            "id": "lenet-pcl",
            "model": {"backbone": "lenet", "head": "pcl", "head_args": {"decision": "prototype"}},
            "train": {**_ADAM, "objective_args": {"warmup_epochs": 5}},
        },
    ],
    "attacks": [
        {"name": "fgsm"},
        {"name": "pgd", "steps": 20, "restarts": 1},
        {"name": "autoattack", "steps": 50, "n_targets": 3, "queries": 500},
    ],
    "eps": [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
    "self_test": {"samples": 30},  # the binarization test on 30 images per eps: ~10% of the demo's time
}
