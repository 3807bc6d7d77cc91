"""The attack base: validation, the clean check, final judging by `model.predict`, bookkeeping.

Subclasses implement `_run` on the samples that are not already adversarial; the base
class returns an `AttackResult` whose `success` comes from the model's real decision on
the final `x_adv`, whatever the attack believed internally.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from robustlab.attacks.criteria import Criterion, TargetedMisclassified, make_criterion
from robustlab.attacks.eot import EOT, with_eot
from robustlab.attacks.progress import claimed, reporting
from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError, InputError
from robustlab.core.norms import check_norm, distance
from robustlab.core.progress import on_terminal, terminal_bar
from robustlab.core.results import AttackResult
from robustlab.core.threat import AttackKind, Budget, Norm, check_eps
from robustlab.core.validation import check_int, check_labels, check_model_input, check_number


@dataclass
class RunOutput:
    """What `_run` hands back for the samples it attacked."""

    x_adv: torch.Tensor
    queries: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


def _typed_init(init: Any) -> Any:
    """Wrap an attack constructor so that its numeric and boolean arguments are checked against
    their annotations first: `steps=2.7`, `eps=True`, `eps=nan` or `random_start="no"` raise
    `ConfigError` instead of being truncated or coerced."""
    signature = inspect.signature(init)
    kinds: dict[str, str] = {}
    for p in signature.parameters.values():
        words = set(re.findall(r"\w+", str(p.annotation)))
        if "bool" in words:
            kinds[p.name] = "bool"
        elif "float" in words:
            kinds[p.name] = "float"
        elif "int" in words:
            kinds[p.name] = "int"

    @functools.wraps(init)
    def checked(self: Attack, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        for pname, value in bound.arguments.items():
            kind = kinds.get(pname)
            if kind is None or value is None:
                continue
            label = f"{type(self).name}: {pname}"
            if kind == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"{label} must be true or false, got {value!r}")
            elif kind == "int":
                check_int(value, label)
            else:
                check_number(value, label)
        init(self, *args, **kwargs)

    return checked


PROGRESS_SAMPLES = 1000
"""From this many samples, a direct attack call shows progress on a terminal (`Attack.__call__`)."""


class Attack(ABC):
    """Base of every attack. Stateless about the model: no mode, parameter or `.grad` changes.

    Parameters common to all attacks: ``criterion`` (a `Criterion` or its name; default
    misclassified, or targeted when targets are given), ``seed`` (random starts and
    sampling draw from a CPU generator seeded with it, per call) and ``eot`` (N > 1: the
    model is attacked through `EOT(model, N)`, gradients averaged over N random draws and
    success judged over N draws, see `robustlab.attacks.eot`).

    Each attack declares its threat model: ``kind`` (single-step, iterative, black-box,
    transfer, ensemble; the gradient-masking rules compare kinds), ``norm`` and, through
    its base class, whether it has a fixed budget (`FixedBudgetAttack`, ``eps``) or minimises
    the norm (`MinimumNormAttack`); `budget` gives both as a `Budget`.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names users reach for (`make_attack` accepts them)."""
    kind: ClassVar[AttackKind] = AttackKind.ITERATIVE
    norm: Norm = Norm.LINF
    minimum_norm: ClassVar[bool] = False
    supports_targets: ClassVar[bool] = True
    hidden_params: ClassVar[tuple[str, ...]] = ()
    """Parameters of a parent constructor that this attack fixes (not settable by name)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _typed_init(init)  # type: ignore[method-assign]

    def __init__(self, *, criterion: str | Criterion | None = None, seed: int = 0, eot: int = 1) -> None:
        if criterion is not None:
            make_criterion(criterion)  # an unknown name fails at construction, not mid-run
        self.criterion_spec = criterion
        self.seed = check_int(seed, f"{self.name}: seed", 0)
        if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
            raise ConfigError(f"eot must be an integer >= 1 (random draws), got {eot!r}")
        self.eot = eot

    # ----------------------------------------------------------------- public API
    def __call__(
        self,
        model: RobustModel,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        targets: torch.Tensor | None = None,
        criterion: str | Criterion | None = None,
    ) -> AttackResult:
        """Attack `model` on images `x` in [0, 1] (N, C, H, W) with true labels `y` (N,).

        ``criterion`` overrides the attack's own success criterion for this call (e.g. a
        per-sample one such as `KAnonymousRanks` with each sample's k). A call on
        `PROGRESS_SAMPLES` samples or more, made outside any `reporting` block, draws a progress
        bar on a terminal (`robustlab.core.progress`; ``reporting(None)`` or
        `show_progress(False)` keeps it silent).
        """
        with self._progress(len(x) if isinstance(x, torch.Tensor) and x.dim() else 0):
            return self._attack(model, x, y, targets, criterion)

    @contextmanager
    def _progress(self, n: int) -> Iterator[None]:
        """A terminal bar for the members' steps and queries, where the caller set up none."""
        if n < PROGRESS_SAMPLES or claimed() or not on_terminal():
            yield
            return
        with terminal_bar() as update, reporting(
            lambda member, done, total, standing: update(f"{self.name} | {member}, {standing} of {n} standing",
                                                         done, total)):
            yield

    def _attack(
        self,
        model: RobustModel,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        criterion: str | Criterion | None,
    ) -> AttackResult:
        self._validate(model, x, y, targets)
        model = with_eot(model, self.eot)
        if model.training:
            warnings.warn(
                f"{self.name}: the model is in training mode; the attack runs it as it is "
                "(dropout active, batch-norm statistics updated). Call model.eval() first.",
                stacklevel=3,
            )
        criterion = make_criterion(
            criterion if criterion is not None else self.criterion_spec, targeted=targets is not None
        )
        criterion.check_batch(len(x))
        if criterion.needs_targets and targets is None:
            raise InputError(f"{self.name}: the {criterion.name} criterion needs targets=")
        if targets is not None and not self.supports_targets:
            raise ConfigError(f"{self.name} has no targeted mode")

        y = y.long()
        targets = targets.long() if targets is not None else None
        generator = torch.Generator().manual_seed(self.seed)
        x_adv = x.detach().clone()
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        extras: dict[str, Any] = {}

        with torch.no_grad():
            done = settled(model, x, y, targets, criterion)
        queries += 1
        todo = (~done).nonzero().squeeze(1)
        if len(todo) and self._has_budget():
            t_sub = targets[todo] if targets is not None else None
            out = self._run(model, x[todo], y[todo], t_sub, criterion.select(todo, len(x)), generator)
            x_adv[todo] = out.x_adv.detach().clamp(0.0, 1.0)
            queries[todo] += out.queries.to(queries.device)
            extras = self._scatter_extras(out.extras, todo, len(x))

        with torch.no_grad():
            if isinstance(model, EOT):  # the verdict over draws, and the mean accuracy over them
                success, prediction, extras["draw_accuracy"] = model.judge_draws(x_adv, y, targets, criterion)
            else:
                success, prediction, _ = judge(model, x_adv, y, targets, criterion, force_predict=True)
        queries += 1
        return AttackResult(
            x_adv=x_adv,
            success=success,
            distance=distance(x_adv, x, self.norm),
            queries=queries,
            prediction=prediction,
            extras=extras,
        )

    @classmethod
    def parameters(cls) -> dict[str, inspect.Parameter]:
        """The constructor parameters settable by name, gathered over the class hierarchy."""
        params: dict[str, inspect.Parameter] = {}
        for klass in reversed(cls.__mro__):
            if "__init__" in vars(klass) and issubclass(klass, Attack):
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                        params[p.name] = p
        for hidden in cls.hidden_params:
            params.pop(hidden, None)
        return params

    @property
    def budget(self) -> Budget:
        """The threat model's budget: eps in the attack's norm, or eps None (minimum-norm)."""
        eps = getattr(self, "eps", None)
        return Budget(self.norm, None if self.minimum_norm or eps is None else eps)

    @property
    def batch_independent(self) -> bool:
        """True when each sample's outcome does not depend on which other samples share its
        batch (no batch-drawn randomness, no batch-level stopping). False by default: the
        results store then keys the batch size."""
        return False

    def members(self) -> list[Attack]:
        """The attacks an ensemble runs, in order (empty unless ``kind`` is ENSEMBLE)."""
        return []

    def spec(self) -> dict[str, Any]:
        """The attack's name and every parameter, defaults included, as the attack resolved them:
        a stable, JSON-able key for the results store."""
        params = {}
        for pname in self.parameters():
            if pname == "criterion" or not hasattr(self, pname) or (pname == "eot" and self.eot == 1):
                continue
            value = getattr(self, pname)
            if isinstance(value, Norm):
                params[pname] = value.value
            elif isinstance(value, (int, float, str, bool)) or value is None:
                params[pname] = value
            elif isinstance(value, (tuple, list)):
                params[pname] = list(value)
        criterion = make_criterion(self.criterion_spec) if self.criterion_spec is not None else None
        if criterion is not None and "criterion" in self.parameters():
            params["criterion"] = criterion.spec()
        return {"name": self.name, **params}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({params})"

    # ----------------------------------------------------------------- for subclasses
    @abstractmethod
    def _run(
        self,
        model: RobustModel,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        criterion: Criterion,
        generator: torch.Generator,
    ) -> RunOutput:
        """Attack the samples not already adversarial; return x_adv and queries per sample."""

    def _has_budget(self) -> bool:
        """False when the attack cannot move (eps = 0): `_run` is skipped."""
        return True

    def planned_passes(self) -> tuple[int, int] | None:
        """At most how many (forward+backward, forward-only) model passes one sample costs, for
        `evaluate`'s plan; None when the attack cannot say (adaptive searches)."""
        return None

    # ----------------------------------------------------------------- helpers
    def _validate(self, model: RobustModel, x: torch.Tensor, y: torch.Tensor, targets) -> None:
        if isinstance(model, torch.nn.Module) and not hasattr(model, "predict"):
            raise InputError(f"{self.name}: {type(model).__name__} is a plain torch.nn.Module; wrap it: "
                             "robustlab.wrap(net, num_classes=..., input_shape=(C, H, W))")
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"{self.name}: the model must be a robustlab model, got {type(model).__name__}; "
                             "for a torch network: robustlab.wrap(net, num_classes=..., input_shape=(C, H, W))")
        try:
            check_model_input(model, x)
            check_labels(y, len(x), model.num_classes)
            if targets is not None:
                check_labels(targets, len(x), model.num_classes, name="targets")
        except InputError as exc:
            raise InputError(f"{self.name}: {exc}") from None
        if targets is not None and bool((targets == y).any()):
            raise InputError(f"{self.name}: some targets equal the true label")

    @staticmethod
    def _scatter_extras(extras: dict[str, Any], index: torch.Tensor, n: int) -> dict[str, Any]:
        """Per-sample tensors in `extras` are spread back to the full batch (NaN where unset)."""
        out: dict[str, Any] = {}
        for key, value in extras.items():
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == len(index):
                full = torch.full(
                    (n, *value.shape[1:]), float("nan"), dtype=torch.float32, device=value.device
                )
                full[index.to(value.device)] = value.float()
                out[key] = full
            else:
                out[key] = value
        return out


