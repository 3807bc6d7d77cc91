"""Robust training on Fashion-MNIST (LeNet-5, eps 0.1 Linf): every adversarial-training method,
and PCL / MCT / triplet k-NN each combined with PGD training, plus one face set (ORL) with
the best recipe.

For each recipe: clean accuracy (whole test set and the attacked subset), robust accuracy
under the full-strength AutoAttack-style ensemble (APGD-CE and APGD-T at 100 steps, 9 target
classes, Square at 5,000 queries) on a fixed test subset, the training time of an epoch
(the optimisation steps only: per-epoch evaluation and the overfitting guard excluded) divided
by a standard epoch's, and the overfitting guard's flags. Then the cost of one PGD-k training
step against the (k + 1) forward+backward passes it cannot avoid (k input-gradient passes as
in benchmarks/attack_speed.py, plus one parameter-gradient pass; optimizer step excluded from
both), timed alternately on one batch.

Results go to benchmarks/robust_training.json after every recipe (a rerun skips the recipes
already there with the same settings), with the `uptime` load beside every timing.

    PYTHONPATH=src python benchmarks/robust_training.py [--train-per-class 1000] [--epochs 10]
        [--n-eval 1000] [--only pgd-10,trades] [--out PATH] [--peer PATH] [--no-orl] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from robustlab.attacks import AutoAttack
from robustlab.core.contract import batched_predict
from robustlab.core.runtime import seed_everything
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.train import TrainConfig, make_objective, train
from robustlab.train.adversarial import AdvConfig, adversarial, recipe_label

HERE = Path(__file__).parent
EPS = 0.1


def recipes(eps: float) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """name -> (head, adversarial recipe); every method at its defaults."""
    return {
        "standard": ("softmax", None),
        "pgd-10": ("softmax", {"method": "pgd", "eps": eps, "steps": 10}),
        "fgsm-rs": ("softmax", {"method": "fgsm-rs", "eps": eps}),
        "n-fgsm": ("softmax", {"method": "n-fgsm", "eps": eps}),
        "fgsm-mix": ("softmax", {"method": "fgsm-mix", "eps": eps}),
        "trades": ("softmax", {"method": "trades", "eps": eps, "steps": 10}),
        "alp": ("softmax", {"method": "alp", "eps": eps, "steps": 10}),
        "tla": ("softmax", {"method": "tla", "eps": eps, "steps": 10}),
        "pcl+pgd-10": ("pcl", {"method": "pgd", "eps": eps, "steps": 10}),
        "mct+pgd-10": ("mct", {"method": "pgd", "eps": eps, "steps": 10}),
        "triplet+pgd-10": ("triplet", {"method": "pgd", "eps": eps, "steps": 10}),
    }


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def timed_train(model, data, cfg: TrainConfig, x_held, y_held) -> tuple[list, list[float]]:
    """Train; return the history and each epoch's optimisation time (s), evaluation excluded."""
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()

    def progress(step: int, total: int, log) -> None:
        marks.append(("end" if log is not None else "step", time.perf_counter()))

    history = train(model, data.x_train, data.y_train, cfg, x_test=x_held, y_test=y_held, progress=progress)
    epoch_times, begin, last_step = [], start, start
    for kind, t in marks:
        if kind == "step":
            last_step = t
        else:
            epoch_times.append(last_step - begin)
            begin = t
    return history, epoch_times


def evaluate(model, x, y, eps: float) -> dict[str, Any]:
    start = time.perf_counter()
    result = AutoAttack(eps=eps, norm="linf", steps=100, n_targets=9, queries=5000)(model, x, y)
    return {"robust_accuracy": 1.0 - float(result.success.float().mean()),
            "attack_seconds": time.perf_counter() - start, "attack_load": load()}


def run_recipe(name, head, adv, data, x_eval, y_eval, x_held, y_held, args, train_kwargs, eps) -> dict[str, Any]:
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": head, "num_classes": data.num_classes,
                         "input_shape": list(data.input_shape)})
    cfg = TrainConfig(seed=0, adv=adv, **train_kwargs)
    train_load = load()
    history, epoch_times = timed_train(model, data, cfg, x_held, y_held)
    model.eval()
    clean_all = float((batched_predict(model, data.x_test) == data.y_test).float().mean())
    clean_eval = float((batched_predict(model, x_eval) == y_eval).float().mean())
    row = {
        "recipe": name, "head": head, "training": recipe_label(cfg.to_dict()), "train": cfg.to_dict(),
        "clean_accuracy": clean_all, "clean_accuracy_eval": clean_eval,
        "epoch_seconds": statistics.median(epoch_times), "epoch_times": epoch_times,
        "train_seconds": sum(epoch_times), "train_load": train_load,
        "overfitting_epochs": [h.epoch for h in history if h.extra.get("overfitting")],
        "guard": [{k: round(v, 4) for k, v in h.extra.items()} for h in history],
    }
    row.update(evaluate(model, x_eval, y_eval, eps))
    return row


