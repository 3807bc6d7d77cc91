"""The binarization test (Zimmermann, Brendel, Tramèr, Carlini, NeurIPS 2022).

For one clean sample x the model's feature extractor (`embed`) is kept and its head replaced
by a binary linear readout trained so that x and ``n_inner`` points drawn inside the ball of
radius ``(1 - gap) * eps`` around it are class 0 while one *boundary point* at distance eps
(the surface of the eps ball, clipped to [0, 1]) is class 1. An adversarial example for the
binarized model then exists inside the ball by construction, so an attack that does not find
one is too weak for this model: the pass rate over samples measures the attack, not the model.

- The readout is an unpenalised, class-balanced logistic regression (scikit-learn) on the
  features; a sample whose readout does not separate its training points (inner points and x
  as 0, the boundary point as 1), or whose binarized model does not decide x as 0 and the
  boundary point as 1 (`expected_decision`), is *infeasible*: skipped and counted.
- A randomized model (declared, or two passes differ) is binarized *in expectation*: the
  readout is fitted on features averaged over ``draws`` passes, and every decision of the test
  (feasibility, the attack's point, the random baseline) is taken from the binarized scores
  averaged over ``draws`` fresh passes (by linearity, the readout of the mean features), the
  rule by which the attacks settle a randomized model (`EOT`), never from one (lucky) draw and
  not by the attack's own any-draw verdict. The attack itself sees the model as it is (one
  draw per pass unless it runs with EOT). A deterministic model has one draw: its `predict`.
- Its scores (N, 2) are ``(-z, z)``, z the readout's logit, rescaled so that their range on
  the training points matches that of the model's own scores there (the paper's "adaptive"
  rescaling): a model whose scores saturate gives a binarized model whose scores saturate.
- The binarized model keeps the model's input path: a defense's preprocessing and declared
  gradient path (BPDA steps), its randomness (`randomized`, so EOT applies) and its reject
  column (a detection stays a refusal); wrapped user modules through their `embed`.
- The attack is the evaluation's own (an `Attack` built from the registry, at its eps and
  norm), run on each binarized model with true label 0; a sample *passes* when the attack's
  `x_adv` lies inside the ball and the binarized model's (expected) decision there is 1.

A linear readout over D features with ``n_inner + 2`` points is almost always separable when
D > n_inner + 2; ``n_inner`` is therefore capped at D - 3 (at least 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from robustlab.attacks.base import Attack
from robustlab.attacks.eot import is_randomized
from robustlab.core.contract import RobustModel, eval_mode
from robustlab.core.errors import ConfigError, InputError
from robustlab.core.norms import distance, flat_norm
from robustlab.core.threat import Budget, Norm


@dataclass(frozen=True)
class BinarizationConfig:
    """How each sample's binarized model is built.

    ``n_inner``: random inner points besides x (capped at feature dim - 3); ``gap``: inner
    points lie within ``(1 - gap) * eps`` (0 < gap < 1); ``draws``: forward passes averaged per
    feature and per decision when the model is randomized (128: on a noise of sigma 0.15 > eps
    0.1, 8 left 1-2 of 20 samples feasible, 128 about 2 in 3); ``random``:
    fresh random points on the eps sphere whose hit rate shows how hard the planted adversarial is
    to find without an attack (the paper's random baseline); ``seed``: the CPU generator of the
    point sampling.
    """

    n_inner: int = 49
    gap: float = 0.05
    draws: int = 128
    random: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_inner < 1 or self.draws < 1 or self.random < 0:
            raise ConfigError("binarization test: n_inner and draws must be >= 1")
        if not 0.0 < self.gap < 1.0:
            raise ConfigError(f"binarization test: gap must lie in (0, 1), got {self.gap}")


class BinarizedModel(RobustModel):
    """`model`'s features with a binary linear readout: scores ``(-z, z) * scale``, z = w.f + b.

    Class 0 is the clean sample's side, class 1 the planted adversarial's. When `model` can
    reject, a third column wins exactly when the model's own reject column wins.
    """

    def __init__(
        self, model: RobustModel, weight: torch.Tensor, bias: float, scale: float = 1.0, draws: int = 1
    ) -> None:
        super().__init__(2, model.input_shape)
        self.model = model
        self.draws = int(draws)  # forward passes of the test's decision (`expected_decision`)
        self.register_buffer("weight", weight.detach().float().flatten().clone())
        self.register_buffer("bias", torch.tensor(float(bias)))
        self.scale = float(scale)
        self.train(model.training)

    @property
    def can_reject(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.model, "can_reject", False))

    @property
    def randomized(self) -> bool:
        return bool(getattr(self.model, "randomized", False))

    @property
    def gradient_path(self) -> str:
        return str(getattr(self.model, "gradient_path", "exact"))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x).flatten(1)

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """The readout's logit z (N,) of features (N, D), before scaling: > 0 means class 1."""
        return features.flatten(1) @ self.weight.to(features.dtype) + self.bias.to(features.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logit(self.embed(x)) * self.scale
        scores = torch.stack([-z, z], dim=1)
        if self.can_reject:
            own = self.model(x)
            c = self.model.num_classes
            margin = own[:, c] - own[:, :c].amax(dim=1)
            scores = torch.cat([scores, (scores.amax(dim=1) + margin)[:, None]], dim=1)
        return scores


@dataclass(frozen=True)
class SampleOutcome:
    """One sample's test: ``feasible`` (the readout planted its adversarial), ``found`` (the
    attack found it; False when infeasible), ``reason`` (why infeasible, else ""), ``distance``
    of the attack's point, ``random_hits`` the fraction of random points on the eps sphere that
    the binarized model already decides as 1."""

    index: int
    feasible: bool
    found: bool
    reason: str = ""
    distance: float = float("nan")
    random_hits: float = float("nan")


@dataclass(frozen=True)
class BinarizationSummary:
    """Pass rate over the feasible samples with its 95% Clopper-Pearson interval, and the mean
    fraction of random points on the eps sphere that hit the planted adversarial (``random_rate``:
    a pass rate near it means the attack did no better than random sampling)."""

    attack: Any
    norm: Norm
    eps: float
    n: int
    feasible: int
    infeasible: int
    passed: int
    rate: float
    low: float
    high: float
    random_rate: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "norm": self.norm.value}

    def sentence(self) -> str:
        """What the rate means, in words."""
        if self.feasible == 0:
            return f"no sample could be binarized at eps {self.eps:g} ({self.infeasible} infeasible)"
        return (
            f"{'the attack' if isinstance(self.attack, dict) else 'the evaluation'} found the planted "
            f"adversarial on {self.passed}/{self.feasible} samples "
            f"(95% CI {100 * self.low:.1f}-{100 * self.high:.1f}%) at {self.norm} eps {self.eps:g}"
            + (f"; {self.infeasible} sample(s) infeasible" if self.infeasible else "")
        )


@dataclass
class BinarizationResult:
    """Per-sample outcomes and their summary."""

    samples: list[SampleOutcome]
    summary: BinarizationSummary


def _features(model: RobustModel, x: torch.Tensor, draws: int) -> torch.Tensor:
    """`embed` of x flattened (N, D), averaged over `draws` forward passes."""
    with torch.no_grad():
        return torch.stack([model.embed(x).flatten(1).float() for _ in range(draws)]).mean(0)


def expected_decision(binarized: BinarizedModel, x: torch.Tensor) -> torch.Tensor:
    """The binarized model's decision (N,) of x (N, C, H, W) from its scores averaged over
    ``binarized.draws`` forward passes (all in one batch): its real `predict` when it is
    deterministic (one draw), its decision in expectation when randomized (as `EOT` and the
    attacks' settling judge a randomized model; by linearity the mean logit is the readout of
    the mean features it was fitted on)."""
    n, draws = len(x), binarized.draws
    with torch.no_grad():
        if draws == 1:
            return binarized.predict(x)
        scores = binarized(x.repeat(draws, *([1] * (x.dim() - 1))))
        return binarized.decide(scores.view(draws, n, -1).mean(dim=0))


def inner_points(x: torch.Tensor, norm: Norm, radius: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` points uniform in the `norm` ball of `radius` around one image x (C, H, W), in [0, 1]."""
    shape = (n, *x.shape)
    if norm == Norm.LINF:
        delta = (2 * torch.rand(shape, generator=generator) - 1) * radius
    else:
        direction = torch.randn(shape, generator=generator)
        direction = direction / flat_norm(direction, Norm.L2).clamp_min(1e-12).view(-1, 1, 1, 1)
        r = torch.rand(n, generator=generator) ** (1.0 / x.numel()) * radius
        delta = direction * r.view(-1, 1, 1, 1)
    return (x.cpu()[None] + delta).clamp(0.0, 1.0).to(x.device)


def boundary_points(x: torch.Tensor, norm: Norm, eps: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` points at distance eps from x (C, H, W) where the [0, 1] box allows, else as far as it
    allows in a random direction: Linf moves the coordinate with the most room to eps."""
    x0 = x.cpu()[None]
    if norm == Norm.LINF:
        points = (x0 + (2 * torch.rand((n, *x.shape), generator=generator) - 1) * eps).clamp(0.0, 1.0)
        j = int(torch.maximum(x0, 1 - x0).flatten().argmax())  # the coordinate with the most room
        xj = float(x0.flatten()[j])
        points.view(n, -1)[:, j] = xj + min(eps, 1 - xj) if 1 - xj >= xj else xj - min(eps, xj)
    else:
        direction = torch.randn((n, *x.shape), generator=generator)
        delta = direction * (eps / flat_norm(direction, Norm.L2).clamp_min(1e-12)).view(-1, 1, 1, 1)
        for _ in range(8):  # grow the unclipped part back to eps after clipping
            delta = (x0 + delta).clamp(0.0, 1.0) - x0
            size = flat_norm(delta, Norm.L2).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta * (eps / size).clamp_max(1e6)
        points = (x0 + delta).clamp(0.0, 1.0)
        size = flat_norm(points - x0, Norm.L2).view(-1, 1, 1, 1)
        points = x0 + (points - x0) * (eps / size.clamp_min(eps))  # never beyond eps
    return points.to(x.device)


def boundary_point(x: torch.Tensor, norm: Norm, eps: float, generator: torch.Generator) -> torch.Tensor:
    """One point of `boundary_points`."""
    return boundary_points(x, norm, eps, 1, generator)[0]


def fit_readout(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """An unpenalised, class-balanced logistic regression (w, b) on features (N, D) with labels
    0 / 1; None when it does not separate them (then the sample is infeasible)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    f = features.detach().double().cpu().numpy()
    t = labels.cpu().numpy()
    clf = LogisticRegression(C=1e6, class_weight="balanced", max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(f, t)
    w = torch.tensor(clf.coef_[0], dtype=torch.float32)
    b = float(clf.intercept_[0])
    z = features.float().cpu() @ w + b
    if not bool(((z > 0) == labels.cpu().bool()).all()):
        return None
    return w, b


def binarize(
    model: RobustModel, x: torch.Tensor, norm: Norm, eps: float, config: BinarizationConfig,
    generator: torch.Generator,
) -> tuple[BinarizedModel | None, str]:
    """The binarized model of one image x (C, H, W) and "" , or (None, why it is infeasible)."""
    with torch.no_grad():
        draws = config.draws if is_randomized(model, x[None]) else 1
    dim = int(_features(model, x[None], 1).shape[1])
    n_inner = max(1, min(config.n_inner, dim - 3))
    inner = inner_points(x, norm, (1 - config.gap) * eps, n_inner, generator)
    outer = boundary_point(x, norm, eps, generator)
    points = torch.cat([x[None], inner, outer[None]])
    labels = torch.zeros(len(points), dtype=torch.int64)
    labels[-1] = 1
    features = _features(model, points, draws)
    if not bool(torch.isfinite(features).all()):
        return None, "non-finite features"
    fitted = fit_readout(features, labels)
    if fitted is None:
        return None, "readout does not separate the inner points from the boundary point"
    weight, bias = fitted
    z = features.cpu() @ weight + bias
    with torch.no_grad():
        own = model(points).float()
    own_range = float(own.max() - own.min()) if bool(torch.isfinite(own).all()) else 0.0
    span = 2 * float(z.abs().max())
    scale = own_range / span if own_range > 0 and span > 0 else 1.0 / max(span, 1e-12)
    binarized = BinarizedModel(model, weight.to(x.device), bias, scale, draws)
    if expected_decision(binarized, torch.stack([x, outer])).tolist() != [0, 1]:
        return None, "binarized model does not decide x as 0 and the boundary point as 1"
    return binarized, ""


def binarization_test(
    model: RobustModel,
    x: torch.Tensor,
    attack: Attack | Sequence[Attack],
    config: BinarizationConfig | None = None,
) -> BinarizationResult:
    """Run `attack` (at its own eps and norm) on each sample's binarized model.

    `x` (N, C, H, W) in [0, 1]; `attack` a fixed-budget attack built from the registry with the
    evaluation's configuration (`make_attack`), or the evaluation's attacks at one eps and norm
    (a sample passes when any of them finds the planted adversarial: the worst case per sample,
    as the evaluation takes it; they run cheapest first until one does). Writes nothing; the
    model is left as it was.
    """
    config = config or BinarizationConfig()
    attacks = [attack] if isinstance(attack, Attack) else sorted(attack, key=_cost)
    budget = _budget(attacks)
    norm, eps = budget.norm, float(budget.eps or 0.0)
    if x.dim() != 4 or len(x) == 0:
        raise InputError(f"binarization test: x must be a non-empty (N, C, H, W) batch, got {tuple(x.shape)}")
    generator = torch.Generator().manual_seed(config.seed)
    outcomes: list[SampleOutcome] = []
    with eval_mode(model):
        for i in range(len(x)):
            binarized, reason = binarize(model, x[i], norm, eps, config, generator)
            if binarized is None:
                outcomes.append(SampleOutcome(i, False, False, reason))
                continue
            hits = _random_hits(binarized, x[i], norm, eps, config.random, generator)
            found, dist = False, float("nan")
            for a in attacks:
                found, dist = _found(binarized, a, x[i : i + 1], norm, eps)
                if found:
                    break
            outcomes.append(SampleOutcome(i, True, found, "", dist, hits))
    spec: Any = attacks[0].spec() if len(attacks) == 1 else [a.spec() for a in attacks]
    return BinarizationResult(outcomes, summarize(outcomes, spec, norm, eps))


def _cost(attack: Attack) -> float:
    """Model passes per sample the attack plans (cheapest first: the order changes no outcome)."""
    passes = attack.planned_passes()
    return float("inf") if passes is None else float(sum(passes))


def _budget(attacks: list[Attack]) -> Budget:
    """The fixed budget every attack shares; `ConfigError` for none, a minimum-norm attack, eps 0
    or attacks on different budgets."""
    if not attacks:
        raise ConfigError("binarization test: no attack to test")
    budgets = set()
    for a in attacks:
        budget = a.budget
        if budget.eps is None:
            raise ConfigError(f"binarization test: {a.name} has no eps budget (minimum-norm attacks are not tested)")
        if budget.eps <= 0:
            raise ConfigError("binarization test: eps must be > 0")
        budgets.add(budget)
    if len(budgets) > 1:
        raise ConfigError("binarization test: the attacks must share one budget, got "
                          + ", ".join(sorted(b.label() for b in budgets)))
    return budgets.pop()


def _found(binarized: BinarizedModel, attack: Attack, x: torch.Tensor, norm: Norm, eps: float) -> tuple[bool, float]:
    """(the attack's point is inside the ball and decided 1, its distance) for one image x (1, C, H, W)."""
    label = torch.zeros(1, dtype=torch.int64, device=x.device)
    result = attack(binarized, x, label)
    dist = float(distance(result.x_adv, x, norm)[0])
    inside = dist <= eps * (1 + 1e-5) + 1e-6
    # the decision in expectation over fresh draws, not the attack's own (any-draw) verdict
    return inside and int(expected_decision(binarized, result.x_adv)[0]) == 1, dist


def summarize(outcomes: list[SampleOutcome], attack: Any, norm: Norm, eps: float) -> BinarizationSummary:
    """Pass rate over the feasible samples with its 95% Clopper-Pearson interval."""
    from robustlab.core.stats import clopper_pearson  # lazy: evaluate sits above this layer

    feasible = [o for o in outcomes if o.feasible]
    passed = sum(o.found for o in feasible)
    low, high = clopper_pearson(passed, len(feasible))
    rate = passed / len(feasible) if feasible else float("nan")
    hits = [o.random_hits for o in feasible if o.random_hits == o.random_hits]
    random_rate = sum(hits) / len(hits) if hits else float("nan")
    def no_eps(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k != "eps"}

    spec = no_eps(attack) if isinstance(attack, dict) else [no_eps(a) for a in attack]
    return BinarizationSummary(
        spec, norm, eps, len(outcomes), len(feasible), len(outcomes) - len(feasible), passed, rate, low, high,
        random_rate,
    )


def _random_hits(
    binarized: BinarizedModel, x: torch.Tensor, norm: Norm, eps: float, n: int, generator: torch.Generator
) -> float:
    """Fraction of `n` random points on the eps sphere around x that `binarized` decides as 1."""
    if n == 0:
        return float("nan")
    points = boundary_points(x, norm, eps, n, generator)
    return float((expected_decision(binarized, points) == 1).float().mean())
