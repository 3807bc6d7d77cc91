"""Attack speed: each iterative attack's time divided by its floor, measured in one run.

The floor of an attack that makes S gradient steps is the time of S forward+backward
passes (input gradient only, `torch.autograd.grad`) on the same model and batch: no
attack can take a step for less. A ratio of 1.05 means 5% overhead for projections,
bookkeeping, the clean check and the final judging pass.

Two settings per attack: "no early stop" (eps so small that no sample is fooled, so every
step runs on the whole batch: pure overhead) and "typical eps" (early stop active).

Then, when the peer libraries are installed (scripts/install-peers.sh), every attack
against its peers on the same model, batch and budget: BIM, MIM, APGD against their floor
and torchattacks; C&W and DeepFool (time, success, median L2) against foolbox and
torchattacks; the AutoAttack-style ensemble against torchattacks' AutoAttack; FGSM,
R-FGSM, Square, HopSkipJump, JSMA and L-BFGS for their times.

Suite "ensemble": the AutoAttack-style ensemble on the metric heads (triplet k-NN, PCL
prototype) and softmax, LeNet-5 on digits with the training defaults, against its floor: the
forward+backward passes of its APGD members plus the forward passes of its Square queries,
counted per sample from the run itself (``extras["member_queries"]``) and replayed: each
member's mean passes per sample, made on the samples it ran on (those still standing when it
started), at that full batch (so the floor never pays for early stopping's smaller batches).
Also the same run through the two-pass contract (scores by `forward`, decisions by
`predict`, as before the one-pass `forward_decide`) for comparison. Attack, two-pass run and
floor are alternated ``--repeats`` times; each is the fastest of its runs.

Suite "standard": AutoAttack's standard protocol, robustlab's (`version=standard`) against the
reference's members run with the reference's settings (torchattacks' port of APGD, APGD-T,
FAB-T and Square, 100 iterations, 9 targets, 5,000 queries; torchattacks' own `AutoAttack`
runs them with 10 iterations), on the same LeNet-5 and ``--batch`` test images, one after the
other in this run: robust accuracy of each, per-sample agreement, time ratio, load.

Suite "rand": a randomized model (the LeNet-5 on x + N(0, sigma^2) noise, a fresh draw per
forward): robustlab's default evaluation of it (`evaluate`'s auto-EOT: autoattack's rand
version) against the reference's rand protocol (APGD-CE and APGD-DLR, EOT 20, 100
iterations): mean accuracy over 40 fresh draws of each one's adversarial images, robustlab's
any-draw verdict, times.

    python benchmarks/attack_speed.py [--batch 250] [--steps 40] [--repeats 5] [--device cpu]
                                      [--suite floor|peers|ensemble|standard|rand|all]
                                      [--aa-steps 100 --aa-targets 9 --aa-queries 5000 --aa-eps 0.1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch.nn import functional as F

from robustlab.attacks import (
    APGD,
    BIM,
    FGSM,
    JSMA,
    LBFGS,
    MIM,
    PGD,
    RFGSM,
    AutoAttack,
    CarliniWagnerL2,
    DeepFool,
    HopSkipJump,
    Square,
)
from robustlab.core import pick_device, seed_everything
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.train import TrainConfig, train

T = TypeVar("T")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_once(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """`fn()` once after `torch.manual_seed(0)`, with its wall time in seconds (device synced)."""
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def paired(fn: Callable[[], object], ref: Callable[[], object], device: torch.device, repeats: int):
    """(time of fn, time of ref), each the fastest of `repeats` runs, the two alternated so
    that a change of machine load hits both alike (the machine may be shared)."""
    fn()
    ref()
    a, b = [], []
    for _ in range(repeats):
        for f, acc in ((fn, a), (ref, b)):
            sync(device)
            start = time.perf_counter()
            f()
            sync(device)
            acc.append(time.perf_counter() - start)
    return min(a), min(b)


def floor(model, x, y, passes: int) -> None:
    """`passes` forward+backward passes for the input gradient, nothing else."""
    for _ in range(passes):
        xr = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y, reduction="sum")
        torch.autograd.grad(loss, xr)


def trained_lenet(device: torch.device):
    """LeNet-5 on 2,000 Fashion-MNIST images (digits upscaled to 28x28 when it is absent)."""
    try:
        data = load_dataset("fashion-mnist", download=False).subset(n_train=3000, n_test=1000)
    except Exception:  # noqa: BLE001 - any failure: fall back on the embedded data
        data = load_dataset("digits", resize=28)
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": "softmax", "num_classes": data.num_classes,
                         "input_shape": list(data.input_shape)}).to(device)
    train(model, data.x_train.to(device), data.y_train.to(device),
          TrainConfig(epochs=8, optimizer="adam", lr=0.002, weight_decay=0.0, batch_size=128))
    return model.eval(), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--suite", choices=("floor", "peers", "ensemble", "standard", "rand", "all"), default="all")
    parser.add_argument("--sigma", type=float, default=0.2, help="noise of the randomized model (suite rand)")
    parser.add_argument("--aa-steps", type=int, default=100)
    parser.add_argument("--aa-targets", type=int, default=9)
    parser.add_argument("--aa-queries", type=int, default=5000)
    parser.add_argument("--aa-eps", type=float, default=0.1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.suite == "ensemble":
        ensemble_suite(args, device)
        return
    model, data = trained_lenet(device)
    if args.suite in ("standard", "rand"):
        (standard_suite if args.suite == "standard" else rand_suite)(model, data, args, device)
        return
    # Only correctly classified samples: the attack then works on the whole batch, as the floor does.
    correct = (model.predict(data.x_test.to(device)) == data.y_test.to(device)).cpu()
    x = data.x_test[correct][: args.batch].to(device)
    y = data.y_test[correct][: args.batch].to(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {len(x)}, steps {args.steps}, "
          f"data {data.name}, model lenet")
    t_floor = timed(lambda: floor(model, x, y, args.steps), device, args.repeats)
    print(f"floor: {args.steps} forward+backward passes: {1000 * t_floor:.1f} ms")
    if args.suite in ("floor", "all"):
        floor_suite(model, x, y, args, device, t_floor)
    if args.suite in ("peers", "all"):
        peer_suite(model, x, y, args, device, t_floor)


def floor_suite(model, x, y, args, device, t_floor) -> None:
    cases = [
        ("PGD Linf, no early stop (eps 1e-4)", PGD(1e-4, steps=args.steps)),
        ("PGD L2, no early stop (eps 1e-3)", PGD(1e-3, norm="l2", steps=args.steps)),
        ("PGD Linf, eps 0.1 (early stop)", PGD(0.1, steps=args.steps)),
        ("BIM Linf, no early stop (eps 1e-4)", BIM(1e-4, steps=args.steps)),
        ("MIM Linf, no early stop (eps 1e-4)", MIM(1e-4, steps=args.steps)),
        ("APGD-CE Linf, no early stop (eps 1e-4)", APGD(1e-4, steps=args.steps)),
        ("APGD-CE L2, no early stop (eps 1e-3)", APGD(1e-3, norm="l2", steps=args.steps)),
    ]
    print(f"{'attack':42s} {'ms':>8s} {'ratio to floor':>15s} {'robust acc':>11s}")
    for label, attack in cases:
        t, t_ref = paired(lambda a=attack: a(model, x, y), lambda: floor(model, x, y, args.steps), device,
                          args.repeats)
        r = attack(model, x, y)
        print(f"{label:42s} {1000 * t:8.1f} {t / t_ref:15.3f} {float((r.prediction == y).float().mean()):11.3f}")


# ----------------------------------------------------------------------------- peers
def has(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def robust(model, x_adv, y) -> float:
    return float((model.predict(x_adv) == y).float().mean())


def l2_stats(model, x, y, x_adv) -> tuple[float, float]:
    """(success rate, median L2 of the successes) of a minimum-norm attack's output."""
    fooled = model.predict(x_adv) != y
    d = (x_adv - x).flatten(1).norm(dim=1)
    return float(fooled.float().mean()), float(d[fooled].median()) if bool(fooled.any()) else float("nan")


