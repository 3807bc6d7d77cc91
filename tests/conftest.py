import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from attack_models import train_digits_mlp  # noqa: E402


@pytest.fixture(scope="session")
def digits_mlp():
    """(model, x_test, y_test): one tiny trained model for the whole session."""
    torch.set_num_threads(2)
    return train_digits_mlp()
