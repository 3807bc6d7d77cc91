"""Shared small models for the paper-001 tests (trained once per test session, CPU-fast)."""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
from sklearn.datasets import load_digits

from robustlab.models import build_model
from robustlab.train import TrainConfig, train


@lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.int64)


@lru_cache(maxsize=1)
def _trained_mlp():
    torch.manual_seed(0)
    x, y = digits()
    model = build_model(
        {
            "backbone": "mlp",
            "head": "softmax",
            "num_classes": 10,
            "input_shape": [1, 8, 8],
            "backbone_args": {"hidden": [64, 32]},
        }
    )
    train(model, x[:1200], y[:1200], TrainConfig(epochs=25, optimizer="sgd", lr=0.05, batch_size=64))
    return model.eval()


def trained_mlp():
    """A fresh copy of an MLP trained on the first 1200 digits (about 95% test accuracy)."""
    return copy.deepcopy(_trained_mlp())