def row(label: str, seconds: float, t_floor: float | None, strength: str) -> None:
    ratio = f"{seconds / t_floor:8.3f}" if t_floor else " " * 8
    print(f"{label:46s} {1000 * seconds:10.1f} {ratio}   {strength}")


def peer_suite(model, x, y, args, device, t_floor) -> None:
    """Each attack next to its peers, same model, batch and budget, timed in this one run."""
    steps, eps = args.steps, 0.1
    ta = __import__("torchattacks") if has("torchattacks") else None
    fb = __import__("foolbox") if has("foolbox") else None
    fmodel = fb.PyTorchModel(model, bounds=(0, 1)) if fb else None

    def time_it(fn):
        return timed(fn, device, args.repeats)

    print(f"\n{'attack (eps ' + str(eps) + ', ' + str(steps) + ' steps)':46s} {'ms':>10s} {'/floor':>8s}   strength")
    # iterative fixed-budget attacks: no early stop (ratio to floor) and at eps (robust accuracy)
    pairs = [
        ("PGD", lambda e: PGD(e, steps=steps, step_size=e / 4),
         (lambda e: ta.PGD(model, eps=e, alpha=e / 4, steps=steps)) if ta else None),
        ("BIM", lambda e: BIM(e, steps=steps),
         (lambda e: ta.BIM(model, eps=e, alpha=e / steps, steps=steps)) if ta else None),
        ("MIM", lambda e: MIM(e, steps=steps),
         (lambda e: ta.MIFGSM(model, eps=e, alpha=e / steps, steps=steps, decay=1.0)) if ta else None),
        ("APGD-CE", lambda e: APGD(e, steps=steps),
         (lambda e: ta.APGD(model, eps=e, steps=steps, loss="ce", n_restarts=1)) if ta else None),
    ]
    def floor_fn():
        floor(model, x, y, steps)

    for name, ours, theirs in pairs:
        for e, label in ((1e-4, "no early stop (eps 1e-4)"), (eps, f"eps {eps}")):
            a = ours(e)
            t, t_ref = paired(lambda a=a: a(model, x, y), floor_fn, device, args.repeats)
            row(f"{name} robustlab, {label}", t, t_ref, f"robust acc {robust(model, a(model, x, y).x_adv, y):.3f}")
            if theirs:
                p = theirs(e)
                t_p, t_o = paired(lambda p=p: p(x, y), lambda a=a: a(model, x, y), device, args.repeats)
                row(f"{name} torchattacks, {label}", t_p, None,
                    f"robust acc {robust(model, p(x, y), y):.3f}; robustlab/torchattacks time {t_o / t_p:.2f}")

    # C&W with binary search: robustlab vs foolbox (same search) vs torchattacks (no search)
    search, cw_steps = 9, 100
    ours_cw = CarliniWagnerL2(search_steps=search, steps=cw_steps)
    t = time_it(lambda: ours_cw(model, x, y))
    s, d = l2_stats(model, x, y, ours_cw(model, x, y).x_adv)
    row(f"C&W robustlab ({search}x{cw_steps})", t, None, f"success {s:.3f}, median L2 {d:.3f}")
    short_cw = CarliniWagnerL2(search_steps=5, steps=cw_steps)
    t = time_it(lambda: short_cw(model, x, y))
    s, d = l2_stats(model, x, y, short_cw(model, x, y).x_adv)
    row(f"C&W robustlab (5x{cw_steps})", t, None, f"success {s:.3f}, median L2 {d:.3f}")
    paper_cw = CarliniWagnerL2(search_steps=search, steps=cw_steps, lr=0.01, boundary_eps=1e-6,
                               initial_const=1e-3)
    t = time_it(lambda: paper_cw(model, x, y))
    s, d = l2_stats(model, x, y, paper_cw(model, x, y).x_adv)
    row("C&W robustlab, paper settings", t, None, f"success {s:.3f}, median L2 {d:.3f}")
    if fb:
        atk = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=search, steps=cw_steps)
        t = time_it(lambda: atk(fmodel, x, y, epsilons=None))
        s, d = l2_stats(model, x, y, atk(fmodel, x, y, epsilons=None)[1])
        row(f"C&W foolbox ({search}x{cw_steps})", t, None, f"success {s:.3f}, median L2 {d:.3f}")
    if ta:
        atk = ta.CW(model, c=1, steps=search * cw_steps, lr=0.01)
        t = time_it(lambda: atk(x, y))
        s, d = l2_stats(model, x, y, atk(x, y))
        row(f"C&W torchattacks (c=1, {search * cw_steps} steps)", t, None, f"success {s:.3f}, median L2 {d:.3f}")

    # DeepFool
    df = DeepFool(steps=50, overshoot=0.02)
    t = time_it(lambda: df(model, x, y))
    s, d = l2_stats(model, x, y, df(model, x, y).x_adv)
    row("DeepFool robustlab", t, None, f"success {s:.3f}, median L2 {d:.3f}")
    if fb:
        atk = fb.attacks.L2DeepFoolAttack(steps=50, overshoot=0.02, candidates=10)
        t = time_it(lambda: atk(fmodel, x, y, epsilons=None))
        s, d = l2_stats(model, x, y, atk(fmodel, x, y, epsilons=None)[1])
        row("DeepFool foolbox", t, None, f"success {s:.3f}, median L2 {d:.3f}")
    if ta:
        atk = ta.DeepFool(model, steps=50, overshoot=0.02)
        t = timed(lambda: atk(x, y), device, 1)
        s, d = l2_stats(model, x, y, atk(x, y))
        row("DeepFool torchattacks (1 repeat)", t, None, f"success {s:.3f}, median L2 {d:.3f}")

    # the ensemble against torchattacks' AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square 5000)
    # (torchattacks' "standard" AutoAttack runs its APGD, APGD-T and FAB with their default 10 steps)
    aa_eps = 0.05
    for aa_steps in (100, 10):
        ens = AutoAttack(aa_eps, steps=aa_steps)
        start = time.perf_counter()
        r = ens(model, x, y)
        row(f"AutoAttack robustlab ({aa_steps} steps, eps {aa_eps}, 1 run)", time.perf_counter() - start, None,
            f"robust acc {robust(model, r.x_adv, y):.3f}")
    if ta:
        atk = ta.AutoAttack(model, norm="Linf", eps=aa_eps, version="standard", n_classes=model.num_classes)
        start = time.perf_counter()
        adv = atk(x, y)
        row(f"AutoAttack torchattacks (standard, eps {aa_eps}, 1 run)", time.perf_counter() - start, None,
            f"robust acc {robust(model, adv, y):.3f}")

    # the rest, for their times
    others = [
        ("FGSM", FGSM(eps)), ("R-FGSM", RFGSM(eps)), ("Square Linf (1000 queries)", Square(eps, queries=1000)),
        ("Square L2 (1000 queries)", Square(1.0, norm="l2", queries=1000, p_init=0.3)),
        ("HopSkipJump L2 (20 steps)", HopSkipJump(steps=20)), ("JSMA (gamma 0.1)", JSMA(gamma=0.1)),
        ("L-BFGS (5 x 50 iterations)", LBFGS(search_steps=5, max_iter=50)),
    ]
    for label, a in others:
        start = time.perf_counter()
        r = a(model, x, y)
        extra = f"robust acc {robust(model, r.x_adv, y):.3f}" if not a.minimum_norm else (
            f"success {float(r.success.float().mean()):.3f}, median {a.norm} "
            f"{float(r.distance[r.success].median()) if bool(r.success.any()) else float('nan'):.3f}")
        row(label + " (1 run)", time.perf_counter() - start, None, extra)


