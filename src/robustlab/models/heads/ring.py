"""The ring-loss head (paper 002 eq. 2.9-2.10): softmax logits, trained with cross-entropy
plus lambda/2 * (||f|| - R)^2 (the `ring` objective, which holds the learned R)."""

from __future__ import annotations

from robustlab.models.heads.base import HEADS
from robustlab.models.heads.softmax import SoftmaxHead


@HEADS.register("ring")
class RingHead(SoftmaxHead):
    """Linear logits (N, C); decision = argmax. Differs from softmax only in its objective."""

    objective = "ring"
