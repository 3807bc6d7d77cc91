"""JSMA (Papernot et al. 2016): L0 attack that saturates the most salient pixel pairs.

At each iteration, alpha = d z_t / dx and beta = d (sum_{j != t} z_j) / dx (two backward
passes over the batch); the pair (p, q) maximising (alpha_p + alpha_q) * |beta_p + beta_q|
with alpha_p + alpha_q > 0 and beta_p + beta_q < 0 (signs swapped when ``theta`` < 0) is
moved by ``theta`` and leaves the search domain. Batched over samples (pair scores are
built in chunks of rows to bound memory). Without ``targets=`` the target is the
runner-up class and success stays "misclassified".
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robustlab.attacks.base import MinimumNormAttack, RunOutput, judge
from robustlab.attacks.registry import register_attack
from robustlab.attacks.search import runner_up
from robustlab.core.errors import ConfigError
from robustlab.core.threat import Norm


@register_attack
class JSMA(MinimumNormAttack):
    """Jacobian saliency map attack.

    - ``theta``: change per chosen pixel (+1 saturates to white, -1 to black);
    - ``gamma``: at most this fraction of the pixels may change;
    - ``pairs``: pick pixel pairs (the paper) or single pixels (cheaper on large images);
    - ``chunk``: rows whose pair scores are built at once.
    """

    name = "jsma"
    norm = Norm.L0

    def __init__(self, theta: float = 1.0, gamma: float = 0.1, pairs: bool = True, chunk: int = 32, **kwargs):
        super().__init__(**kwargs)
        if theta == 0 or not -1 <= theta <= 1 or not 0 < gamma <= 1 or chunk < 1:
            raise ConfigError(f"{self.name}: theta in [-1, 1] \\ {{0}}, gamma in (0, 1], chunk >= 1")
        self.theta = float(theta)
        self.gamma = float(gamma)
        self.pairs = bool(pairs)
        self.chunk = int(chunk)

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n, dev, k = len(x), x.device, model.num_classes
        d = x[0].numel()
        with torch.no_grad():
            goal = targets if targets is not None else runner_up(model(x), y, k)
        x_adv = x.clone().flatten(1)
        domain = x_adv < 1 if self.theta > 0 else x_adv > 0
        per_step = 2 if self.pairs else 1
        iters = int(d * self.gamma) // per_step
        queries = torch.zeros(n, dtype=torch.int64, device=dev)
        idx = torch.arange(n, device=dev)
        for _ in range(iters + 1):
            xi = x_adv[idx].view(-1, *x.shape[1:]).requires_grad_(True)
            with torch.enable_grad():
                scores = model(xi)
            t = targets[idx] if targets is not None else None
            success, _, _ = judge(model, xi.detach(), y[idx], t, criterion, scores=scores.detach())
            queries[idx] += 1
            alive = ~success & (domain[idx].sum(1) >= per_step)
            idx, keep = idx[alive], alive
            if len(idx) == 0:
                break
            pad = scores.shape[1] - k
            target_hot = F.one_hot(goal[idx], k).to(x.dtype)
            ones = torch.ones_like(target_hot)
            go_t = torch.cat([target_hot, target_hot.new_zeros(len(idx), pad)], 1)
            go_all = torch.cat([ones, ones.new_zeros(len(idx), pad)], 1)
            sub_scores = scores[keep]
            (a,) = torch.autograd.grad(sub_scores, xi, go_t, retain_graph=True)
            (s,) = torch.autograd.grad(sub_scores, xi, go_all)
            alpha = a[keep].flatten(1)
            beta = s[keep].flatten(1) - alpha
            chosen = self._choose(alpha, beta, domain[idx])
            if chosen is None:
                break
            picks, valid = chosen
            rows = idx[valid]
            for p in picks:
                p = p[valid]
                x_adv[rows, p] = (x_adv[rows, p] + self.theta).clamp(0.0, 1.0)
                domain[rows, p] = False
            idx = rows
            if len(idx) == 0:
                break
        return RunOutput(x_adv.view_as(x), queries)

    def _choose(self, alpha, beta, domain):
        """The pixel (or pair) of best saliency per row, and which rows have one."""
        sign = 1.0 if self.theta > 0 else -1.0
        alpha, beta = alpha * sign, beta * sign
        if not self.pairs:
            ok = (alpha > 0) & (beta < 0) & domain
            score = torch.where(ok, alpha * beta.abs(), torch.zeros_like(alpha))
            best = score.argmax(1)
            return [best], score.gather(1, best[:, None]).squeeze(1) > 0
        d = alpha.shape[1]
        firsts, seconds, oks = [], [], []
        eye = torch.eye(d, dtype=torch.bool, device=alpha.device)
        for lo in range(0, len(alpha), self.chunk):
            a, b, m = alpha[lo : lo + self.chunk], beta[lo : lo + self.chunk], domain[lo : lo + self.chunk]
            aa = a[:, :, None] + a[:, None, :]
            bb = b[:, :, None] + b[:, None, :]
            ok = (aa > 0) & (bb < 0) & m[:, :, None] & m[:, None, :] & ~eye
            score = torch.where(ok, aa * bb.abs(), torch.zeros_like(aa)).flatten(1)
            best = score.argmax(1)
            firsts.append(best // d)
            seconds.append(best % d)
            oks.append(score.gather(1, best[:, None]).squeeze(1) > 0)
        return [torch.cat(firsts), torch.cat(seconds)], torch.cat(oks)
