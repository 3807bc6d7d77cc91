"""Small models for attack tests: a trained digits MLP and wrappers that exercise the contract."""

from __future__ import annotations

import copy

import torch
from sklearn.datasets import load_digits
from torch import nn

from robustlab.core.contract import REJECT, RobustModel
from robustlab.models import build_model


def digits_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn digits as (1, 8, 8) images in [0, 1]; fixed 1300 / 497 split."""
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1300], y[:1300], x[1300:], y[1300:]


def train_digits_mlp(hidden=(64,), steps: int = 300, seed: int = 0):
    """A softmax MLP trained with Adam on digits (about 95% test accuracy in ~1 s)."""
    x_tr, y_tr, x_te, y_te = digits_data()
    torch.manual_seed(seed)
    model = build_model(
        {"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8],
         "backbone_args": {"hidden": list(hidden)}}
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x_tr), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(x_tr[i]), y_tr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    return model, x_te, y_te


class LinearModel(RobustModel):
    """scores = W x + b on flattened pixels: every minimal L2 distance is known in closed form."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_shape: tuple[int, int, int]) -> None:
        super().__init__(weight.shape[0], input_shape)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.linear(x.flatten(1))

    def min_l2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance to the nearest point where another class wins (box ignored):
        min_j (z_y - z_j) / ||w_y - w_j||."""
        z = self(x).detach()
        w = self.linear.weight.detach()
        gap = z.gather(1, y[:, None]) - z
        dw = (w[y][:, None, :] - w[None, :, :]).norm(dim=2)
        ratio = gap / dw.clamp_min(1e-12)
        ratio[torch.arange(len(y)), y] = float("inf")
        return ratio.min(1).values


class Wrapped(RobustModel):
    """Base for wrappers of another model (shares its weights)."""

    def __init__(self, inner: RobustModel) -> None:
        super().__init__(inner.num_classes, inner.input_shape)
        self.inner = inner

    def embed(self, x):
        return self.inner.embed(x)

    def forward(self, x):
        return self.inner(x)


class FeatureDecisionModel(Wrapped):
    """A metric-style head: the decision is the nearest class mean of the embeddings (not a
    function of the scores), the scores a differentiable surrogate."""

    decision_from_scores = False

    def __init__(self, inner: RobustModel, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__(inner)
        with torch.no_grad():
            f = inner.embed(x)
        self.register_buffer("means", torch.stack([f[y == c].mean(0) for c in range(inner.num_classes)]))

    def forward(self, x):
        return -torch.cdist(self.embed(x), self.means)

    @torch.no_grad()
    def predict(self, x):
        return torch.cdist(self.embed(x), self.means).argmin(1)


class RejectingModel(Wrapped):
    """Scores (N, C + 1): the last column rejects when the top softmax probability is low."""

    can_reject = True

    def __init__(self, inner: RobustModel, threshold: float = 0.6) -> None:
        super().__init__(inner)
        self.threshold = threshold

    def forward(self, x):
        z = self.inner(x)
        p = z.softmax(1).amax(1, keepdim=True)
        reject = z.amax(1, keepdim=True) + (self.threshold - p) * 100.0
        return torch.cat([z, reject], 1)


class QuantizedModel(Wrapped):
    """Quantizes its input to `levels` grey levels first: zero input gradient almost everywhere."""

    def __init__(self, inner: RobustModel, levels: int = 3) -> None:
        super().__init__(inner)
        self.levels = levels

    def forward(self, x):
        return self.inner(torch.round(x * (self.levels - 1)) / (self.levels - 1))


class CountingModel(Wrapped):
    """Counts the images passed through forward (queries spent)."""

    def __init__(self, inner: RobustModel) -> None:
        super().__init__(inner)
        self.images = 0

    def forward(self, x):
        self.images += len(x)
        return self.inner(x)




class NoisyModel(RobustModel):
    """`base` on x + N(0, sigma^2) noise (clipped to [0, 1]), fresh at every forward: a randomized
    model that does not declare it (found by two passes that differ)."""

    def __init__(self, base: RobustModel, sigma: float) -> None:
        super().__init__(base.num_classes, base.input_shape)
        self.base, self.sigma = base, sigma

    def embed(self, x):
        return self.base.embed(x)

    def forward(self, x):
        return self.base((x + self.sigma * torch.randn_like(x)).clamp(0, 1))


class Logits(nn.Module):
    """A robustlab model seen by a peer library: a plain module returning its scores, on a copy
    of the model (peers call backward(), which would leave gradients on the caller's weights)."""

    def __init__(self, model: RobustModel) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)

    def forward(self, x):
        return self.model(x)


def reference_autoattack(model: RobustModel, version: str, norm: str, eps: float, seed: int = 0):
    """The reference AutoAttack's protocol (fra31/auto-attack) built from torchattacks' port of its
    members, with the reference's settings: torchattacks' own `AutoAttack` runs its members with
    10 iterations, the reference with 100. ``version``: standard or rand."""
    import torchattacks as ta
    from torchattacks.wrappers.multiattack import MultiAttack

    net = Logits(model).eval()
    kw = {"eps": eps, "norm": {"linf": "Linf", "l2": "L2"}[norm], "seed": seed}
    k = model.num_classes
    if version == "rand":
        members = [ta.APGD(net, loss=loss, steps=100, n_restarts=1, eot_iter=20, **kw) for loss in ("ce", "dlr")]
    else:
        members = [
            ta.APGD(net, loss="ce", steps=100, n_restarts=1, **kw),
            ta.APGDT(net, steps=100, n_restarts=1, n_classes=k, **kw),
            ta.FAB(net, steps=100, multi_targeted=True, n_classes=k, n_restarts=1, **kw),
            ta.Square(net, n_queries=5000, n_restarts=1, p_init=0.8, **kw),
        ]
    return MultiAttack(members)


__all__ = ["REJECT", "CountingModel", "FeatureDecisionModel", "LinearModel", "Logits", "NoisyModel", "QuantizedModel",
           "RejectingModel", "digits_data", "reference_autoattack", "train_digits_mlp"]
