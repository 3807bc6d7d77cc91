"""Differentiable image similarity per sample: SSIM, MS-SSIM and CW-SSIM, for images in [0, 1].

SSIM and MS-SSIM come from pytorch-msssim (Gaussian window, sigma 1.5, K = (0.01, 0.03)).
CW-SSIM (Wang & Simoncelli 2005; Sampat et al. 2009) is ours: a complex steerable pyramid
built in the Fourier domain (log-raised-cosine radial bands one octave wide, decimated by 2
per scale; one-sided angular masks cos(theta - theta_b)^(B-1), so every band is analytic
and its coefficients complex), and per band the local index

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


def steerable_filters(h: int, w: int, orientations: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fourier-domain masks of one level of the complex steerable pyramid, (orientations, H, W).

    The radial band passes radii between 1/4 and 1 of the Nyquist frequency of this grid
    (peak at 1/2; log-raised-cosine edges one octave wide); orientation b keeps the half-plane
    around angle pi * b / B with a cos^(B-1) profile, so the band is analytic (complex).
    """
    fy = torch.fft.fftfreq(h, device=device, dtype=dtype)[:, None] * 2.0
    fx = torch.fft.fftfreq(w, device=device, dtype=dtype)[None, :] * 2.0
    log_r = torch.log2(torch.sqrt(fx * fx + fy * fy).clamp_min(1e-6))
    angle = torch.atan2(fy, fx)
    low = torch.cos(0.5 * math.pi * (log_r + 1.0).clamp(0.0, 1.0))  # 1 below 1/2, 0 above 1
    high = torch.sin(0.5 * math.pi * (log_r + 2.0).clamp(0.0, 1.0))  # 0 below 1/4, 1 above 1/2
    order = orientations - 1
    norm = 2.0 ** (2 * order) * math.factorial(order) ** 2 / (orientations * math.factorial(2 * order))
    masks = []
    for b in range(orientations):
        c = torch.cos(angle - math.pi * b / orientations)
        masks.append(low * high * 2.0 * math.sqrt(norm) * c.clamp_min(0.0) ** order)
    return torch.stack(masks)


def _crop_spectrum(spec: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The central (h, w) frequencies of an unshifted spectrum (..., H, W), unshifted again."""
    big_h, big_w = spec.shape[-2:]
    centred = torch.fft.fftshift(spec, dim=(-2, -1))
    top, left = big_h // 2 - h // 2, big_w // 2 - w // 2
    return torch.fft.ifftshift(centred[..., top : top + h, left : left + w], dim=(-2, -1))


def box_sum(t: torch.Tensor, win: int) -> torch.Tensor:
    """Sums over every win x win window (valid positions) of (..., H, W), by running sums."""
    c = F.pad(t.cumsum(-2), (0, 0, 1, 0))
    t = c[..., win:, :] - c[..., :-win, :]
    c = F.pad(t.cumsum(-1), (1, 0))
    return c[..., win:] - c[..., :-win]


class CWSSIM:
    """CW-SSIM against fixed reference images, differentiable in the compared images.

    The reference's pyramid is computed once (attacks compare many iterates to one x).
    Scale s is computed on the spectrum cropped to 1/2^s of the size (a decimated pyramid:
    the band's support fits the cropped grid, so nothing is lost), rescaled so coefficients
    match the undecimated ones; every (scale, orientation) band weighs the same in the mean.
    """

    def __init__(
        self,
        reference: torch.Tensor,
        scales: int | None = None,
        orientations: int = 4,
        window: int = 7,
        k: float = 1e-4,
    ) -> None:
        if reference.dim() != 4:
            raise InputError(f"cw_ssim needs NCHW images, got shape {tuple(reference.shape)}")
        self.shape = tuple(reference.shape)
        n, c, h, w = self.shape
        self.scales = scales or _default_scales(h, w)
        self.window, self.k = window, k
        self.levels = []
        for s in range(self.scales):
            hs, ws = max(h >> s, 1), max(w >> s, 1)
            masks = steerable_filters(hs, ws, orientations, reference.device, reference.dtype)
            self.levels.append((hs, ws, masks, min(window, hs, ws)))
        self.ref = [
            (cx, box_sum(cx.real**2 + cx.imag**2, win))
            for cx, (_, _, _, win) in zip(self._coefficients(reference), self.levels, strict=True)
        ]

    def select(self, index: torch.Tensor) -> CWSSIM:
        """The same measure against the reference images `index` only (no recomputation)."""
        n, c = self.shape[:2]
        rows = (index[:, None] * c + torch.arange(c, device=index.device)).flatten()
        view = object.__new__(CWSSIM)
        view.shape = (len(index), *self.shape[1:])
        view.scales, view.window, view.k, view.levels = self.scales, self.window, self.k, self.levels
        view.ref = [(cx[rows], energy[rows]) for cx, energy in self.ref]
        return view

    def _coefficients(self, x: torch.Tensor) -> list[torch.Tensor]:
        n, c, h, w = x.shape
        spec = torch.fft.fft2(x.reshape(n * c, 1, h, w))
        out = []
        for hs, ws, masks, _ in self.levels:
            cropped = spec if (hs, ws) == (h, w) else _crop_spectrum(spec, hs, ws)
            out.append(torch.fft.ifft2(cropped * masks) * (hs * ws / (h * w)))
        return out

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """CW-SSIM per sample (N,) between the reference and `y` (same shape), in [0, 1]."""
        if tuple(y.shape) != self.shape:
            raise InputError(f"cw_ssim needs two NCHW batches of one shape: {self.shape}, {tuple(y.shape)}")
        n, c = self.shape[:2]
        total = 0.0
        count = 0
        for cy, (cx, energy_x), (_, _, masks, win) in zip(
            self._coefficients(y), self.ref, self.levels, strict=True
        ):
            cross = cx * cy.conj()
            cross_re, cross_im = box_sum(cross.real, win), box_sum(cross.imag, win)
            energy = energy_x + box_sum(cy.real**2 + cy.imag**2, win)
            index = (2.0 * torch.sqrt(cross_re**2 + cross_im**2 + 1e-20) + self.k) / (energy + self.k)
            total = total + index.mean(dim=(2, 3)).sum(dim=1)
            count += masks.shape[0]
        return (total / count).view(n, c).mean(dim=1)


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
    summation window (clipped to each scale); ``k`` the stabilising constant of the index.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise InputError(f"cw_ssim needs two NCHW batches of one shape: {tuple(x.shape)}, {tuple(y.shape)}")
    return CWSSIM(x, scales, orientations, window, k)(y)


SIMILARITIES = {"ssim": ssim, "cw_ssim": cw_ssim}
