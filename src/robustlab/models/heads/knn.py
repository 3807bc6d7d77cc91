"""k-NN decision over a gallery of training embeddings, and its differentiable surrogate.

Decision (paper 002, Algorithm 1): majority vote among the k gallery embeddings nearest to
the query; a tie goes to the tied class holding the nearest neighbour.

Surrogate scores (what `forward` returns, so white-box attacks target the vote): a soft k-NN
class score with temperature T,

    s_c = log sum_{j in kNN(x), y_j = c} exp(-d_j / T)      if class c has a neighbour among the k,
    s_c = -min_{j: y_j = c} d_j / T                          otherwise,

so every class keeps a gradient (towards its nearest gallery member) and classes outside the
k neighbours always score below those inside. As T grows, argmax s tends to the vote.

Gallery size: `fit` keeps at most ``per_class`` embeddings of each class (a seeded,
class-balanced subsample; None keeps all), so a query costs O(C * per_class * D). The gallery
lives in buffers that start empty, (0, D), and are resized by the checkpoint loader.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.errors import ConfigError, InputError

METRICS = ("euclidean", "cosine")


class KNNGallery(nn.Module):
    """Stored embeddings + labels, the k-NN vote and the soft k-NN surrogate.

    ``k`` >= 1 neighbours; ``metric`` "euclidean" (on L2-normalized embeddings when
    ``normalize``, distances in [0, 2]) or "cosine" (1 - cosine similarity, in [0, 2]);
    ``temperature`` T > 0 in distance units; ``per_class`` caps the gallery per class.
    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        k: int = 5,
        metric: str = "euclidean",
        normalize: bool = True,
        temperature: float = 0.5,
        per_class: int | None = 500,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"k-NN needs k >= 1, got {k}")
        if metric not in METRICS:
            raise ConfigError(f"unknown k-NN metric {metric!r}; choose one of {', '.join(METRICS)}")
        if not temperature > 0:
            raise ConfigError(f"k-NN temperature must be > 0, got {temperature}")
        if per_class is not None and per_class < 1:
            raise ConfigError(f"k-NN per_class must be >= 1 or None, got {per_class}")
        self.num_classes = int(num_classes)
        self.k = int(k)
        self.metric = metric
        self.normalize = bool(normalize)
        self.temperature = float(temperature)
        self.per_class = per_class
        self.seed = int(seed)
        self.register_buffer("gallery", torch.empty(0, int(feature_dim)))
        self.register_buffer("gallery_labels", torch.empty(0, dtype=torch.int64))

    def _prepare(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) if (self.normalize or self.metric == "cosine") else features

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Store (a class-balanced subsample of) training embeddings (N, D) and labels (N,)."""
        if features.dim() != 2 or len(features) != len(labels) or len(labels) == 0:
            raise InputError(
                f"fit_gallery needs features (N, D) and labels (N,), got {tuple(features.shape)}"
            )
        labels = labels.to(features.device).long()
        keep = torch.arange(len(labels), device=features.device)
        if self.per_class is not None:
            g = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(len(labels), generator=g).to(features.device)
            lab = labels[order]
            # rank of each sample within its class, in the random order: keep the first per_class
            sorted_lab, idx = lab.sort(stable=True)
            starts = torch.searchsorted(sorted_lab, sorted_lab, right=False)
            rank = torch.empty_like(idx)
            rank[idx] = torch.arange(len(lab), device=lab.device) - starts
            keep = order[rank < self.per_class].sort().values
        self.gallery = self._prepare(features[keep].float()).contiguous()
        self.gallery_labels = labels[keep].clone()

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Distances (N, G) from query features (N, D) to every gallery embedding."""
        if len(self.gallery) == 0:
            raise InputError("this k-NN head has an empty gallery: train the model or call fit_gallery first")
        q = self._prepare(features)
        if self.metric == "cosine":
            return 1.0 - q @ self.gallery.T
        g2, _ = self._gallery_terms()
        sq = q.pow(2).sum(1, keepdim=True) - 2 * q @ self.gallery.T + g2[None, :]
        return sq.clamp_min(1e-12).sqrt()

    def _gallery_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-gallery quantities every query needs, computed once per gallery (not per call):
        squared norms (G,) and which classes are present (C,). Recomputed when the gallery
        buffers are replaced (`fit`) or written in place (loading a checkpoint)."""
        key = (self.gallery.data_ptr(), self.gallery._version, self.gallery_labels.data_ptr(),
               self.gallery_labels._version, self.gallery.device)
        cached = getattr(self, "_terms", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                present = torch.zeros(self.num_classes, dtype=torch.bool, device=self.gallery.device)
                present[self.gallery_labels] = True
                cached = (key, self.gallery.pow(2).sum(1), present)
            self._terms = cached
        return cached[1], cached[2]

    def _neighbours(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(self.k, d.shape[1])
        dist, idx = d.topk(k, dim=1, largest=False, sorted=True)
        return dist, self.gallery_labels[idx]

    def vote(self, features: torch.Tensor) -> torch.Tensor:
        """The k-NN decision: int64 labels (N,)."""
        _, lab = self._neighbours(self.distances(features))
        return self._vote(lab)

    def _vote(self, lab: torch.Tensor) -> torch.Tensor:
        """The vote over the labels (N, k) of the k nearest gallery members, nearest first."""
        k = lab.shape[1]
        # each vote weighs 1 plus 2^-(rank+1): the extra terms sum below 1 and favour the nearest
        weights = 1.0 + torch.pow(2.0, -torch.arange(1, k + 1, device=lab.device, dtype=torch.float64))
        votes = torch.zeros(len(lab), self.num_classes, dtype=torch.float64, device=lab.device)
        votes.scatter_add_(1, lab, weights.expand(len(lab), k).contiguous())
        return votes.argmax(dim=1)

    def soft_scores(self, features: torch.Tensor) -> torch.Tensor:
        """The differentiable surrogate s (N, C) described in the module docstring."""
        return self.scores_and_vote(features)[0]

    def scores_and_vote(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft scores, vote) from one distance computation: the vote is exactly `vote(features)`."""
        d = self.distances(features)
        dist, lab = self._neighbours(d)
        with torch.no_grad():
            decision = self._vote(lab)
        return self._soft(d, dist, lab), decision

    def _soft(self, d: torch.Tensor, dist: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        n, c = len(d), self.num_classes
        member = F.one_hot(lab, c).permute(0, 2, 1).bool()  # (N, C, k)
        logits = (-dist / t)[:, None, :].expand(n, c, -1)
        inside = torch.logsumexp(logits.masked_fill(~member, -1e9), dim=2)
        nearest = d.new_zeros(n, c).scatter_reduce(
            1, self.gallery_labels[None, :].expand_as(d), d, reduce="amin", include_self=False
        )
        _, present = self._gallery_terms()
        outside = torch.where(present[None, :], -nearest / t, torch.full_like(nearest, -1e4))
        return torch.where(member.any(dim=2), inside, outside)
