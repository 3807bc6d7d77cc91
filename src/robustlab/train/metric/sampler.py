"""P x K batch sampling for metric losses: each batch holds P classes with K images each."""

from __future__ import annotations

import math

import torch

from robustlab.core.errors import ConfigError


def pk_batches(
    labels: torch.Tensor, batch_size: int, k: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Index batches for one epoch: ceil(N / batch_size) batches of P = batch_size // K classes x K.

    Classes are drawn at random without replacement within a batch (all of them when there
    are fewer than P); each class's images are consumed in a fresh random order and the order
    is redrawn when it runs out, without repeating an image inside a batch unless the class has
fewer than K images. The epoch has
    as many batches as a plain shuffle of the same batch size, so epoch costs compare.
    """
    if k < 1 or batch_size < 2 * k:
        raise ConfigError(f"P x K sampling needs K >= 1 and batch_size >= 2K, got K={k}, batch={batch_size}")
    labels = labels.cpu()
    classes = labels.unique()
    members = [(labels == c).nonzero().squeeze(1) for c in classes.tolist()]
    queues = [m[torch.randperm(len(m), generator=generator)] for m in members]
    pos = [0] * len(members)
    p = min(batch_size // k, len(classes))
    batches = []
    for _ in range(math.ceil(len(labels) / batch_size)):
        chosen = torch.randperm(len(classes), generator=generator)[:p].tolist()
        parts = []
        for c in chosen:
            if pos[c] + k > len(queues[c]):  # refill: the leftovers first, then the others, no repeats
                rest = queues[c][pos[c]:]
                others = members[c][~torch.isin(members[c], rest)]
                fresh = [others[torch.randperm(len(others), generator=generator)]]
                for _ in range(k // len(members[c]) + 1):
                    fresh.append(members[c][torch.randperm(len(members[c]), generator=generator)])
                queues[c], pos[c] = torch.cat([rest, *fresh]), 0
            parts.append(queues[c][pos[c] : pos[c] + k])
            pos[c] += k
        batches.append(torch.cat(parts))
    return batches
