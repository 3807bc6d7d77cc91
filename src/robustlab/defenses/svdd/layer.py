"""The SVDD layer: C kernel SVDD classifiers in primal form, as a network layer (eq. 10).

Class c has M trainable projection vectors O_c (M, D) in the feature space of the backbone,
a reconstruction vector u_c (M,) and a radius R_c. With the RBF kernel
k(a, b) = exp(-gamma * ||a - b||^2) (so k_ii = 1), the hypersphere centre is
a_c = Phi(O_c) u_c and

    ||phi(f) - a_c||^2 = k_ii - 2 k~_c(f)^T u_c + u_c^T K~_c u_c,
    SVDD_c(f) = beta_c R_c^2 - ||phi(f) - a_c||^2                        (eq. 10)

where k~_c(f)[m] = k(f, O_c[m]) and K~_c[m, n] = k(O_c[m], O_c[n]). beta_c = 1 during
training; the normalised response is r_c = SVDD_c / R_c^2, in (-inf, beta_c].
"""

from __future__ import annotations

import torch
from torch import nn

from robustlab.core.errors import ConfigError, InputError


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """exp(-gamma ||a_i - b_j||^2) for a (..., P, D), b (..., Q, D) -> (..., P, Q)."""
    sq = (a * a).sum(-1)[..., :, None] - 2.0 * a @ b.transpose(-1, -2) + (b * b).sum(-1)[..., None, :]
    return torch.exp(-gamma * sq.clamp_min(0.0))


class SVDDLayer(nn.Module):
    """C SVDD classifiers over D-dimensional features with M projections each.

    Parameters: ``projections`` O (C, M, D), ``weights`` u (C, M), ``radius`` R (C,).
    Buffers: ``gamma`` (the RBF width, a scalar in 1 / feature units^2) and the two tuned
    beta vectors ``beta_oc`` / ``beta_od`` (C,); ``beta_mode`` picks the active beta:
    "one" (all 1, as in training), "O_c", "O_d", or a positive number used for every class.
    """

    BETA_MODES = ("one", "O_c", "O_d")

    def __init__(self, num_classes: int, feature_dim: int, num_projections: int) -> None:
        super().__init__()
        if num_classes < 2 or feature_dim < 1 or num_projections < 1:
            raise ConfigError("the SVDD layer needs num_classes >= 2, feature_dim >= 1, num_projections >= 1")
        self.num_classes, self.feature_dim, self.num_projections = num_classes, feature_dim, num_projections
        self.projections = nn.Parameter(torch.zeros(num_classes, num_projections, feature_dim))
        self.weights = nn.Parameter(torch.full((num_classes, num_projections), 1.0 / num_projections))
        self.radius = nn.Parameter(torch.ones(num_classes))
        self.register_buffer("gamma", torch.ones(()))
        self.register_buffer("beta_oc", torch.ones(num_classes))
        self.register_buffer("beta_od", torch.ones(num_classes))
        self.beta_mode: str | float = "one"

    # ------------------------------------------------------------------ beta
    def set_beta_mode(self, mode: str | float) -> None:
        """Choose the active beta: "one", "O_c", "O_d", or a positive number for every class."""
        if isinstance(mode, str):
            if mode not in self.BETA_MODES:
                raise ConfigError(f"beta must be one of {self.BETA_MODES} or a positive number, got {mode!r}")
        elif not (isinstance(mode, (int, float)) and mode > 0):
            raise ConfigError(f"beta must be one of {self.BETA_MODES} or a positive number, got {mode!r}")
        self.beta_mode = mode if isinstance(mode, str) else float(mode)

    @property
    def beta(self) -> torch.Tensor:
        """The active beta per class, (C,)."""
        if self.beta_mode == "O_c":
            return self.beta_oc
        if self.beta_mode == "O_d":
            return self.beta_od
        value = 1.0 if self.beta_mode == "one" else float(self.beta_mode)
        return torch.full_like(self.beta_oc, value)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def initialize(self, features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        """O_c <- M features of class c drawn without replacement (with, when the class has
        fewer than M); gamma <- 1 / median squared pairwise distance (median heuristic);
        u_c <- 1/M (the centre starts at the mean of the projections); R_c^2 <- the median
        squared distance of class c's features to that centre."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise InputError(f"features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        generator = torch.Generator().manual_seed(seed)
        features = features.detach().float().cpu()
        labels = labels.cpu()
        sample = features[torch.randperm(len(features), generator=generator)[:1000]]
        sq = torch.cdist(sample, sample).pow(2)
        median = sq[sq > 0].median() if bool((sq > 0).any()) else torch.tensor(1.0)
        self.gamma.fill_(1.0 / float(median))
        rows = []
        for c in range(self.num_classes):
            members = (labels == c).nonzero().squeeze(1)
            if len(members) == 0:
                raise InputError(f"class {c} has no training features to initialise its SVDD")
            if len(members) >= self.num_projections:
                pick = members[torch.randperm(len(members), generator=generator)[: self.num_projections]]
            else:
                pick = members[torch.randint(len(members), (self.num_projections,), generator=generator)]
            rows.append(features[pick])
        device = self.projections.device
        self.projections.copy_(torch.stack(rows).to(device))
        self.weights.fill_(1.0 / self.num_projections)
        dist2 = self.distance2(features.to(device))
        for c in range(self.num_classes):
            self.radius[c] = dist2[labels.to(device) == c, c].median().clamp_min(1e-4).sqrt()

    # ------------------------------------------------------------------ forward
    def radius2(self) -> torch.Tensor:
        """R_c^2 per class, (C,)."""
        return self.radius * self.radius

    def distance2(self, features: torch.Tensor) -> torch.Tensor:
        """||phi(f) - a_c||^2 = 1 - 2 k~^T u_c + u_c^T K~_c u_c for features (N, D) -> (N, C)."""
        c, m, d = self.projections.shape
        k_vec = rbf_kernel(features, self.projections.reshape(c * m, d), self.gamma).view(-1, c, m)
        cross = (k_vec * self.weights).sum(-1)
        gram = rbf_kernel(self.projections, self.projections, self.gamma)
        quad = torch.einsum("cm,cmn,cn->c", self.weights, gram, self.weights)
        return 1.0 - 2.0 * cross + quad

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """SVDD_c(f) = beta_c R_c^2 - ||phi(f) - a_c||^2 (eq. 10), (N, C); >= 0 means verified."""
        return self.beta * self.radius2() - self.distance2(features)

    def responses(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised responses r_c = SVDD_c(f) / R_c^2, (N, C), in (-inf, beta_c]."""
        return self(features) / self.radius2().clamp_min(1e-12)
