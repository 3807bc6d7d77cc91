"""The contrastive head (paper 002 eq. 2.13): embeddings trained on mined pairs, k-NN decision."""

from __future__ import annotations

from robustlab.models.heads.base import HEADS
from robustlab.models.heads.triplet import KNNHead


@HEADS.register("contrastive")
class ContrastiveHead(KNNHead):
    """k-NN over embeddings trained by the `contrastive` objective (P x K batches)."""

    objective = "contrastive"
