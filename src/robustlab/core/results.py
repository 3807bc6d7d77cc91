"""`AttackResult`: what every attack returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttackResult:
    """The outcome of one attack on one batch.

    - ``x_adv``: adversarial images, same shape as the input, values in [0, 1];
    - ``success``: bool (N,), the attacker's goal reached, judged by ``model.predict``;
    - ``distance``: float (N,), ||x_adv - x|| in the attack's norm (pixel units, [0, 1] scale);
    - ``queries``: int64 (N,), model evaluations (forward or forward+backward) spent per sample;
    - ``prediction``: int64 (N,), ``model.predict(x_adv)`` (REJECT = -1 when refused);
    - ``extras``: attack-specific tensors or values (e.g. the C&W constant per sample).
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    queries: torch.Tensor
    prediction: torch.Tensor
    extras: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """Fraction of samples on which the attack succeeded."""
        return float(self.success.float().mean()) if len(self) else 0.0