# ----------------------------------------------------------------------------- ensemble on metric heads
class TwoPass(torch.nn.Module):
    """A model seen through the plain contract: scores by `forward`, decisions by `predict`."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.num_classes, self.input_shape = inner, inner.num_classes, inner.input_shape
        self.decision_from_scores = inner.decision_from_scores
        self.can_reject = inner.can_reject

    def forward(self, x):
        return self.inner(x)

    def predict(self, x):
        return self.inner.predict(x)

    def decide(self, scores):
        return self.inner.decide(scores)


def ensemble_suite(args, device) -> None:
    import os

    data = load_dataset("digits")
    print(f"load before: {os.getloadavg()[0]:.2f}; digits, LeNet-5, training defaults; AutoAttack eps {args.aa_eps}, "
          f"steps {args.aa_steps}, targets {args.aa_targets}, queries {args.aa_queries}, batch <= {args.batch}")
    print(f"{'head':10s} {'N':>4s} {'time s':>8s} {'floor s':>8s} {'/floor':>7s} {'two-pass s':>11s} {'/floor':>7s} "
          f"{'robust acc':>10s}")
    for head in ("softmax", "triplet", "pcl"):
        seed_everything(0)
        model = build_model({"backbone": "lenet", "head": head, "num_classes": 10, "input_shape": [1, 8, 8]}).to(device)
        train(model, data.x_train.to(device), data.y_train.to(device), TrainConfig(seed=0))
        model.eval()
        correct = (model.predict(data.x_test.to(device)) == data.y_test.to(device)).cpu()
        x = data.x_test[correct][: args.batch].to(device)
        y = data.y_test[correct][: args.batch].to(device)
        attack = AutoAttack(args.aa_eps, steps=args.aa_steps, n_targets=args.aa_targets, queries=args.aa_queries)
        slow = TwoPass(model).eval()
        r = attack(model, x, y)  # warm-up, and the passes each member made
        q = r.extras["member_queries"].nan_to_num(0)

        def replay(m=model, q=q, x=x, y=y) -> None:
            """The floor: as many passes per sample as each member made, on the samples it ran on."""
            for i in range(3):
                rows = (q[:, i] > 0).nonzero().squeeze(1)
                if len(rows) == 0:
                    continue
                passes = round(float(q[rows, i].sum()) / len(rows))
                if i < 2:
                    floor(m, x[rows], y[rows], passes)
                else:
                    with torch.no_grad():
                        for _ in range(passes):
                            m.forward_decide(x[rows])

        times: dict[str, list[float]] = {"one": [], "two": [], "floor": []}
        outcome = {}
        for _ in range(args.repeats):  # alternated, so that a change of load hits all three alike
            for key, fn in (("one", lambda a=attack, m=model, x=x, y=y: a(m, x, y)),
                            ("two", lambda a=attack, m=slow, x=x, y=y: a(m, x, y)), ("floor", replay)):
                sync(device)
                start = time.perf_counter()
                outcome[key] = fn()
                sync(device)
                times[key].append(time.perf_counter() - start)
        assert torch.equal(outcome["one"].success, outcome["two"].success)  # the same outcome, sample for sample
        seconds, slow_s, t_floor = (min(times[k]) for k in ("one", "two", "floor"))
        print(f"{head:10s} {len(x):4d} {seconds:8.1f} {t_floor:8.1f} {seconds / t_floor:7.2f} {slow_s:11.1f} "
              f"{slow_s / t_floor:7.2f} {float((r.prediction == y).float().mean()):10.3f}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


# ----------------------------------------------------------------------------- AutoAttack's protocols
def _reference():
    """`reference_autoattack` and `NoisyModel` from the tests' model zoo (one copy of each)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from attack_models import NoisyModel, reference_autoattack

    return reference_autoattack, NoisyModel


