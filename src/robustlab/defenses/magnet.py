"""MagNet (Meng & Chen 2017; paper 002, Table 4.7 and Appendix A).

Denoising autoencoders trained on clean images (plus Gaussian noise of std ``noise``,
clipped to [0, 1]) serve two roles:

- **detectors**: ``recon:1`` / ``recon:2`` score an input by its reconstruction error,
  mean |x - ae(x)|^p over pixels; ``jsd:T`` by the Jensen-Shannon divergence between the
  classifier's softmax at temperature T on x and on ae(x). Each detector's threshold is
  fitted on clean validation data for a false-positive rate of ``fpr / len(detectors)``, so
  together they reject at most ``fpr`` of clean inputs; REJECT when any fires;
- **reformer**: the classifier decides on ae(x) instead of x.

Structure (Appendix A's ``structure``): a list of conv widths (3 x 3 convolutions, each
followed by the activation) and ``"pool"`` (2 x 2 average pooling; the decoder mirrors the
encoder with nearest upsampling), then a 3 x 3 conv back to the image channels and a
sigmoid. MagNet's MNIST detector I is ``[3, "pool", 3]``. A *pack* of ``n_pack``
autoencoders (Appendix A's PackedAutoEncoder) is trained jointly with the loss
sum_i MSE(ae_i(x~), x) - alpha * sum_i MSE(ae_i(x~), mean_j ae_j(x~)), which pushes them
apart; with ``n_pack > 1`` each forward picks one autoencoder per image at random
(MagNet's "graybox" diversity), so the model is randomized and evaluated with EOT.

Everything is differentiable: the gradient path is "exact" (or "bpda+eot" for a pack).
Table 4.7's settings are the defaults: Adam, batch 256, 250 epochs, noise regularisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import seed_everything
from robustlab.defenses.base import (
    REJECT_SCALE,
    DefenseBuild,
    DetectorModel,
    check_fpr,
    check_fraction,
    fit_threshold,
    rejection_rate,
    split_validation,
)
from robustlab.defenses.registry import Defense, register_defense
from robustlab.models.classifier import Classifier

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def check_structure(structure: Sequence[int | str], input_shape: Sequence[int]) -> list[int | str]:
    """Validate an autoencoder structure against the image shape (C, H, W)."""
    out: list[int | str] = []
    pools = 0
    for item in structure:
        if isinstance(item, str) and item.lower() in ("pool", "average", "avg"):
            out.append("pool")
            pools += 1
        elif isinstance(item, int) and not isinstance(item, bool) and item >= 1:
            out.append(int(item))
        else:
            raise ConfigError(f"autoencoder structure entries are conv widths >= 1 or 'pool', got {item!r}")
    if not any(isinstance(i, int) for i in out):
        raise ConfigError("the autoencoder structure needs at least one conv width, e.g. [3, 'pool', 3]")
    _, h, w = input_shape
    if h % (2**pools) or w % (2**pools):
        raise ConfigError(f"{pools} pooling layers need image sides divisible by {2**pools}, got {h} x {w}")
    return out


class DenoisingAutoencoder(nn.Module):
    """Conv encoder/decoder from a `structure` (see the module docstring); output in [0, 1]."""

    def __init__(self, channels: int, structure: Sequence[int | str], activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        width = channels
        for item in structure:
            if item == "pool":
                layers.append(nn.AvgPool2d(2))
            else:
                layers += [nn.Conv2d(width, int(item), 3, padding=1), act()]
                width = int(item)
        for item in reversed(structure):
            if item == "pool":
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                layers += [nn.Conv2d(width, int(item), 3, padding=1), act()]
                width = int(item)
        layers += [nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def check_detectors(detectors: Sequence[str]) -> list[str]:
    """Validate detector specs: recon:1, recon:2, jsd:T (T > 0)."""
    out = []
    for d in detectors or []:
        kind, _, arg = str(d).lower().partition(":")
        if kind == "recon" and arg in ("1", "2"):
            out.append(f"recon:{arg}")
        elif kind == "jsd":
            try:
                t = float(arg)
            except ValueError:
                t = float("nan")
            if not t > 0:
                raise ConfigError(f"a jsd detector needs a temperature > 0, e.g. jsd:10, got {d!r}")
            out.append(f"jsd:{t:g}")
        else:
            raise ConfigError(f"unknown MagNet detector {d!r}; choose recon:1, recon:2 or jsd:T")
    return out


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JSD(p || q) per row, natural log, in [0, log 2]."""
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(dim=1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


class MagNetModel(DetectorModel):
    """Detectors + reformer in front of `base` (see the module docstring)."""

    defense_name = "magnet"

    def __init__(
        self,
        base: Classifier,
        structure: Sequence[int | str] = (3, "pool", 3),
        *,
        n_pack: int = 1,
        activation: str = "relu",
        detectors: Sequence[str] = ("recon:1", "jsd:10"),
        reformer: bool = True,
        bpda: bool = True,
    ) -> None:
        super().__init__(base, bpda=bpda)
        self.structure = check_structure(structure, base.input_shape)
        self.detector_specs = check_detectors(detectors)
        if not isinstance(n_pack, int) or n_pack < 1:
            raise ConfigError(f"n_pack must be an integer >= 1, got {n_pack!r}")
        if not self.detector_specs and not reformer:
            raise ConfigError("MagNet needs at least one detector or the reformer")
        self.activation = activation
        self.reformer = bool(reformer)
        channels = base.input_shape[0]
        self.autoencoders = nn.ModuleList(
            DenoisingAutoencoder(channels, self.structure, activation) for _ in range(n_pack)
        )
        self.register_buffer("thresholds", torch.full((len(self.detector_specs),), float("inf")))
        self.gradient_path = "bpda+eot" if n_pack > 1 else "exact"
        if not self.detector_specs:
            self.threshold.fill_(float("inf"))
        else:
            self.threshold.fill_(1.0)

    # ----------------------------------------------------------------- pieces
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """ae(x), with one autoencoder of the pack drawn at random per image when n_pack > 1."""
        if len(self.autoencoders) == 1:
            return self.autoencoders[0](x)
        outs = torch.stack([ae(x) for ae in self.autoencoders], dim=1)  # (N, P, C, H, W)
        pick = torch.randint(len(self.autoencoders), (len(x),), device=x.device)
        return outs[torch.arange(len(x), device=x.device), pick]

    def raw_scores(self, x: torch.Tensor, recon: torch.Tensor | None = None) -> torch.Tensor:
        """Each detector's score (N, D) before its threshold."""
        recon = self.reconstruct(x) if recon is None else recon
        cols = []
        for spec in self.detector_specs:
            kind, _, arg = spec.partition(":")
            if kind == "recon":
                cols.append((x - recon).abs().pow(int(arg)).flatten(1).mean(dim=1))
            else:
                t = float(arg)
                cols.append(jensen_shannon(F.softmax(self.base(x) / t, 1), F.softmax(self.base(recon) / t, 1)))
        return torch.stack(cols, dim=1) if cols else x.new_zeros(len(x), 0)

    # ----------------------------------------------------------------- DetectorModel
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.embed(self.reconstruct(x) if self.reformer else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        recon = self.reconstruct(x)
        z = self.base(recon if self.reformer else x)
        if not self.detector_specs:
            return torch.cat([z, z.new_full((len(z), 1), float("-inf"))], dim=1)
        ratio = (self.raw_scores(x, recon) / self.thresholds.clamp_min(1e-12)).max(dim=1).values
        reject = z.max(dim=1).values + REJECT_SCALE * torch.log(ratio.clamp_min(1e-12))
        return torch.cat([z, reject[:, None]], dim=1)

    def classify_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[:, : self.num_classes]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        recon = self.reconstruct(x)
        labels = self.base.predict(recon if self.reformer else x)
        if not self.detector_specs:
            return labels
        fired = (self.raw_scores(x, recon) > self.thresholds).any(dim=1)
        return torch.where(fired, torch.full_like(labels, -1), labels)

    def detection_score(self, x: torch.Tensor) -> torch.Tensor:
        """max over detectors of score / threshold, (N,): > 1 means detected."""
        if not self.detector_specs:
            return x.new_zeros(len(x))
        return (self.raw_scores(x) / self.thresholds.clamp_min(1e-12)).max(dim=1).values

    @torch.no_grad()
    def fit_threshold(self, x_val: torch.Tensor, fpr: float, batch_size: int = 512) -> float:
        """Each detector at false-positive rate fpr / D on clean `x_val`; returns fpr / D."""
        fpr = check_fpr(fpr)
        if not self.detector_specs:
            return 0.0
        device = self.thresholds.device
        scores = torch.cat(
            [self.raw_scores(x_val[i : i + batch_size].to(device)) for i in range(0, len(x_val), batch_size)]
        )
        share = fpr / len(self.detector_specs)
        for j in range(len(self.detector_specs)):
            self.thresholds[j] = fit_threshold(scores[:, j], share)
        return share

    def defense_args(self) -> dict[str, Any]:
        return {
            "structure": list(self.structure),
            "n_pack": len(self.autoencoders),
            "activation": self.activation,
            "detectors": list(self.detector_specs),
            "reformer": self.reformer,
        }


@dataclass
class MagNetConfig:
    """The autoencoders' training (Table 4.7: Adam, batch 256, 250 epochs, noise) and the detectors."""

    structure: list[int | str] = field(default_factory=lambda: [3, "pool", 3])
    n_pack: int = 1
    activation: str = "relu"
    detectors: list[str] = field(default_factory=lambda: ["recon:1", "jsd:10"])
    reformer: bool = True
    noise: float = 0.1
    alpha: float = 0.2
    epochs: int = 250
    batch_size: int = 256
    lr: float = 1e-3
    fpr: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        check_fpr(self.fpr)
        self.detectors = check_detectors(self.detectors)
        if not (self.noise >= 0 and self.alpha >= 0 and self.lr > 0):
            raise ConfigError("MagNet needs noise >= 0, alpha >= 0 and lr > 0")
        if self.epochs < 0 or self.batch_size < 1:
            raise ConfigError("MagNet needs epochs >= 0 and batch_size >= 1")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_autoencoders(
    autoencoders: nn.ModuleList, x_train: torch.Tensor, cfg: MagNetConfig
) -> list[float]:
    """Train the pack jointly on noisy copies of `x_train` (Appendix A's loss); loss per epoch."""
    generator = seed_everything(cfg.seed)
    params = [p for ae in autoencoders for p in ae.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    history = []
    autoencoders.train()
    for _ in range(cfg.epochs):
        total, seen = 0.0, 0
        for batch in torch.randperm(len(x_train), generator=generator).split(cfg.batch_size):
            x = x_train[batch.to(x_train.device)]
            noise = torch.randn(x.shape, generator=generator).to(x.device) * cfg.noise
            noisy = (x + noise).clamp(0.0, 1.0)
            outs = [ae(noisy) for ae in autoencoders]
            loss = sum(F.mse_loss(o, x) for o in outs)
            if len(outs) > 1 and cfg.alpha > 0:
                mean = torch.stack(outs).mean(dim=0)
                loss = loss - cfg.alpha * sum(F.mse_loss(o, mean) for o in outs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
        history.append(total / max(seen, 1))
    autoencoders.eval()
    return history


def build_magnet(
    model: RobustModel, x_train: torch.Tensor, x_val: torch.Tensor, cfg: MagNetConfig | None = None
) -> tuple[MagNetModel, list[float]]:
    """MagNet around `model` (a Classifier, not changed): autoencoders trained on `x_train`,
    thresholds fitted on clean `x_val`; returns the model and the training loss per epoch."""
    cfg = cfg or MagNetConfig()
    if not isinstance(model, Classifier):
        raise ConfigError(f"MagNet wraps a robustlab Classifier, got {type(model).__name__}")
    device = next(model.parameters()).device
    magnet = MagNetModel(
        model,
        cfg.structure,
        n_pack=cfg.n_pack,
        activation=cfg.activation,
        detectors=cfg.detectors,
        reformer=cfg.reformer,
    ).to(device)
    seed_everything(cfg.seed)
    for ae in magnet.autoencoders:  # re-initialise under the seed, so builds are reproducible
        for m in ae.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
    history = train_autoencoders(magnet.autoencoders, x_train.to(device), cfg)
    magnet.eval()
    magnet.fit_threshold(x_val, cfg.fpr)
    if any(not math.isfinite(float(t)) for t in magnet.thresholds):
        raise ConfigError("a MagNet threshold is not finite: check the validation data")
    return magnet, history


# ---------------------------------------------------------------- the defense's declaration
def _settings(structure: Sequence[int | str] = (3, "pool", 3), n_pack: int = 1, activation: str = "relu",
              detectors: Sequence[str] = ("recon:1", "jsd:10"), reformer: bool = True, noise: float = 0.1,
              alpha: float = 0.2, epochs: int = 250, batch_size: int = 256, lr: float = 1e-3, fpr: float = 0.05,
              val_fraction: float = 0.1, seed: int = 0) -> tuple[MagNetConfig, float]:
    cfg = MagNetConfig(structure=_listed(structure), n_pack=n_pack, activation=activation, detectors=_listed(detectors),
                       reformer=reformer, noise=noise, alpha=alpha, epochs=epochs, batch_size=batch_size, lr=lr,
                       fpr=fpr, seed=seed)
    return cfg, check_fraction(val_fraction)


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _build(model: Classifier, data: Any, settings: tuple[MagNetConfig, float]) -> DefenseBuild:
    cfg, val_fraction = settings
    x_tr, _, x_val, _ = split_validation(data, val_fraction, cfg.seed)
    defended, history = build_magnet(model, x_tr, x_val, cfg)
    return DefenseBuild(defended, {"config": cfg.to_dict(), "val_fraction": val_fraction,
                                   "thresholds": defended.thresholds.tolist(),
                                   "val_fpr": rejection_rate(defended, x_val), "n_val": len(x_val),
                                   "loss": history[-1:]})


def _structure(text: str) -> list[int | str]:
    """"3,pool,3" -> [3, "pool", 3]."""
    return [int(t) if t.strip().isdigit() else t.strip() for t in text.split(",")]


register_defense(Defense(
    name="magnet",
    summary="MagNet: denoising autoencoders as detectors (reconstruction error, JSD) and reformer.",
    check=_settings,
    build=_build,
    structure=MagNetModel,
    help={
        "structure": "Conv widths and 'pool', comma-separated (default 3,pool,3).",
        "n_pack": "Autoencoders in the pack (> 1: one drawn at random).",
        "detectors": "recon:1, recon:2, jsd:T (repeatable). Default: recon:1 and jsd:10.",
        "reformer": "Classify ae(x) (--no-reformer: x itself).",
        "noise": "Std of the training noise (pixel units).",
        "alpha": "Pack diversity weight (Appendix A).",
        "epochs": "Autoencoder epochs (Table 4.7: 250).",
        "lr": "Adam learning rate.",
        "fpr": "Total false-positive rate of the detectors.",
    },
    flags={"detectors": ("--detector",)},
    parse={"structure": _structure},
))