class FixedBudgetAttack(Attack):
    """An attack bounded by ``eps`` in ``norm`` (pixel units on the [0, 1] scale, finite, >= 0)."""

    norms: ClassVar[tuple[Norm, ...]] = (Norm.LINF, Norm.L2)

    def __init__(self, eps: float, norm: Norm | str = Norm.LINF, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.norm = check_norm(norm, self.norms)
        self.eps = check_eps(eps, f"{self.name}: eps")

    def _has_budget(self) -> bool:
        return self.eps > 0


class MinimumNormAttack(Attack):
    """An attack that looks for the smallest perturbation (in ``norm``) reaching its goal and
    reports the distance it needed; it takes no eps. Robust accuracy at a given eps follows
    from its distances (`robustlab.evaluate.distance_curves`)."""

    minimum_norm: ClassVar[bool] = True


def judge(
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
    criterion: Criterion,
    scores: torch.Tensor | None = None,
    force_predict: bool = False,
    decision: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Success, decision and scores of `x` under `criterion`, from the model's real decision.

    When `decision` (of `x`, from `forward_decide`) is given, or the model decides from its
    scores and `scores` (of `x`) are given, no further forward pass is made;
    `force_predict` always calls `model.predict`.
    """
    if decision is not None and not force_predict:
        pass
    elif scores is not None and model.decision_from_scores and not force_predict:
        decision = model.decide(scores.detach())
    elif isinstance(model, EOT):  # a verdict over several random draws
        success, decision = model.judge(x, y, targets, criterion)
        return success, decision, scores
    else:
        decision = model.predict(x)
        if criterion.needs_scores and scores is None:
            scores = model(x)
    success = criterion(decision, y, targets, scores.detach() if scores is not None else None)
    return success, decision, scores


def settled(model: RobustModel, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None,
            criterion: Criterion) -> torch.Tensor:
    """Which samples of `x` need no (further) attack: those `criterion` calls a success. On a
    randomized model (`EOT`), those whose decision from the mean scores over the draws is a
    success, not those fooled in any one draw: a sample right on most draws is still worth
    attacking (its mean accuracy over draws can fall), though the any-draw verdict calls it fooled."""
    scores = model(x) if isinstance(model, EOT) and model.decision_from_scores else None
    return judge(model, x, y, targets, criterion, scores=scores)[0]


def rows_to_drop(row_sample: torch.Tensor, row_settled: torch.Tensor, samples: int) -> tuple[torch.Tensor, int]:
    """Rows whose sample is settled, by that row or by a sibling row of the same sample (another
    target or restart), and how many (one host sync). `row_sample`: int64 (R,) in [0, samples);
    `row_settled`: bool (R,)."""
    settled_sample = torch.zeros(samples, dtype=torch.bool, device=row_sample.device)
    settled_sample[row_sample[row_settled]] = True
    drop = settled_sample[row_sample]
    return drop, int(drop.sum())


def input_gradient(
    model: RobustModel, x: torch.Tensor, loss_fn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad of loss_fn(scores).sum() w.r.t. x, scores, per-sample loss), input gradient only."""
    grad, scores, loss, _ = input_gradient_decide(model, x, loss_fn, decide=False)
    return grad, scores, loss


def input_gradient_decide(
    model: RobustModel, x: torch.Tensor, loss_fn, decide: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`input_gradient` plus the model's decision on `x` from the same pass (None when `decide`
    is False or the model decides from its scores, where `judge` derives it for free)."""
    if isinstance(model, EOT) and not getattr(loss_fn, "model_loss", False):
        grad, scores, loss = model.loss_gradient(x, loss_fn)
        return grad, scores, loss, None
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        scores, loss, decision = forward_loss(model, x, loss_fn, decide)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return grad, scores.detach(), loss.detach(), decision


def forward_loss(
    model: RobustModel, x: torch.Tensor, loss_fn, decide: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(scores, per-sample loss, decision or None) of `x`. `loss_fn` is a function of the scores,
    or a bound loss (`robustlab.attacks.objectives.bind_loss`) that makes the forward pass itself
    (a model loss such as ``pc_ce``; its decision is then left to `judge`). With `decide`, the
    decision comes from the same pass where the model offers one (`forward_decide`)."""
    if getattr(loss_fn, "model_loss", False):
        scores, loss = loss_fn.forward_loss(model, x)
        return scores, loss, None
    if isinstance(model, EOT):  # the mean of the per-draw losses, all draws in one pass
        draws = model.draw_scores(x)
        loss = torch.stack([loss_fn(s) for s in draws]).mean(dim=0)
        return draws.mean(dim=0), loss, None
    scores, decision = forward_decide(model, x) if decide else (model(x), None)
    return scores, loss_fn(scores), decision


def forward_decide(model: RobustModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores, decision) of `x`: one shared pass when the model offers `forward_decide` and does
    not decide from its scores; else (scores, None) and `judge` decides from the scores."""
    fn = getattr(model, "forward_decide", None)
    if fn is None or model.decision_from_scores:
        return model(x), None
    return fn(x)


__all__ = [
    "Attack", "FixedBudgetAttack", "MinimumNormAttack", "RunOutput", "TargetedMisclassified", "forward_decide",
    "forward_loss",
    "input_gradient", "input_gradient_decide", "judge", "settled",
]