def _first(data, n: int, device):
    order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))[:n]
    return data.x_test[order].to(device), data.y_test[order].to(device)


def standard_suite(model, data, args, device) -> None:
    reference_autoattack, _ = _reference()
    x, y = _first(data, args.batch, device)
    eps = args.aa_eps
    print(f"load before: {os.getloadavg()[0]:.2f}; {data.name}, LeNet-5, {len(x)} test images, Linf eps {eps}, "
          f"AutoAttack standard; torch threads {torch.get_num_threads()}")
    ours, t_ours = run_once(lambda: AutoAttack(eps, version="standard")(model, x, y), device)
    ref, t_ref = run_once(lambda: reference_autoattack(model, "standard", "linf", eps)(x, y), device)
    ours_ok, ref_ok = model.predict(ours.x_adv) == y, model.predict(ref) == y
    print(f"clean accuracy {float((model.predict(x) == y).float().mean()):.3f}")
    print(f"{'':28s} {'robust acc':>10s} {'time s':>8s}")
    print(f"{'robustlab standard':28s} {float(ours_ok.float().mean()):10.3f} {t_ours:8.1f}")
    print(f"{'reference members (ta port)':28s} {float(ref_ok.float().mean()):10.3f} {t_ref:8.1f}")
    print(f"per-sample agreement {float((ours_ok == ref_ok).float().mean()):.3f}; time ratio {t_ours / t_ref:.2f}")
    standing = ours_ok & ref_ok & (model.predict(x) == y)
    if bool(standing.any()):
        t_gradient, t_square = protocol_floor(model, x[standing], y[standing], args, device)
        t_floor = t_gradient + t_square
        print(f"pass floor of the {int(standing.sum())} images nothing fools: {t_floor:.1f} s "
              f"(APGD-CE, APGD-T, FAB-T {t_gradient:.1f} s, Square {t_square:.1f} s; "
              f"{t_floor / t_ref:.2f} of the reference's time, {t_floor / t_ours:.2f} of robustlab's)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


def protocol_floor(model, x, y, args, device) -> tuple[float, float]:
    """Seconds of the model passes that `standard`'s members make on images that none of them fools,
    whoever implements them: APGD-CE's steps, APGD-T's steps per target, FAB-T's steps per target
    (forward+backward for the hyperplane, forward to judge the new point: it is adversarial beyond eps
    at most steps and steps back, so the next gradient is not at the judged point) and Square's
    queries, at this batch: (seconds of the gradient members, seconds of Square). Extrapolated from
    timing 20 forward+backward and 100 forward passes."""
    steps, targets = args.aa_steps, args.aa_targets
    t_fb = timed(lambda: floor(model, x, y, 20), device, 3) / 20

    def forwards() -> None:
        with torch.no_grad():
            for _ in range(100):
                model(x)

    t_f = timed(forwards, device, 3) / 100
    return t_fb * steps * (1 + 2 * targets) + t_f * steps * targets, t_f * args.aa_queries


def rand_suite(model, data, args, device) -> None:
    from robustlab.evaluate.runner import DEFAULT_ATTACKS, AttackSpec, eot_specs_for_randomized

    reference_autoattack, noisy_model = _reference()
    noisy = noisy_model(model, args.sigma).eval()
    x, y = _first(data, args.batch, device)
    eps = args.aa_eps
    spec = eot_specs_for_randomized([AttackSpec(DEFAULT_ATTACKS[0])])[0]
    print(f"load before: {os.getloadavg()[0]:.2f}; {data.name}, LeNet-5 on x + N(0, {args.sigma}^2), {len(x)} test "
          f"images, Linf eps {eps}; robustlab's default: {spec.name} {spec.params}")

    def mean_over_draws(x_adv: torch.Tensor, draws: int = 40) -> float:
        torch.manual_seed(1)
        return float(torch.stack([(noisy.predict(x_adv) == y).float() for _ in range(draws)]).mean())

    print(f"clean: mean accuracy over 40 draws {mean_over_draws(x):.3f}")
    ours, t_ours = run_once(lambda: spec.build(eps)(noisy, x, y), device)
    ref, t_ref = run_once(lambda: reference_autoattack(noisy, "rand", "linf", eps)(x, y), device)
    print(f"{'':30s} {'mean acc, 40 draws':>18s} {'any-draw robust':>15s} {'time s':>8s}")
    print(f"{'robustlab default (rand)':30s} {mean_over_draws(ours.x_adv):18.3f} "
          f"{float((ours.prediction == y).float().mean()):15.3f} {t_ours:8.1f}")
    print(f"{'reference rand (ta port)':30s} {mean_over_draws(ref):18.3f} {'':15s} {t_ref:8.1f}")
    print(f"robustlab's own estimate over its 20 draws: {float(ours.extras['draw_accuracy'].mean()):.3f}; "
          f"time ratio {t_ours / t_ref:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