def step_cost(data, steps: int, batch: int, repeats: int) -> dict[str, Any]:
    """One PGD-k training step (attack + loss + backward) vs k input-gradient passes + 1
    parameter-gradient pass on the same batch; fastest of `repeats`, the two alternated, in the
    process's CPU time (see `method_step_costs`)."""
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": "softmax", "num_classes": data.num_classes,
                         "input_shape": list(data.input_shape)}).train()
    x, y = data.x_train[:batch], data.y_train[:batch]
    cfg = AdvConfig(method="pgd", eps=EPS, steps=steps, guard=0)
    objective = adversarial(make_objective("cross_entropy", model), model, cfg)

    def training_step() -> None:
        model.zero_grad(set_to_none=True)
        objective(model, x, y, 0).loss.backward()

    def floor() -> None:
        for _ in range(steps):
            xr = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    training_step()
    floor()
    a, b = [], []
    for _ in range(repeats):
        for fn, acc in ((training_step, a), (floor, b)):
            t = time.process_time()
            fn()
            acc.append(time.process_time() - t)
    return {"steps": steps, "batch": batch, "step_ms": 1000 * min(a), "floor_ms": 1000 * min(b),
            "ratio": min(a) / min(b), "load": load()}


def _step(objective, model, x, y, epoch: int = 1) -> None:
    """One training step's gradient work (epoch 1: past PCL's CE-only first epoch)."""
    model.zero_grad(set_to_none=True)
    objective(model, x, y, epoch).loss.backward()


def method_step_costs(data, batch: int, repeats: int) -> dict[str, Any]:
    """Per recipe: one training step (objective forward + backward, optimizer excluded) against a
    standard step of the same head on the same batch; fastest of `repeats`, the two alternated.
    Timed in the process's CPU time (one thread), so that other processes on a loaded machine do
    not count (wall-clock ratios at load 20 were noise: standard vs itself 0.87)."""
    out: dict[str, Any] = {"load_start": load()}
    for name, (head, adv) in recipes(EPS).items():
        seed_everything(0)
        model = build_model({"backbone": "lenet", "head": head, "num_classes": data.num_classes,
                             "input_shape": list(data.input_shape)}).train()
        clean = make_objective(model.head.objective, model)
        idx = clean.make_batches(data.y_train, batch, torch.Generator().manual_seed(0))[0]
        x, y = data.x_train[idx], data.y_train[idx]
        wrapped = adversarial(clean, model, AdvConfig(**{**adv, "guard": 0})) if adv else clean
        _step(wrapped, model, x, y)
        _step(clean, model, x, y)
        a, b = [], []
        for _ in range(repeats):
            for objective, acc in ((wrapped, a), (clean, b)):
                t = time.process_time()
                _step(objective, model, x, y)
                acc.append(time.process_time() - t)
        out[name] = {"head": head, "step_ms": 1000 * min(a), "standard_step_ms": 1000 * min(b),
                     "ratio": min(a) / min(b)}
        print(f"{name:16s} {1000 * min(a):8.1f} ms / standard {head} step {1000 * min(b):7.1f} ms = "
              f"{min(a) / min(b):5.2f}", flush=True)
    out["load_end"] = load()
    return out


