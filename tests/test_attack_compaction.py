"""Rows of settled samples leave the batch (APGD, APGD-T, FAB-T within eps): the verdict of every
sample is the one the uncompacted run gives on the same seed, with fewer rows through the model."""

from __future__ import annotations

import pytest
import torch

from robustlab.attacks import APGD, FABT
from robustlab.attacks.apgd import APGDT


def _both(monkeypatch, attack, model, x, y):
    """(result, rows through the model) of `attack` compacted, then uncompacted, on the same seed."""
    out = []
    for every in (type(attack).compact_every, 0):
        monkeypatch.setattr(type(attack), "compact_every", every)
        rows: list[int] = []
        hook = model.register_forward_hook(lambda m, i, o, rows=rows: rows.append(len(i[0])))
        try:
            out.append((attack(model, x, y), sum(rows)))
        finally:
            hook.remove()
    return out


def test_apgd_compaction_keeps_every_point_and_saves_passes(monkeypatch, digits_mlp, digits):
    x, y = digits.x_test[:80], digits.y_test[:80]
    (fast, fast_rows), (full, full_rows) = _both(monkeypatch, APGD(0.1, steps=40), digits_mlp, x, y)
    assert 0 < int(full.success.sum()) < len(x)
    assert torch.equal(fast.success, full.success)
    assert torch.equal(fast.x_adv, full.x_adv)  # a fooled row is frozen: leaving the batch changes nothing
    assert fast_rows < 0.8 * full_rows


@pytest.mark.parametrize("attack", [APGDT(0.08, steps=40, n_targets=4), FABT(eps=0.08, steps=40, n_targets=4)],
                         ids=["apgd-t", "fab-t"])
def test_targets_stop_when_a_sibling_target_settled_the_sample(monkeypatch, digits_mlp, digits, attack):
    # the runs of all targets go side by side; once one target fools a sample within eps, its other
    # targets leave the batch: same verdict per sample, fewer rows through the model
    x, y = digits.x_test[:60], digits.y_test[:60]
    (fast, fast_rows), (full, full_rows) = _both(monkeypatch, attack, digits_mlp, x, y)
    assert 0 < int(full.success.sum()) < len(x)
    assert torch.equal(fast.success, full.success)
    assert bool((fast.distance[fast.success] <= 0.08 + 1e-6).all())
    assert fast_rows < 0.8 * full_rows


def test_rows_to_drop_matches_a_naive_loop() -> None:
    """A row goes when any row of its sample is settled (its own or a sibling's)."""
    from robustlab.attacks.base import rows_to_drop

    gen = torch.Generator().manual_seed(0)
    for samples, runs in ((1, 4), (5, 3), (7, 9)):
        row_sample = torch.arange(samples).repeat(runs)
        row_settled = torch.rand(len(row_sample), generator=gen) < 0.2
        drop, dropped = rows_to_drop(row_sample, row_settled, samples)
        naive = [any(bool(row_settled[j]) for j in range(len(row_sample)) if row_sample[j] == row_sample[i])
                 for i in range(len(row_sample))]
        assert drop.tolist() == naive and dropped == sum(naive)
