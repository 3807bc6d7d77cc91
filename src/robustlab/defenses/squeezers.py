"""Feature squeezers (Xu et al. 2018; paper 002, Algorithms 2 and 3): images in [0, 1] -> same shape.

A squeezer is written as a short spec string:

- ``bits:B`` (B in 1..8): bit-depth reduction, round(x * (2^B - 1)) / (2^B - 1);
- ``hsv:B`` (B in 1..8): paper 002's colour-bit squeezing: RGB -> HSV (kornia), each of H, S
  and V (all scaled to [0, 1]) rounded to B bits, HSV -> RGB. Algorithm 2 as printed loops
  i = 1..7 over the same channel, and after i = 1 every value is 0 or 1, which later
  passes keep: the printed algorithm is ``hsv:1``. A one-channel image is its own V
  (H = S = 0), so ``hsv:B`` on grey images equals ``bits:B``;
- ``median:K`` (K in 2..5): median over a K x K window (reflect padding; for even K the
  window reaches one pixel further right/down, and the upper of the two middle values is
  taken, as scipy's ``median_filter``);
- ``mean:K`` (K in 2..5): mean over a K x K window (kornia ``box_blur``, reflect padding);
  Algorithm 3 is ``mean:3``.

Gradients: rounding and the median are not differentiable (zero or sparse gradients).
With ``bpda`` on (the default) their backward pass is the identity (straight-through);
``bpda = False`` gives the true gradient. The mean filter and the colour conversions are
differentiable and always use their true gradient.
"""

from __future__ import annotations

import math
from typing import ClassVar, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry
from robustlab.defenses.base import straight_through

S = TypeVar("S", bound="Squeezer")


class Squeezer(nn.Module):
    """Base: ``spec`` names the squeezer; ``exact_gradient`` False when BPDA applies."""

    kind: ClassVar[str]
    exact_gradient: ClassVar[bool] = False

    def __init__(self, size: int, bpda: bool = True) -> None:
        super().__init__()
        self.size = int(size)
        self.bpda = bool(bpda)

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.size}"

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.squeeze(x)
        return straight_through(x, y) if (self.bpda and not self.exact_gradient) else y


SQUEEZERS: Registry[type[Squeezer]] = Registry("squeezer")


def register_squeezer(cls: type[S]) -> type[S]:
    """Add a squeezer class under its `kind` (a class decorator; specs read "<kind>:<size>")."""
    return SQUEEZERS.register(cls.kind, cls)


def _check_bits(bits: int) -> int:
    if not 1 <= bits <= 8:
        raise ConfigError(f"bit depth must be an integer in 1..8, got {bits}")
    return bits


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """round(x * (2^bits - 1)) / (2^bits - 1) (true gradient: zero almost everywhere)."""
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


@register_squeezer
class BitDepth(Squeezer):
    kind = "bits"

    def __init__(self, size: int, bpda: bool = True) -> None:
        super().__init__(_check_bits(size), bpda)

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x, self.size)


@register_squeezer
class HSVBits(Squeezer):
    """Colour-bit squeezing in HSV; only the rounding is straight-through under BPDA."""

    kind = "hsv"
    exact_gradient = True  # the rounding handles BPDA itself; the conversions are differentiable

    def __init__(self, size: int, bpda: bool = True) -> None:
        super().__init__(_check_bits(size), bpda)

    def _round(self, v: torch.Tensor) -> torch.Tensor:
        q = quantize(v, self.size)
        return straight_through(v, q) if self.bpda else q

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return self._round(x)
        import kornia  # imported on use: it costs the CLI's start-up ~2 s otherwise

        hsv = kornia.color.rgb_to_hsv(x)
        h = hsv[:, :1] / (2 * math.pi)
        h = self._round(h) % 1.0  # H = 1 is H = 0 (red)
        s, v = self._round(hsv[:, 1:2]), self._round(hsv[:, 2:3])
        rgb = kornia.color.hsv_to_rgb(torch.cat([h * (2 * math.pi), s, v], dim=1))
        return rgb.clamp(0.0, 1.0)


def _check_kernel(k: int) -> int:
    if not 2 <= k <= 5:
        raise ConfigError(f"smoothing window must be an integer in 2..5, got {k}")
    return k


def _pad(x: torch.Tensor, k: int) -> torch.Tensor:
    """Reflect padding so that a K x K window at (i, j) covers rows i - (K-1)//2 .. i + K//2."""
    lo, hi = (k - 1) // 2, k // 2
    mode = "reflect" if min(x.shape[-2:]) > hi else "replicate"
    return F.pad(x, (lo, hi, lo, hi), mode=mode)


@register_squeezer
class MedianSmooth(Squeezer):
    kind = "median"

    def __init__(self, size: int, bpda: bool = True) -> None:
        super().__init__(_check_kernel(size), bpda)

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        k = self.size
        if k % 2 == 1:
            import kornia

            return kornia.filters.median_blur(x, (k, k))
        n, c, h, w = x.shape
        patches = F.unfold(_pad(x, k), k).view(n, c, k * k, h * w)
        return patches.sort(dim=2).values[:, :, (k * k) // 2].view(n, c, h, w)


@register_squeezer
class MeanSmooth(Squeezer):
    kind = "mean"
    exact_gradient = True

    def __init__(self, size: int, bpda: bool = True) -> None:
        super().__init__(_check_kernel(size), bpda)

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        k = self.size
        if k % 2 == 1:
            import kornia

            return kornia.filters.box_blur(x, (k, k), border_type="reflect")
        return F.avg_pool2d(_pad(x, k), k, stride=1)


def make_squeezer(spec: str, bpda: bool = True) -> Squeezer:
    """The squeezer a spec string names ("bits:4", "hsv:1", "median:2", "mean:3")."""
    kind, _, size = str(spec).lower().partition(":")
    cls = SQUEEZERS.get(kind)
    try:
        n = int(size)
    except ValueError:
        raise ConfigError(f"squeezer {spec!r} needs an integer size, e.g. {kind}:2") from None
    return cls(n, bpda=bpda)


def check_squeezers(specs) -> list[str]:
    """Validate a list of squeezer specs (non-empty, each known); return them normalised."""
    if isinstance(specs, str):
        specs = [specs]
    specs = list(specs or [])
    if not specs:
        raise ConfigError("give at least one squeezer (e.g. bits:4, median:2)")
    return [make_squeezer(s).spec for s in specs]
