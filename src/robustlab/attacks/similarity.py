"""Differentiable image similarity per sample: SSIM, MS-SSIM and CW-SSIM, for images in [0, 1].

SSIM and MS-SSIM come from pytorch-msssim (Gaussian window, sigma 1.5, K = (0.01, 0.03)).
CW-SSIM (Wang & Simoncelli 2005; Sampat et al. 2009) is ours: a complex steerable pyramid
built in the Fourier domain (undecimated; log-raised-cosine radial bands one octave wide,
one-sided angular masks cos(theta - theta_b)^(B-1), so every band is analytic and its
coefficients complex), and per band the local index

    S = (2 |sum_w c_x conj(c_y)| + K) / (sum_w |c_x|^2 + sum_w |c_y|^2 + K)

over a w x w window, averaged over positions, bands and channels. It is 1 for identical
images and, unlike SSIM, insensitive to small translations (the magnitudes of the
coefficients barely change; only their phases shift consistently).
"""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim
from torch.nn import functional as F

from robustlab.core.errors import InputError

SSIM_WINDOW = 11
MS_SSIM_LEVELS = 5


def _window(h: int, w: int, largest: int = SSIM_WINDOW) -> int:
    size = min(largest, h, w)
    return size if size % 2 else size - 1


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per sample (N,) of images (N, C, H, W) in [0, 1]; the window shrinks (odd) for small images."""
    if x.shape != y.shape or x.dim() != 4:
        raise InputError(f"ssim needs two NCHW batches of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    win = _window(x.shape[2], x.shape[3])
    if win < 3:
        raise InputError(f"images of {x.shape[2]}x{x.shape[3]} are too small for SSIM")
    return _ssim(x, y, data_range=1.0, size_average=False, win_size=win)


def ms_ssim_supported(height: int, width: int) -> bool:
    """Whether MS-SSIM (5 scales, 11-pixel window) is defined: the short side must exceed 160."""
    return min(height, width) > (SSIM_WINDOW - 1) * 2 ** (MS_SSIM_LEVELS - 1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per sample (N,) with the standard 5 scales; raises InputError on images too small."""
    if not ms_ssim_supported(x.shape[2], x.shape[3]):
        raise InputError(f"MS-SSIM needs images larger than 160 pixels a side, got {x.shape[2]}x{x.shape[3]}")
    return _ms_ssim(x, y, data_range=1.0, size_average=False, win_size=SSIM_WINDOW)


def _default_scales(h: int, w: int) -> int:
    return max(1, min(4, int(math.log2(max(min(h, w), 1) / 7))))


def steerable_filters(
    h: int, w: int, scales: int, orientations: int, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Fourier-domain masks of the complex steerable pyramid's bands, (scales * orientations, H, W).

    Radial band s passes radii between 2^-(s+2) and 2^-s of the Nyquist frequency (peak at
    2^-(s+1)); orientation b keeps the half-plane around angle pi * b / B (analytic band).
    """
    fy = torch.fft.fftfreq(h, device=device, dtype=dtype)[:, None] * 2.0
    fx = torch.fft.fftfreq(w, device=device, dtype=dtype)[None, :] * 2.0
    radius = torch.sqrt(fx * fx + fy * fy)
    log_r = torch.log2(radius.clamp_min(1e-6))
    angle = torch.atan2(fy, fx)

    def low(t: float) -> torch.Tensor:  # 1 below 2^(t-1), 0 above 2^t, sqrt raised cosine between
        return torch.cos(0.5 * math.pi * (log_r - (t - 1.0)).clamp(0.0, 1.0))

    def high(t: float) -> torch.Tensor:
        return torch.sin(0.5 * math.pi * (log_r - (t - 1.0)).clamp(0.0, 1.0))

    order = orientations - 1
    norm = 2.0 ** (2 * order) * math.factorial(order) ** 2 / (orientations * math.factorial(2 * order))
    masks = []
    for s in range(scales):
        radial = low(-float(s)) * high(-float(s) - 1.0)
        for b in range(orientations):
            c = torch.cos(angle - math.pi * b / orientations)
            angular = 2.0 * math.sqrt(norm) * c.clamp_min(0.0) ** order
            masks.append(radial * angular)
    return torch.stack(masks)


def box_sum(t: torch.Tensor, win: int) -> torch.Tensor:
    """Sums over every win x win window (valid positions) of (..., H, W), by running sums."""
    c = F.pad(t.cumsum(-2), (0, 0, 1, 0))
    t = c[..., win:, :] - c[..., :-win, :]
    c = F.pad(t.cumsum(-1), (1, 0))
    return c[..., win:] - c[..., :-win]


def cw_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    scales: int | None = None,
    orientations: int = 4,
    window: int = 7,
    k: float = 1e-4,
) -> torch.Tensor:
    """CW-SSIM per sample (N,) in [0, 1] of images (N, C, H, W) in [0, 1], differentiable.

    ``scales`` defaults to log2(min(H, W) / 7) clipped to [1, 4]; ``window`` is the local
    summation window (clipped to the image); ``k`` the stabilising constant of the index.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise InputError(f"cw_ssim needs two NCHW batches of one shape: {tuple(x.shape)}, {tuple(y.shape)}")
    n, c, h, w = x.shape
    scales = scales or _default_scales(h, w)
    masks = steerable_filters(h, w, scales, orientations, x.device, x.dtype)  # (B, H, W)
    fx = torch.fft.fft2(x.reshape(n * c, 1, h, w))
    fy = torch.fft.fft2(y.reshape(n * c, 1, h, w))
    cx = torch.fft.ifft2(fx * masks)  # (N*C, B, H, W) complex
    cy = torch.fft.ifft2(fy * masks)
    cross = cx * cy.conj()
    win = min(window, h, w)

    def local_sum(t: torch.Tensor) -> torch.Tensor:
        return box_sum(t, win)

    cross_re, cross_im = local_sum(cross.real), local_sum(cross.imag)
    energy = local_sum(cx.real**2 + cx.imag**2) + local_sum(cy.real**2 + cy.imag**2)
    magnitude = torch.sqrt(cross_re**2 + cross_im**2 + 1e-20)
    index = (2.0 * magnitude + k) / (energy + k)
    return index.mean(dim=(1, 2, 3)).view(n, c).mean(dim=1)


SIMILARITIES = {"ssim": ssim, "cw_ssim": cw_ssim}
