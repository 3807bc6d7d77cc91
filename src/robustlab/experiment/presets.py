"""Built-in experiments. `DEMO` is what `robustlab demo` runs: small models on the embedded digits."""

from __future__ import annotations

from typing import Any

DEMO: dict[str, Any] = {
    "name": "demo",
    "data": {"name": "digits", "seed": 0},
    "models": [
        {
            "id": "mlp-softmax",
            "model": {"backbone": "mlp", "head": "softmax", "backbone_args": {"hidden": [256, 128]}},
            "train": {"epochs": 20, "optimizer": "adam", "lr": 0.002, "weight_decay": 0.0, "batch_size": 64},
        },
        {
            "id": "lenet-softmax",
            "model": {"backbone": "lenet", "head": "softmax"},
            "train": {"epochs": 20, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0, "batch_size": 64},
        },
    ],
    "attacks": [
        {"name": "fgsm"},
        {"name": "pgd", "steps": 20, "restarts": 1},
        {"name": "autoattack", "steps": 50, "n_targets": 3, "queries": 1000},
    ],
    "eps": [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5],
}
