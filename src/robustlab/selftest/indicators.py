"""Indicators of attack failure (Pintor, Demetrio, Sotgiu, Manca, Demontis, Carlini, Biggio,
Roli, NeurIPS 2022), per sample, from what an attack run already saw.

Each indicator is a reason a sample the attack did *not* fool may be a failure of the attack
rather than robustness of the model; it is computed on the samples the attack left standing
(False elsewhere) and says nothing about the others:

- ``silent_success``: an iterate was judged adversarial during the run but the point returned
  is not (needs the run's trace, `robustlab.attacks.trace`);
- ``incomplete_optimization``: the loss was still rising at the end. From the trace: the best
  loss of the last fifth of the last run beats the best before it by more than `RISE` of the
  run's loss range; without a trace (FGSM, Square, ...): ``ascent_steps`` more projected
  steps of size eps/4 on the margin loss from the returned point, inside the ball, raise the
  margin by more than `RISE` of the clean margin's magnitude, or fool the model;
- ``unavailable_gradients``: the input gradient of the attack's own loss (ce, margin, dlr;
  margin for other attacks) at x or at the returned point is exactly zero or not finite, through
  the attack's view (EOT when it has ``eot``);
- ``unstable_predictions``: the decision at x changes under tiny uniform noise (radius eps/20,
  ``noise_draws`` draws), or between two identical calls (randomness);
- ``non_converging_restarts``: restarts of the same loss end far apart (best losses spread by
  more than `SPREAD` of their magnitude; needs the trace and ``restarts`` > 1, not per-target runs);
- ``transfer_failure``: a transfer attack fooled its source but not the target.

`indicator_summary` counts each over the failed samples with a Clopper-Pearson interval.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.attacks.base import Attack, input_gradient
from robustlab.attacks.eot import with_eot
from robustlab.attacks.objectives import bind_loss, get_attack_loss
from robustlab.attacks.pgd import PGD
from robustlab.core.contract import RobustModel, eval_mode
from robustlab.core.norms import random_in_ball
from robustlab.core.results import AttackResult
from robustlab.core.threat import AttackKind, Norm

INDICATORS = (
    "silent_success", "incomplete_optimization", "unavailable_gradients", "unstable_predictions",
    "non_converging_restarts", "transfer_failure",
)
RISE = 0.05
"""Relative loss rise that counts as still optimising (of the run's range / the clean margin)."""
SPREAD = 0.1
"""Relative spread of restarts' best losses that counts as not converging."""


def attack_indicators(
    model: RobustModel,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    result: AttackResult,
    *,
    noise_draws: int = 8,
    ascent_steps: int = 10,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Per-sample bool (N,) for each name in `INDICATORS`, None where it does not apply to
    `attack` (no trace, no restarts, not a transfer attack). `result` is `attack`'s on (x, y)."""
    failed = ~result.success.to(x.device)
    eps = float(getattr(attack, "eps", 0.0) or 0.0)
    norm = attack.norm
    out: dict[str, torch.Tensor | None] = dict.fromkeys(INDICATORS)
    extras = result.extras
    trace = extras.get("loss_trace")
    with eval_mode(model):
        view = with_eot(model, attack.eot)
        loss = bind_loss(get_attack_loss("margin"), y, None, model.num_classes)
        own = bind_loss(get_attack_loss(_score_loss(attack)), y, None, model.num_classes)
        g_clean, _ = _gradient(view, x, own)
        g_adv, _ = _gradient(view, result.x_adv, own)
        out["unavailable_gradients"] = failed & (_unusable(g_clean) | _unusable(g_adv))
        margin_clean, margin_adv = _margin(view, x, loss), _margin(view, result.x_adv, loss)
        out["unstable_predictions"] = failed & _unstable(model, x, norm, eps, noise_draws, seed)
        if isinstance(trace, torch.Tensor):
            out["incomplete_optimization"] = failed & _still_rising(trace)
        elif eps > 0:
            out["incomplete_optimization"] = failed & _ascent_rises(
                view, x, y, result.x_adv, norm, eps, ascent_steps, margin_clean, margin_adv, loss
            )
    found = extras.get("found_during_run")
    if isinstance(found, torch.Tensor):
        out["silent_success"] = failed & (torch.nan_to_num(found.float()) > 0).to(failed.device)
    if isinstance(trace, torch.Tensor) and getattr(attack, "restarts", 1) > 1 and not hasattr(attack, "n_targets"):
        out["non_converging_restarts"] = failed & _restarts_apart(trace)
    source = extras.get("source_success")
    if attack.kind == AttackKind.TRANSFER and isinstance(source, torch.Tensor):
        out["transfer_failure"] = failed & source.bool().to(failed.device)
    return out


def indicator_summary(indicators: dict[str, torch.Tensor | None], result: AttackResult) -> dict[str, Any]:
    """Per indicator: raised (count over the failed samples), failed, rate and 95% interval; or
    None where it does not apply. Also ``failed``: how many samples the attack left standing."""
    from robustlab.core.stats import clopper_pearson  # lazy: evaluate sits above this layer

    failed = int((~result.success).sum())
    summary: dict[str, Any] = {"failed": failed}
    for name in INDICATORS:
        flags = indicators.get(name)
        if flags is None:
            summary[name] = None
            continue
        raised = int(flags.sum())
        low, high = clopper_pearson(raised, failed)
        summary[name] = {"raised": raised, "failed": failed, "rate": raised / failed if failed else 0.0,
                         "low": low, "high": high}
    return summary


def _score_loss(attack: Attack) -> str:
    """The attack's own score loss (ce, margin, dlr), else margin (model losses, black-box)."""
    name = getattr(attack, "loss", None)
    return name if isinstance(name, str) and name.lower() in ("ce", "margin", "dlr") else "margin"


def _gradient(model: RobustModel, x: torch.Tensor, loss) -> tuple[torch.Tensor, torch.Tensor]:
    grad, _, value = input_gradient(model, x, loss)
    return grad, value


@torch.no_grad()
def _margin(model: RobustModel, x: torch.Tensor, loss) -> torch.Tensor:
    return loss(model(x))


def _unusable(grad: torch.Tensor) -> torch.Tensor:
    flat = grad.flatten(1)
    return ~torch.isfinite(flat).all(dim=1) | (flat == 0).all(dim=1)


@torch.no_grad()
def _unstable(model: RobustModel, x: torch.Tensor, norm: Norm, eps: float, draws: int, seed: int) -> torch.Tensor:
    """The decision at x differs under noise of radius eps/20 (or between repeated calls)."""
    generator = torch.Generator().manual_seed(seed)
    reference = model.predict(x)
    changed = model.predict(x) != reference
    radius = eps / 20 if eps > 0 else 1e-3
    for _ in range(draws):
        noisy = (x + random_in_ball(x, norm, radius, generator)).clamp(0.0, 1.0)
        changed |= model.predict(noisy) != reference
    return changed


def _still_rising(trace: torch.Tensor) -> torch.Tensor:
    """Per sample: in its last run with recorded losses, the best of the last fifth of the steps
    beats the best before by more than RISE of that run's loss range."""
    trace = trace.float()
    n, runs, steps = trace.shape
    recorded = torch.isfinite(trace).any(dim=2)  # (n, runs)
    last = (torch.arange(runs, device=trace.device) * recorded).amax(dim=1)
    run = trace[torch.arange(n, device=trace.device), last]  # (n, steps)
    valid = torch.isfinite(run)
    count = valid.sum(dim=1)
    position = valid.long().cumsum(dim=1)  # 1-based rank of each recorded step
    tail = valid & (position > (count - (count + 4) // 5).unsqueeze(1))
    head = valid & ~tail
    best_tail = run.masked_fill(~tail, float("-inf")).amax(dim=1)
    best_head = run.masked_fill(~head, float("-inf")).amax(dim=1)
    span = run.masked_fill(~valid, float("-inf")).amax(dim=1) - run.masked_fill(~valid, float("inf")).amin(dim=1)
    rising = (best_tail - best_head) > RISE * span
    return rising & (count >= 5) & torch.isfinite(span) & (span > 0)


def _ascent_rises(model, x, y, x_adv, norm, eps, steps, margin_clean, margin_adv, loss) -> torch.Tensor:
    """More projected steps (size eps/4) on the margin from `x_adv` raise it by more than RISE of
    the clean margin's magnitude, or fool the model."""
    ascent = PGD(eps=eps, norm=norm, steps=steps, step_size=eps / 4, random_start=False)
    further = ascent.ascend(lambda z: loss(model(z)).sum(), x, start=x_adv)
    with torch.no_grad():
        margin_further = loss(model(further))
        fooled = model.predict(further) != y
    gain = margin_further - torch.maximum(margin_adv, margin_clean)
    return (gain > RISE * margin_clean.abs().clamp_min(1e-6)) | fooled


def _restarts_apart(trace: torch.Tensor) -> torch.Tensor:
    """Best losses of the restarts a sample ran spread by more than SPREAD of their magnitude."""
    best = torch.nan_to_num(trace.float(), nan=float("-inf")).amax(dim=2)  # (n, runs)
    ran = torch.isfinite(best)
    hi = best.masked_fill(~ran, float("-inf")).amax(dim=1)
    lo = best.masked_fill(~ran, float("inf")).amin(dim=1)
    scale = torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-6)
    return (ran.sum(dim=1) >= 2) & ((hi - lo) > SPREAD * scale)


def cell_indicators(
    model: RobustModel, attack: Attack, x: torch.Tensor, y: torch.Tensor, result: AttackResult, batch_size: int = 256,
) -> tuple[dict[str, Any], dict[str, list[bool]]]:
    """`attack_indicators` over (x, y) in batches on the model's device, for one grid cell:
    (`indicator_summary`, per-sample flags of the indicators that apply)."""
    device = next(model.parameters(), torch.empty(0)).device
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(x), batch_size):
        rows = slice(i, i + batch_size)
        extras = {k: (v[rows].to(device) if isinstance(v, torch.Tensor) and v.shape[:1] == result.success.shape[:1]
                      else v) for k, v in result.extras.items()}
        part = AttackResult(result.x_adv[rows].to(device), result.success[rows].to(device),
                            result.distance[rows], result.queries[rows], result.prediction[rows], extras)
        flags = attack_indicators(model, attack, x[rows].to(device), y[rows].to(device), part)
        for name, value in flags.items():
            if value is not None:
                parts.setdefault(name, []).append(value.cpu())
    merged: dict[str, torch.Tensor | None] = {name: torch.cat(parts[name]) if name in parts else None
                                              for name in INDICATORS}
    per_sample = {name: v.tolist() for name, v in merged.items() if v is not None}
    return indicator_summary(merged, result), per_sample
