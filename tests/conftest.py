"""Shared fixtures: a small trained digits model, a linear model with a closed-form boundary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlab.core.contract import RobustModel
from robustlab.core.runtime import seed_everything
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).parent))  # attack_models, the attack tests' model zoo


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def digits_mlp(digits):
    """An MLP trained on digits to ~95% test accuracy (a few seconds on 2 cores)."""
    seed_everything(0)
    model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
    cfg = TrainConfig(epochs=15, optimizer="adam", lr=0.003, weight_decay=0.0, batch_size=64, seed=0)
    train(model, digits.x_train, digits.y_train, cfg)
    return model.eval()


@pytest.fixture(scope="session")
def attack_batch(digits):
    """120 test images with their true labels."""
    return digits.x_test[:120].clone(), digits.y_test[:120].clone()


class LinearBinary(RobustModel):
    """scores = [0, w.x + b]: class 1 iff w.x + b > 0; minimal L2 distance |w.x + b| / ||w||."""

    def __init__(self, w: torch.Tensor, b: float, input_shape=(1, 4, 4)) -> None:
        super().__init__(2, input_shape)
        self.w = torch.nn.Parameter(w.reshape(-1).clone())
        self.b = torch.nn.Parameter(torch.tensor(float(b)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        margin = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(margin), margin], dim=1)

    def boundary_distance(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (x.flatten(1) @ self.w + self.b).abs() / self.w.norm()


@pytest.fixture
def linear_model():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(16, generator=g) * 0.2
    return LinearBinary(w, b=0.05).eval()


@pytest.fixture
def linear_points(linear_model):
    """Points around 0.5 whose nearest boundary point lies well inside [0, 1]."""
    g = torch.Generator().manual_seed(4)
    x = 0.5 + 0.05 * torch.randn(32, 1, 4, 4, generator=g)
    x = x.clamp(0.3, 0.7)
    y = linear_model.predict(x)
    return x, y


@pytest.fixture(scope="session")
def attack_mlp(digits_mlp, digits):
    """(model, x_test, y_test) for the attack tests: the session's digits MLP and its test split."""
    return digits_mlp, digits.x_test, digits.y_test


@pytest.fixture(scope="module")
def fault_attacks():
    """The executor tests' plugin (tests/grid_faults.py) registered for one module, then removed
    again, so the registry other tests see holds only robustlab's own attacks."""
    import importlib

    from robustlab.attacks.registry import ATTACKS

    module = importlib.import_module("grid_faults")
    yield module
    for cls in module.FAULTS:
        if cls.name in ATTACKS:
            ATTACKS.remove(cls.name)
    sys.modules.pop("grid_faults", None)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs mounted on tmp_path in a private mount namespace: a full disk (skips where a
    user namespace cannot mount one)."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    return tmp_path
