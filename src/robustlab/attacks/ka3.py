"""K-A3, the K-anonymity-inspired adversarial attack (Mygdalis et al. 2020, section 3.1, eq. 5-7).

The N samples of a call are split into K contiguous groups of about N/K; group g (0-based)
gets k = g + 2, so k runs over 2..K+1 (eq. 6). For each sample the perturbation n is
optimised by Adam on

    ||n||_2 + w_s (1 - s(x, x + n)) + c * sum_{i=2..k} L_f(f(x + n), r(i))      (eq. 7)

with L_f the cross-entropy towards target r(i): by default the labels ranked 2..k for the
clean image (the top-(k-1) labels other than y), or k - 1 random labels other than y
(``targets="random"``). It runs until the k - 1 targets all outrank the true label, i.e.
the true label's rank is >= k (the `KAnonymousRanks` criterion, `TopKExcluded(k - 1)` per
sample); the smallest successful perturbation seen is kept (for a sample never successful,
the smallest one that reached its best rank). x + n is kept in [0, 1] by
projection after each step. The constant c starts at 1 (eq. 7 as printed) and doubles
every ``check_every`` steps for samples not yet successful (``growth``), the role L-BFGS's
line search over its constant plays in eq. 1.

Which ranks: section 3.1's prose says group 1 (k = 2) must hide y from r(1) *and* r(2),
but eq. 7 has only k - 1 targets, K = 1 is said to reduce to L-BFGS (plain
misclassification), and section 5 checks P(rank = j) <= 1/K for j = 2..K+1 (2..6 for
K = 5, 2..10 for K = 9 on 10 classes, where "outside 1..10" would be impossible). We follow
eq. 7 and section 5: group k puts y at rank >= k, so the pmf spreads over ranks 2..K+1.

The similarity s is CW-SSIM (a complex steerable pyramid, as in the paper) by default,
or SSIM (``similarity="ssim"``); ``similarity_weight = 0`` drops the term. With K = 1
(k = 2 for all) and no similarity term it is L-BFGS's objective with target r(2).
Calling the attack batch by batch splits every batch into K groups, so the groups stay
balanced overall.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustlab.attacks.base import MinimumNormAttack, RunOutput
from robustlab.attacks.criteria import Criterion
from robustlab.attacks.registry import register_attack
from robustlab.attacks.similarity import CWSSIM, SIMILARITIES, ssim
from robustlab.core.contract import REJECT
from robustlab.core.errors import ConfigError, InputError
from robustlab.core.scores import label_rank, others_by_score
from robustlab.core.threat import Norm


def group_k(n: int, K: int, device=None) -> torch.Tensor:
    """k per sample for a batch of n: K contiguous groups of ~n/K, k = 2..K+1, int64 (n,)."""
    return torch.arange(n, device=device) * K // max(n, 1) + 2


class KAnonymousRanks(Criterion):
    """The true label is ranked k or lower (outside the top k - 1) and the input is not rejected.

    k per sample is given (``k``, int64 (N,)) or, by default, follows the position in the
    batch (`group_k`: K contiguous groups, k = 2..K+1).
    """

    name = "kanonymous_ranks"
    needs_scores = True

    def __init__(self, K: int, k: torch.Tensor | None = None) -> None:
        if K < 1:
            raise ConfigError(f"K must be >= 1, got {K}")
        self.K = int(K)
        if k is not None:
            k = torch.as_tensor(k, dtype=torch.int64)
            if k.dim() != 1 or (len(k) and (int(k.min()) < 2 or int(k.max()) > self.K + 1)):
                raise InputError(f"ka3: k must be a vector with values in 2..{self.K + 1}")
        self.k = k

    def k_for(self, n: int, device=None) -> torch.Tensor:
        """k per sample of a batch of n: the given k, or K contiguous groups (`group_k`)."""
        return self.k.to(device) if self.k is not None else group_k(n, self.K, device)

    def check_batch(self, n: int) -> None:
        if self.k is not None and len(self.k) != n:
            raise InputError(f"ka3: k must be ({n},) with values in 2..{self.K + 1}, got {tuple(self.k.shape)}")

    def select(self, rows: torch.Tensor, n: int) -> KAnonymousRanks:
        return KAnonymousRanks(self.K, self.k_for(n, rows.device)[rows])

    def __call__(self, decision, y, targets=None, scores=None):
        if scores is None:
            raise ConfigError("the K-anonymous ranks criterion needs scores")
        return _outside_topk(scores, y, self.k_for(len(y), y.device) - 1) & (decision != REJECT)

    def spec(self) -> dict[str, object]:
        return {"name": self.name, "K": self.K}


def _outside_topk(scores: torch.Tensor, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """rank of y > k, per sample (a model's reject column counts like a class; a rejected
    input fails anyway)."""
    return label_rank(scores, y) > k


@register_attack
class KA3(MinimumNormAttack):
    """K-A3 (eq. 7). Minimum-norm attack in L2; success = true label ranked k or lower.

    - ``K``: anonymity level (groups k = 2..K+1); ``steps``: Adam iterations; ``lr``: Adam
      step size (pixel units); ``norm_weight``: the weight of ||n||_2 (1 in eq. 7);
    - ``similarity``: "cw_ssim" (default) or "ssim"; ``similarity_weight``: its weight (1 in eq. 7);
    - ``targets``: "ranked" (r(2..k) of the clean image) or "random";
    - ``check_every``: steps between early-stop checks (stops once every sample succeeded);
    - ``growth``: factor on c every ``check_every`` steps while a sample has not succeeded;
    - ``margin``: the k - 1 labels must outscore y by more than this (score units) for the
      attack to count a sample as done; > 0 leaves room for 8-bit rounding of the images.
      The final `success` is judged without margin.
    """

    name = "ka3"
    norm = Norm.L2
    supports_targets = False
    hidden_params = ("criterion",)  # success is always the K-anonymous ranks criterion

    def __init__(
        self,
        K: int = 5,
        steps: int = 200,
        lr: float = 0.01,
        norm_weight: float = 1.0,
        similarity: str = "cw_ssim",
        similarity_weight: float = 1.0,
        targets: str = "ranked",
        check_every: int = 10,
        growth: float = 2.0,
        margin: float = 0.0,
        **kwargs,
    ) -> None:
        if kwargs.get("criterion") is not None:
            raise ConfigError("ka3 judges success with its own K-anonymous ranks criterion")
        kwargs["criterion"] = KAnonymousRanks(K)
        super().__init__(**kwargs)
        if K < 1 or steps < 1 or check_every < 1 or lr <= 0 or norm_weight < 0 or similarity_weight < 0:
            raise ConfigError("ka3: need K >= 1, steps >= 1, check_every >= 1, lr > 0 and weights >= 0")
        if similarity not in SIMILARITIES:
            raise ConfigError(f"ka3: similarity must be one of {sorted(SIMILARITIES)}, got {similarity!r}")
        if targets not in ("ranked", "random"):
            raise ConfigError(f"ka3: targets must be 'ranked' or 'random', got {targets!r}")
        self.K, self.steps, self.lr = int(K), int(steps), float(lr)
        self.norm_weight, self.similarity_weight = float(norm_weight), float(similarity_weight)
        self.similarity = similarity
        self.targets, self.check_every = targets, int(check_every)
        if growth < 1:
            raise ConfigError(f"ka3: growth must be >= 1, got {growth}")
        self.growth = float(growth)
        if margin < 0:
            raise ConfigError(f"ka3: margin must be >= 0, got {margin}")
        self.margin = float(margin)

    # ------------------------------------------------------------------ targets
    def _targets(
        self,
        clean_scores: torch.Tensor,
        y: torch.Tensor,
        k: torch.Tensor,
        num_classes: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets (N, K), mask (N, K)): the k - 1 target labels per sample, padded to K."""
        width = min(self.K, num_classes - 1)  # k - 1 <= K targets
        if self.targets == "ranked":
            order_scores = clean_scores
        else:
            order_scores = torch.rand(clean_scores.shape[0], num_classes, generator=generator).to(y.device)
        targets = others_by_score(order_scores, y, num_classes)[:, :width]
        mask = torch.arange(width, device=y.device)[None, :] < (k[:, None] - 1)
        return targets, mask

    def _loss(self, model, sim_fn, x_adv, n, targets, mask, num_classes, c):
        """Per-sample eq. 7 (with the constant c on the classification terms) and the scores."""
        scores = model(x_adv)
        logp = F.log_softmax(scores[:, :num_classes], dim=1)
        ce = -(logp.gather(1, targets) * mask).sum(dim=1)
        norm = torch.sqrt(n.flatten(1).pow(2).sum(dim=1) + 1e-12)
        sim = sim_fn(x_adv) if self.similarity_weight > 0 else torch.ones_like(norm)
        loss = self.norm_weight * norm + self.similarity_weight * (1.0 - sim) + c * ce
        return loss, scores.detach()

    # ------------------------------------------------------------------ run
    def criterion_for(self, k: torch.Tensor) -> KAnonymousRanks:
        """The success criterion with each sample's k (int64 (N,), values in 2..K+1); pass it as
        ``attack(model, x, y, criterion=attack.criterion_for(k))`` to choose the groups."""
        return KAnonymousRanks(self.K, k)

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        num_classes = model.num_classes
        if not isinstance(criterion, KAnonymousRanks) or criterion.K != self.K:
            raise ConfigError(f"ka3 judges success with its own K-anonymous ranks criterion (K={self.K})")
        k = criterion.k_for(len(x), x.device)
        with torch.no_grad():
            clean_scores = model(x)
        tgt, mask = self._targets(clean_scores, y, k, num_classes, generator)
        reference = CWSSIM(x) if self.similarity == "cw_ssim" else None  # x's pyramid, computed once
        best = x.clone()
        best_norm = torch.full((len(x),), float("inf"), device=x.device)
        best_rank = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        scale = k.max() + 1
        # the active rows (not yet successful) and their Adam state (beta1 0.9, beta2 0.999)
        act = torch.arange(len(x), device=x.device)
        n = torch.zeros_like(x)
        m1, m2 = torch.zeros_like(x), torch.zeros_like(x)
        c = torch.ones(len(x), device=x.device)
        for step in range(self.steps):
            xa, ya, ka = x[act], y[act], k[act]
            sim_fn = reference.select(act) if reference is not None else (lambda z, xa=xa: ssim(xa, z))
            n_req = n.detach().requires_grad_(True)
            with torch.enable_grad():
                loss, scores = self._loss(
                    model, sim_fn, xa + n_req, n_req, tgt[act], mask[act], num_classes, c
                )
                (grad,) = torch.autograd.grad(loss.sum(), n_req)
            with torch.no_grad():
                decision = model.decide(scores)
                # progress: (rank of y with the margin, rank without), each capped at k; 0 if rejected
                plain = torch.minimum(label_rank(scores, ya), ka)
                rank = (torch.minimum(label_rank(scores, ya, margin=self.margin), ka) * scale + plain).masked_fill(
                    decision == REJECT, 0
                )
                norm = n.flatten(1).norm(dim=1)
                better = (rank > best_rank[act]) | ((rank == best_rank[act]) & (norm < best_norm[act]))
                best[act] = torch.where(better.view(-1, 1, 1, 1), xa + n, best[act])
                best_norm[act] = torch.where(better, norm, best_norm[act])
                best_rank[act] = torch.where(better, rank, best_rank[act])
                done = rank >= ka * scale
                found[act] |= done
                queries[act] += 1
                m1.mul_(0.9).add_(0.1 * grad)
                m2.mul_(0.999).add_(0.001 * grad * grad)
                t = step + 1
                update = (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + 1e-8)
                n = (xa + n - self.lr * update).clamp(0.0, 1.0) - xa
            if (step + 1) % self.check_every == 0:
                c = torch.where(done, c, c * self.growth)
                keep = (~done).nonzero().squeeze(1)  # samples stop at success, as eq. 7 says
                if len(keep) == 0:
                    break
                act, n, m1, m2, c = act[keep], n[keep], m1[keep], m2[keep], c[keep]
        return RunOutput(best, queries, {"k": k})
