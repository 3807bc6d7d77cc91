"""The trainer: it learns, it is bit-reproducible, and its schedule does what it says."""

from __future__ import annotations

import pytest
import torch

from robustlab.core import ConfigError, seed_everything
from robustlab.models import build_model
from robustlab.train import TrainConfig, train
from robustlab.train.trainer import _lr_factor

CFG = {"backbone": "lenet", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}


def _train(digits, seed: int, epochs: int = 2):
    seed_everything(seed)
    model = build_model(CFG)
    cfg = TrainConfig(epochs=epochs, optimizer="sgd", lr=0.05, batch_size=64, seed=seed)
    logs = train(model, digits.x_train[:600], digits.y_train[:600], cfg,
                 x_test=digits.x_test[:200], y_test=digits.y_test[:200])
    return model, logs


def test_same_seed_gives_bit_identical_weights(digits):
    a, logs_a = _train(digits, seed=5)
    b, logs_b = _train(digits, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert [log.loss for log in logs_a] == [log.loss for log in logs_b]
    c, _ = _train(digits, seed=6)
    assert not torch.equal(a.backbone.conv1.weight, c.backbone.conv1.weight)


def test_training_learns_and_logs(digits_mlp, digits):
    acc = float((digits_mlp.predict(digits.x_test) == digits.y_test).float().mean())
    assert acc > 0.9
    _, logs = _train(digits, seed=0, epochs=3)
    assert [log.epoch for log in logs] == [1, 2, 3]
    assert all(log.test_accuracy is not None for log in logs)
    assert logs[-1].loss < logs[0].loss


def test_lr_schedules():
    cos = TrainConfig(schedule="cosine")
    assert _lr_factor(cos, 0.0) == 1.0 and abs(_lr_factor(cos, 0.5) - 0.5) < 1e-12
    step = TrainConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert _lr_factor(step, 0.4) == 1.0
    assert abs(_lr_factor(step, 0.6) - 0.1) < 1e-12 and abs(_lr_factor(step, 0.8) - 0.01) < 1e-12
    assert _lr_factor(TrainConfig(schedule="constant"), 0.9) == 1.0


@pytest.mark.parametrize("kwargs", [{"optimizer": "rmsprop"}, {"schedule": "linear"}, {"lr": 0}, {"epochs": -1}])
def test_bad_train_config(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_unknown_objective(digits):
    model = build_model(CFG)
    with pytest.raises(ConfigError, match="unknown objective"):
        train(model, digits.x_train[:10], digits.y_train[:10], TrainConfig(epochs=1, objective="nope"))
