"""The binarization self-test and the indicators of attack failure across models (issue 21).

On Fashion-MNIST (LeNet-5, a reduced training scale), for an undefended and an adversarially
trained softmax model, every head, and paper 002's defenses over the undefended softmax model,
the binarization pass rate (Zimmermann et al. 2022: the share of feasible samples on which the
attacks find the adversarial planted inside the eps ball; 95% Clopper-Pearson interval) of

- (a) robustlab's default evaluation (`DEFAULT_ATTACKS`: the ensemble and FGSM, as `robustlab
  evaluate` runs them, EOT included where the model is randomized),
- (b) PGD-20 alone, (c) FGSM alone,

each at Linf eps 0.1 on the first `--n` evaluation images, and the indicators of attack failure
(Pintor et al. 2022) each configuration raises on the real model by the masking verdict's rule
(`robustlab.evaluate.selftests.indicator_flags`). The attacks are built and self-tested through
the same code as `robustlab evaluate` (`grid_cells`, `selftest_row`, `evaluate_cell`).

    python benchmarks/self_tests.py [--quick] [--n 40] [--out benchmarks/self_tests.json]
    python benchmarks/self_tests.py --table        # the Markdown table of --out

Writes the JSON after every model (a cut run keeps what it finished) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from robustlab.core.contract import batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import seed_everything
from robustlab.data import load_dataset
from robustlab.defenses import build_defense
from robustlab.evaluate import AttackSpec, EvalSet
from robustlab.evaluate.runner import DEFAULT_ATTACKS, evaluate_cell, grid_cells
from robustlab.evaluate.selftests import indicator_flags, selftest_row
from robustlab.models import build_model
from robustlab.selftest import BinarizationConfig
from robustlab.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
OUT = HERE / "self_tests.json"
EPS = 0.1
CONFIGS = {
    "default": [AttackSpec(a) for a in DEFAULT_ATTACKS],
    "pgd-20": [AttackSpec("pgd", {"steps": 20})],
    "fgsm": [AttackSpec("fgsm")],
}
HEADS = ("arcface", "triplet", "pcl", "mct")
SCALE = {"full": dict(n_train=3000, epochs=4, ae_epochs=20, adv_steps=5),
         "quick": dict(n_train=600, epochs=1, ae_epochs=2, adv_steps=2)}


def train_model(ds, head: str, scale: dict, adv: dict | None = None):
    """LeNet-5 with `head`, Adam 2e-3, seeded."""
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": head, "num_classes": ds.num_classes,
                         "input_shape": list(ds.input_shape)})
    args = {"warmup_epochs": 1} if head == "pcl" else {}
    cfg = TrainConfig(epochs=scale["epochs"], batch_size=128, optimizer="adam", lr=2e-3, weight_decay=0.0, seed=0,
                      objective_args=args, adv=adv)
    train(model, ds.x_train, ds.y_train, cfg)
    return model.eval()


def defenses(scale: dict) -> dict[str, tuple[str, dict]]:
    """Paper 002's defenses (row name -> (defense, params)), at the benchmark's scale."""
    return {
        "distillation T=100": ("distillation", {"temperature": 100, "init": "base", "epochs": scale["epochs"],
                                                "lr": 1e-3, "batch_size": 128}),
        "squeeze bits:4+mean:2": ("squeeze", {"squeezers": ["bits:4", "mean:2"]}),
        "squeeze detector": ("squeeze-detector", {"squeezers": ["bits:4", "median:2"], "fpr": 0.05}),
        "magnet": ("magnet", {"structure": [3, "pool", 3], "epochs": scale["ae_epochs"], "fpr": 0.05}),
        "m-svdd": ("msvdd", {"projections": 32, "positive_epochs": 5, "svdd_epochs": 5, "finetune_epochs": 1}),
    }


def measure(name: str, model, data: EvalSet, log) -> dict[str, Any]:
    """Clean accuracy, then per configuration: the binarization summary and the indicators."""
    x, y = data.x, data.y
    clean = batched_predict(model, x)
    row: dict[str, Any] = {"clean_accuracy": float((clean == y).float().mean()), "configs": {}}
    for config, specs in CONFIGS.items():
        t0 = time.perf_counter()
        cells = grid_cells(model, data, specs, [EPS])
        metrics, _ = selftest_row(model, x, [c.attack for c in cells], BinarizationConfig())
        t_selftest = time.perf_counter() - t0
        rows = []
        for c in cells:
            m, _ = evaluate_cell(model, x, y, c, c.eps, clean_pred=clean)
            rows.append({"model": name, "attack": c.label, "eps": EPS, "kind": m["kind"],
                         "indicators": m.get("indicators"), "robust_accuracy": m["robust_accuracy"]})
        (flag,) = indicator_flags(rows) or [None]
        row["configs"][config] = {
            "attacks": [c.label for c in cells],
            "binarization": {k: metrics[k] for k in ("n", "feasible", "passed", "rate", "low", "high",
                                                     "random_rate")},
            "robust_accuracy": min(r["robust_accuracy"] for r in rows),
            "indicators": {r["attack"]: {k: v["raised"] for k, v in (r["indicators"] or {}).items()
                                         if isinstance(v, dict) and v.get("raised")} for r in rows},
            "indicator_verdict": None if flag is None or not flag.raised else flag.message,
            "seconds_selftest": t_selftest, "seconds": time.perf_counter() - t0,
        }
        b = metrics
        log(f"  {name} {config}: {b['passed']}/{b['feasible']} passed ({b['n']} samples), robust "
            f"{row['configs'][config]['robust_accuracy']:.2f}, {time.perf_counter() - t0:.0f} s"
            + ("; indicators raised" if row["configs"][config]["indicator_verdict"] else ""))
    return row


def _rate(b: dict) -> str:
    if not b["feasible"]:
        return "- (0 feasible)"
    return f"{100 * b['rate']:.0f}% ({100 * b['low']:.0f}-{100 * b['high']:.0f}), {b['passed']}/{b['feasible']}"


def _raised(c: dict) -> str:
    """Indicator counts on the samples left standing, per attack (only those raised anywhere)."""
    parts = []
    for attack, counts in c["indicators"].items():
        if counts:
            shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()))
            parts.append(f"{attack.split('(')[0]}: {shown}")
    text = "; ".join(parts) or "none"
    return f"**{text}**" if c["indicator_verdict"] else text


def table(results: dict) -> str:
    """The Markdown table: pass rate (95% CI), passed/feasible per configuration; indicators."""
    lines = ["| model | clean | (a) default eval | (b) PGD-20 | (c) FGSM | indicators raised (a / b / c) |",
             "|---|---|---|---|---|---|"]
    for name, row in results["models"].items():
        if "error" in row:
            lines.append(f"| {name} | refused: {row['error'][:80]} | | | | |")
            continue
        c = row["configs"]
        lines.append(f"| {name} | {100 * row['clean_accuracy']:.0f}% | "
                     + " | ".join(_rate(c[k]["binarization"]) for k in CONFIGS) + " | "
                     + " / ".join(_raised(c[k]) for k in CONFIGS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny scale, to check the script runs")
    parser.add_argument("--n", type=int, default=40, help="evaluation images self-tested per model (default 40)")
    parser.add_argument("--only", default=None, help="comma-separated model rows to run (default: all)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    scale = SCALE["quick" if args.quick else "full"]
    n = 8 if args.quick else args.n
    only = set(args.only.split(",")) if args.only else None
    results: dict[str, Any] = {"uptime_start": os.popen("uptime").read().strip(), "threads": torch.get_num_threads(),
                               "scale": scale, "n": n, "eps": EPS, "norm": "linf",
                               "configs": {k: [s.label for s in v] for k, v in CONFIGS.items()}, "models": {}}
    t_all = time.perf_counter()
    ds = load_dataset("fashion-mnist", seed=0).subset(n_train=scale["n_train"], seed=0)
    data = EvalSet(ds.x_test[:n], ds.y_test[:n], name="fashion-mnist")

    def log(msg: str) -> None:
        print(msg, flush=True)

    def done(name: str, row: dict, t0: float) -> None:
        row["seconds"] = time.perf_counter() - t0
        results["models"][name] = row
        results["uptime_end"] = os.popen("uptime").read().strip()
        results["seconds"] = time.perf_counter() - t_all
        Path(args.out).write_text(json.dumps(results, indent=1))

    def wanted(name: str) -> bool:
        return only is None or name in only

    base = None
    adv = {"method": "pgd", "eps": EPS, "steps": scale["adv_steps"], "guard": 64}
    targets: list[tuple[str, Any]] = [("softmax", lambda: base),
                                      (f"softmax AT (PGD-{scale['adv_steps']})", lambda: train_model(ds, "softmax",
                                                                                                     scale, adv))]
    targets += [(head, lambda head=head: train_model(ds, head, scale)) for head in HEADS]
    targets += [(f"softmax + {row}", lambda d=d, p=p: build_defense(d, base, ds, **p).model)
                for row, (d, p) in defenses(scale).items()]
    base = train_model(ds, "softmax", scale)
    log(f"{len(ds.y_train)} training images, {n} self-tested at Linf eps {EPS}; {results['uptime_start']}")
    for name, make in targets:
        if not wanted(name):
            continue
        t0 = time.perf_counter()
        try:
            model = make()
        except ConfigError as exc:
            done(name, {"error": str(exc)}, t0)
            log(f"{name}: refused ({exc})")
            continue
        log(f"{name}: ready in {time.perf_counter() - t0:.0f} s")
        done(name, measure(name, model, data, log), t0)
    log(table(results))
    log(f"{time.perf_counter() - t_all:.0f} s; uptime at the end: {results['uptime_end']}")


if __name__ == "__main__":
    main()
