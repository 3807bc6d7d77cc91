"""K-A3: groups and ranks on a small model, the eq. 6 check, rank metrics, CW-SSIM properties."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch.nn import functional as F

from paper001_helpers import digits, trained_mlp
from robustlab.attacks import make_attack
from robustlab.attacks.ka3 import KA3, group_k
from robustlab.attacks.similarity import box_sum, cw_ssim, ssim
from robustlab.core.errors import ConfigError, InputError
from robustlab.evaluate.ranks import kanonymity_check, label_ranks, rank_pmf


@lru_cache(maxsize=1)
def _setup():
    model = trained_mlp()
    x, y = digits()
    xt, yt = x[1200:1400], y[1200:1400]
    ok = model.predict(xt) == yt
    return model, xt[ok][:100], yt[ok][:100]


@lru_cache(maxsize=1)
def _ka3_k5():
    model, x, y = _setup()
    result = KA3(K=5, steps=400, similarity="ssim")(model, x, y)
    return result, label_ranks(model(result.x_adv).detach(), y)


def test_ka3_hides_the_label_below_each_groups_k():
    result, ranks = _ka3_k5()
    k = group_k(len(ranks), 5)
    assert sorted(set(k.tolist())) == [2, 3, 4, 5, 6]
    assert result.success.float().mean() >= 0.95
    # success means the label is ranked k or lower (the k - 1 targets outrank it)
    assert torch.equal(result.success, ranks >= k)
    for kk in range(2, 7):
        group = k == kk
        assert (ranks[group] >= kk).float().mean() >= 0.9
    assert bool((result.x_adv >= 0).all() and (result.x_adv <= 1).all())


def test_pmf_check_passes_for_k5_and_fails_for_plain_misclassification():
    _, ranks = _ka3_k5()
    check = kanonymity_check(ranks, 10, 5)
    assert check.passed, check.summary()
    assert check.top1_rate <= 0.05
    model, x, y = _setup()
    one = KA3(K=1, steps=100, similarity="ssim")(model, x, y)  # 1-A3 ~ L-BFGS with target r(2)
    check1 = kanonymity_check(label_ranks(model(one.x_adv).detach(), y), 10, 5)
    assert not check1.passed and check1.pmf[1] > 0.5  # the label sits at rank 2


def test_explicit_groups_and_random_targets():
    model, x, y = _setup()
    x, y = x[:20], y[:20]
    k = torch.full((20,), 3)
    attack = make_attack("ka3", K=4, steps=150, similarity="cw_ssim", targets="random")
    result = attack(model, x, y, criterion=attack.criterion_for(k))
    ranks = label_ranks(model(result.x_adv).detach(), y)
    assert torch.equal(result.success, ranks >= 3)
    assert result.success.float().mean() >= 0.9
    with pytest.raises(InputError):
        KA3(K=2).criterion_for(torch.full((20,), 4))
    with pytest.raises(ConfigError):
        KA3(K=2, criterion="misclassified")
    with pytest.raises(ConfigError):
        KA3(K=2, similarity="psnr")


def test_label_ranks_and_pmf_against_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (50,), generator=g)
    ranks = label_ranks(scores, y)
    for i in range(50):
        order = sorted(range(7), key=lambda j: -scores[i, j].item())
        assert ranks[i].item() == order.index(int(y[i])) + 1
    pmf = rank_pmf(ranks, 7)
    assert pmf.sum().item() == pytest.approx(1.0)
    for j in range(7):
        assert pmf[j].item() == pytest.approx(sum(int(r) == j + 1 for r in ranks) / 50)
    uniform = torch.tensor([2, 3, 4, 5, 6] * 20)
    assert kanonymity_check(uniform, 10, 5).passed_strict
    skewed = torch.tensor([2] * 30 + [3] * 70)
    check = kanonymity_check(skewed, 10, 5)
    assert not check.passed and check.max_p == pytest.approx(0.7)


def test_cw_ssim_properties():
    x, _ = digits()
    img = F.interpolate(x[:16], size=(28, 28), mode="bilinear", align_corners=False)
    assert cw_ssim(img, img) == pytest.approx(torch.ones(16), abs=1e-6)
    shifted = torch.roll(img, 1, dims=3)
    mse = F.mse_loss(shifted, img)
    noise = (img + mse.sqrt() * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1
    )
    # noise of no more MSE: SSIM rates the shift and the noise alike, CW-SSIM keeps the shift far higher
    assert F.mse_loss(noise, img) <= mse
    gap_cw = cw_ssim(img, shifted).mean() - cw_ssim(img, noise).mean()
    gap_ssim = ssim(img, shifted).mean() - ssim(img, noise).mean()
    assert gap_cw > 0.15 and gap_cw > 5 * abs(gap_ssim)
    values = [
        cw_ssim(
            img, (img + a * torch.randn(img.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
        )
        .mean()
        .item()
        for a in (0.02, 0.05, 0.1, 0.2)
    ]
    assert values == sorted(values, reverse=True)
    t = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    assert torch.allclose(box_sum(t, 5), F.avg_pool2d(t, 5, stride=1) * 25)