def save(doc: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def markdown(paths: list[Path]) -> str:
    """The results of one or more runs (same settings) as Markdown tables; a recipe measured in
    several files is taken from the first."""
    fm: dict[str, Any] = {}
    orl: dict[str, Any] = {}
    for path in [p for p in paths if p.is_file()]:
        doc = json.loads(path.read_text())
        for k, v in doc.get("fmnist", {}).items():
            fm.setdefault(k, v)
        for k, v in doc.get("orl", {}).items():
            orl.setdefault(k, v)
    lines = ["| recipe | training | clean (10k) | clean (attacked) | robust (ensemble) | epoch s (wall) "
             "| CO epochs | attack s (wall) | load (train) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in [n for n in recipes(EPS) if n in fm]:
        r = fm[name]
        lines.append(f"| {name} | {r['training']} | {100 * r['clean_accuracy']:.1f}% | "
                     f"{100 * r['clean_accuracy_eval']:.1f}% | {100 * r['robust_accuracy']:.1f}% | "
                     f"{r['epoch_seconds']:.1f} | {r['overfitting_epochs'] or '-'} | "
                     f"{r['attack_seconds']:.0f} | {r['train_load'].split('load average: ')[-1]} |")
    if any(k != "settings" for k in orl):
        lines += ["", "| ORL recipe | clean | robust (ensemble) | epoch s |", "|---|---|---|---|"]
        for name, r in orl.items():
            if name != "settings":
                lines.append(f"| {name} | {100 * r['clean_accuracy']:.1f}% | {100 * r['robust_accuracy']:.1f}% | "
                             f"{r['epoch_seconds']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--only", default=None, help="comma-separated recipe names")
    parser.add_argument("--n-eval-orl", type=int, default=50)
    parser.add_argument("--no-orl", action="store_true")
    parser.add_argument("--no-step-cost", action="store_true")
    parser.add_argument("--orl-recipe", default=None, help="ORL's recipe (default: the best on Fashion-MNIST)")
    parser.add_argument("--peer", type=Path, default=None,
                        help="another run's JSON (same settings, other recipes): joins the choice of ORL's recipe")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (not for reading)")
    parser.add_argument("--out", type=Path, default=HERE / "robust_training.json")
    parser.add_argument("--step-costs", action="store_true", help="only each recipe's step cost vs a standard step")
    parser.add_argument("--table", type=Path, nargs="+", default=None, help="print these runs' tables and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown(args.table))
        return
    if args.step_costs:
        torch.set_num_threads(1)
        data = load_dataset("fashion-mnist", train_per_class=args.train_per_class, seed=0)
        doc = {"floor": step_cost(data, steps=10, batch=128, repeats=7)}
        print("PGD-10 step / floor:", doc["floor"], flush=True)
        save(doc, args.out)
        doc["methods"] = method_step_costs(data, batch=128, repeats=5)
        save(doc, args.out)
        return
    if args.quick:
        args.train_per_class, args.epochs, args.n_eval, args.n_eval_orl = 30, 1, 20, 10
        args.out = Path("/tmp/robust_training_quick.json")
    torch.set_num_threads(1)
    settings = {"train_per_class": args.train_per_class, "epochs": args.epochs, "n_eval": args.n_eval, "eps": EPS,
                "ensemble": "autoattack(steps=100, n_targets=9, queries=5000)"}
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if {k: v for k, v in doc.get("settings", {}).items() if k != "train"} != settings:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
        doc = {"settings": settings, "commit": commit.stdout.strip(), "fmnist": {}, "orl": {}}
    data = load_dataset("fashion-mnist", train_per_class=args.train_per_class, seed=0)
    order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))
    x_eval, y_eval = data.x_test[order[: args.n_eval]], data.y_test[order[: args.n_eval]]
    held = order[-500:]  # per-epoch test accuracy and the overfitting guard: disjoint from x_eval
    x_held, y_held = data.x_test[held], data.y_test[held]
    train_kwargs = {"epochs": args.epochs, "batch_size": 128, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}
    doc["settings"]["train"] = train_kwargs

    if "step_cost" not in doc and not args.no_step_cost:
        doc["step_cost"] = step_cost(data, steps=10, batch=128, repeats=3 if args.quick else 7)
        print("PGD-10 step / floor:", doc["step_cost"], flush=True)
        save(doc, args.out)
    chosen = [c for c in args.only.split(",") if c] if args.only is not None else list(recipes(EPS))
    for name in chosen:
        head, adv = recipes(EPS)[name]
        if name in doc["fmnist"]:
            continue
        row = run_recipe(name, head, adv, data, x_eval, y_eval, x_held, y_held, args, train_kwargs, EPS)
        doc["fmnist"][name] = row
        save(doc, args.out)
        print(f"{name:16s} clean {100 * row['clean_accuracy']:.1f}%  robust {100 * row['robust_accuracy']:.1f}%  "
              f"epoch {row['epoch_seconds']:.1f}s  CO {row['overfitting_epochs']}  [{row['train_load']}]", flush=True)

    if not args.no_orl and (doc["fmnist"] or args.orl_recipe):
        rows = dict(doc["fmnist"])
        if args.peer is not None and args.peer.is_file():
            rows.update(json.loads(args.peer.read_text()).get("fmnist", {}))
        adversarial_rows = {k: v for k, v in rows.items() if v["train"]["adv"]}
        best = args.orl_recipe or max(adversarial_rows or rows, key=lambda k: rows[k]["robust_accuracy"])
        faces = load_dataset("orl", resize=(56, 46), seed=0)
        pick = torch.randperm(len(faces.y_test), generator=torch.Generator().manual_seed(0))[: args.n_eval_orl]
        x_orl, y_orl = faces.x_test[pick], faces.y_test[pick]
        orl_eps = 8 / 255
        orl_kwargs = {"epochs": 5 if args.quick else 30, "batch_size": 32, "optimizer": "adam", "lr": 2e-3,
                      "weight_decay": 0.0}
        head, adv = recipes(orl_eps)[best]
        doc["orl"]["settings"] = {"eps": orl_eps, "resize": [56, 46], "train": orl_kwargs, "best_fmnist": best,
                                  "n_train": len(faces.y_train), "n_eval": len(y_orl)}
        for name, (h, a) in (("standard", recipes(orl_eps)["standard"]), (best, (head, adv))):
            if name in doc["orl"]:
                continue
            row = run_recipe(name, h, a, faces, x_orl, y_orl, faces.x_test, faces.y_test, args, orl_kwargs, orl_eps)
            doc["orl"][name] = row
            save(doc, args.out)
            print(f"ORL {name:12s} clean {100 * row['clean_accuracy']:.1f}%  "
                  f"robust {100 * row['robust_accuracy']:.1f}%", flush=True)
    print(f"results: {args.out}  [{load()}]")


if __name__ == "__main__":
    main()
