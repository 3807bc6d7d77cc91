"""AutoAttack `standard`: robustlab's against the reference's members on every Fashion-MNIST head
and two adversarially trained models (issue 22).

For each model (LeNet-5 trained on a stratified Fashion-MNIST subset: heads softmax, arcface,
triplet (k-NN), pcl, mct, softmax adversarially trained with pgd and with trades at Linf
``--adv-eps``, and mct and pcl with their other decisions: k-NN, nearest prototype):
robustlab's ``AutoAttack(version="standard")`` and the reference's members
(torchattacks 3.5.1's port run at the reference's settings, `tests/attack_models.reference_autoattack`,
the same stand-in as `attack_speed.py --suite standard`) on the same ``--n`` test images (a seeded
permutation of the test split), one after the other: clean accuracy, robust accuracy of each,
per-sample agreement, time of each and their ratio. Every decision is the model's `predict`; the
reference attacks the model's `forward` scores (on the triplet head, k-NN decision, its soft k-NN
surrogate; arcface, mct and pcl decide by their linear logits by default) and succeeds only where
`predict` on its x_adv is wrong.

    python benchmarks/standard_vs_reference.py [--n 100] [--per-class 300] [--epochs 15]
        [--adv-epochs 10] [--eps 0.1] [--adv-eps 0.1] [--threads 1] [--out FILE.json] [--only HEAD ...] [--print]

Writes the JSON (after every model, so a partial run keeps its rows) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from robustlab.attacks import AutoAttack
from robustlab.core import seed_everything
from robustlab.core.files import publish
from robustlab.core.stats import wilson
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_speed import _first, _reference, run_once  # noqa: E402 - the one copy of each helper

#: (label, head, head_args, adversarial training method or None)
MODELS = [("softmax", "softmax", {}, None), ("arcface", "arcface", {}, None), ("triplet", "triplet", {}, None),
          ("pcl", "pcl", {}, None), ("mct", "mct", {}, None), ("softmax+pgd", "softmax", {}, "pgd"),
          ("softmax+trades", "softmax", {}, "trades"), ("mct-knn", "mct", {"decision": "knn"}, None),
          ("pcl-prototype", "pcl", {"decision": "prototype"}, None)]


def trained(head: str, head_args: dict, adv: str | None, data, args) -> tuple[torch.nn.Module, float]:
    """LeNet-5 with `head` (and its `head_args`), trained (adversarially with `adv` at Linf
    args.adv_eps) on `data`; returns the model in eval mode and the training seconds."""
    seed_everything(0)
    model = build_model({"backbone": "lenet", "head": head, "num_classes": data.num_classes,
                         "input_shape": list(data.input_shape), "head_args": head_args})
    cfg = TrainConfig(epochs=args.adv_epochs if adv else args.epochs, optimizer="adam", lr=1e-3, weight_decay=0.0,
                      batch_size=128, objective_args={"warmup_epochs": 1} if head == "pcl" else {},
                      adv={"method": adv, "eps": args.adv_eps, "guard": 0} if adv else None)
    start = time.perf_counter()
    train(model, data.x_train, data.y_train, cfg)
    return model.eval(), time.perf_counter() - start


def compare(model, x, y, eps: float) -> dict:
    """robustlab's standard and the reference's members on (x, y): accuracies, agreement, times."""
    reference_autoattack, _ = _reference()
    ours, t_ours = run_once(lambda: AutoAttack(eps, version="standard")(model, x, y), x.device)
    ref, t_ref = run_once(lambda: reference_autoattack(model, "standard", "linf", eps)(x, y), x.device)
    with torch.no_grad():
        clean_ok = model.predict(x) == y
        ours_ok, ref_ok = model.predict(ours.x_adv) == y, model.predict(ref) == y
    return {"n": len(y), "clean": float(clean_ok.float().mean()), "robust_robustlab": float(ours_ok.float().mean()),
            "robust_reference": float(ref_ok.float().mean()), "agreement": float((ours_ok == ref_ok).float().mean()),
            "only_robustlab_fooled": int((~ours_ok & ref_ok).sum()),
            "only_reference_fooled": int((ours_ok & ~ref_ok).sum()),
            "seconds_robustlab": t_ours, "seconds_reference": t_ref, "time_ratio": t_ours / t_ref}


def _rate(rate: float, n: int) -> str:
    """`rate` of `n` samples with its Wilson 95% interval."""
    low, high = wilson(round(rate * n), n)
    return f"{rate:.2f} [{low:.2f}, {high:.2f}]"


def table(rows: dict) -> str:
    """The Markdown table of `rows` (label -> `compare`'s dict plus train_seconds)."""
    lines = ["| model | train s | clean | robust: robustlab | robust: reference | agreement | "
             "only ours / only ref fooled | robustlab s | reference s | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        cells = [label, f"{r['train_seconds']:.0f}", _rate(r["clean"], r["n"]), _rate(r["robust_robustlab"], r["n"]),
                 _rate(r["robust_reference"], r["n"]), f"{r['agreement']:.3f}",
                 f"{r['only_robustlab_fooled']} / {r['only_reference_fooled']}", f"{r['seconds_robustlab']:.1f}",
                 f"{r['seconds_reference']:.1f}", f"{r['time_ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="test images per model")
    parser.add_argument("--per-class", type=int, default=300, help="training images per class")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--adv-epochs", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.1, help="Linf budget of the attacks")
    parser.add_argument("--adv-eps", type=float, default=0.1, help="Linf budget of adversarial training")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", choices=[m[0] for m in MODELS], default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "standard_vs_reference.json")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.print_only:
        print(table(json.loads(args.out.read_text())["rows"]))
        return
    if args.n < 1 or args.per_class < 1 or args.epochs < 1 or args.adv_epochs < 1:
        parser.error("--n, --per-class, --epochs and --adv-epochs must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", download=False)
    data = data.subset(n_train=args.per_class * data.num_classes, n_test=2000, seed=0)
    x, y = _first(data, args.n, torch.device("cpu"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result: dict = {"commit": commit, "load_before": os.getloadavg(), "torch_threads": torch.get_num_threads(),
                    "scale": {"n": len(y), "train_images": len(data.y_train), "epochs": args.epochs,
                              "adv_epochs": args.adv_epochs, "eps": args.eps, "adv_eps": args.adv_eps},
                    "rows": {}}
    print(f"load {result['load_before']}; commit {commit}; {json.dumps(result['scale'])}", flush=True)
    for label, head, head_args, adv in MODELS:
        if args.only and label not in args.only:
            continue
        model, train_s = trained(head, head_args, adv, data, args)
        result["rows"][label] = {"train_seconds": train_s, **compare(model, x, y, args.eps)}
        result["load_after"] = os.getloadavg()
        publish({args.out: json.dumps(result, indent=1).encode()})
        print(f"{label}: {json.dumps(result['rows'][label])}", flush=True)
    print(f"load after {result['load_after']}")
    print(table(result["rows"]))


if __name__ == "__main__":
    main()
