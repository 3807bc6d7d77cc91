"""Perturbation size and visual similarity per sample, as the paper reports them (Tables 2-4).

MSE is the per-pixel mean squared error (values on the [0, 1] scale). Similarity is SSIM
for grey images and MS-SSIM for colour images large enough for its five scales (short side
> 160 pixels), SSIM otherwise; `similarity` says which one it computed.
"""

from __future__ import annotations

import torch

from robustlab.attacks.similarity import ms_ssim, ms_ssim_supported, ssim


def mse(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over pixels, (N,), float64."""
    return (x_adv.double() - x.double()).pow(2).flatten(1).mean(dim=1)


def similarity_name(shape: tuple[int, ...]) -> str:
    """ "ms_ssim" for colour images big enough for it, else "ssim" (shape is (..., C, H, W))."""
    c, h, w = shape[-3:]
    return "ms_ssim" if c == 3 and ms_ssim_supported(h, w) else "ssim"


@torch.no_grad()
def similarity(x: torch.Tensor, x_adv: torch.Tensor, batch_size: int = 256) -> tuple[str, torch.Tensor]:
    """(name, per-sample values (N,) in [0, 1]) of SSIM or MS-SSIM between x and x_adv."""
    name = similarity_name(tuple(x.shape))
    fn = ms_ssim if name == "ms_ssim" else ssim
    parts = [
        fn(x[i : i + batch_size].float(), x_adv[i : i + batch_size].float()).cpu()
        for i in range(0, len(x), batch_size)
    ]
    return name, torch.cat(parts) if parts else torch.empty(0)
