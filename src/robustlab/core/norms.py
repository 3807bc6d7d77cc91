"""Perturbation norms, projections onto norm balls, and per-sample distances (pixel units)."""

from __future__ import annotations

import torch

from robustlab.core.errors import ConfigError
from robustlab.core.threat import Norm

NORMS: tuple[Norm, ...] = tuple(Norm)


def check_norm(norm: Norm | str, allowed: tuple[Norm, ...] = NORMS) -> Norm:
    """`norm` as a `Norm` (aliases "inf", "2", ... accepted), or `ConfigError` naming the allowed norms."""
    return Norm.parse(norm, tuple(allowed))


def flat_norm(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample norm of `delta` (N, ...) -> (N,)."""
    flat = delta.flatten(1)
    if norm == Norm.LINF:
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == Norm.L2:
        return flat.norm(p=2, dim=1)
    if norm == Norm.L1:
        return flat.abs().sum(dim=1)
    if norm == Norm.L0:
        return (flat != 0).sum(dim=1).to(flat.dtype)
    raise ConfigError(f"unknown norm {norm!r}")


def distance(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample distance ||x_adv - x|| in `norm`, (N,)."""
    return flat_norm(x_adv - x, norm)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project(delta: torch.Tensor, norm: Norm, eps: float | torch.Tensor) -> torch.Tensor:
    """Project perturbations onto the `norm` ball of radius `eps` (scalar or per sample)."""
    if norm == Norm.LINF:
        if isinstance(eps, torch.Tensor):
            e = _expand(eps, delta)
            return torch.maximum(torch.minimum(delta, e), -e)
        return delta.clamp(-eps, eps)
    if norm == Norm.L2:
        n = flat_norm(delta, Norm.L2).clamp_min(1e-12)
        e = eps if isinstance(eps, torch.Tensor) else torch.full_like(n, float(eps))
        factor = torch.minimum(torch.ones_like(n), e / n)
        return delta * _expand(factor, delta)
    raise ConfigError(f"projection onto the {norm} ball is not supported")


def normalize_direction(g: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit `norm` for gradient `g`: sign(g) for Linf, g/||g||2 for L2."""
    if norm == Norm.LINF:
        return g.sign()
    if norm == Norm.L2:
        return g / _expand(flat_norm(g, Norm.L2).clamp_min(1e-12), g)
    if norm == Norm.L1:
        return g / _expand(flat_norm(g, Norm.L1).clamp_min(1e-12), g)
    raise ConfigError(f"no steepest direction for norm {norm!r}")


def random_in_ball(
    like: torch.Tensor, norm: Norm, eps: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform random perturbations inside the `norm` ball of radius `eps`, shaped like `like`.

    `generator` lives on the CPU; samples are drawn there and moved to `like`'s device so
    that results do not depend on the device.
    """
    shape = like.shape
    if norm == Norm.LINF:
        u = torch.rand(shape, generator=generator, dtype=torch.float32)
        out = (2 * u - 1) * eps
    elif norm == Norm.L2:
        direction = torch.randn(shape, generator=generator, dtype=torch.float32)
        direction = direction / _expand(flat_norm(direction, Norm.L2).clamp_min(1e-12), direction)
        d = direction[0].numel()
        radius = torch.rand(shape[0], generator=generator, dtype=torch.float32) ** (1.0 / d) * eps
        out = direction * _expand(radius, direction)
    else:
        raise ConfigError(f"random start in the {norm} ball is not supported")
    return out.to(device=like.device, dtype=like.dtype)
