"""scikit-learn's embedded digits: 1,797 grey 8x8 images of the digits 0-9."""

from __future__ import annotations

import torch

from robustlab.data.dataset import LabelledImages

SOURCE = "sklearn.datasets.load_digits"


def load_digits_pool() -> LabelledImages:
    """All 1,797 digits as (N, 1, 8, 8) float32 in [0, 1] (raw 0..16 divided by 16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1).contiguous()
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return LabelledImages(x, y, [str(int(c)) for c in bunch.target_names], SOURCE)
