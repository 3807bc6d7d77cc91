"""Classification versus metric-learning heads on the same backbone (issue 3).

Trains every head on Fashion-MNIST (LeNet-5, all 60k training images, 8 epochs) and ORL (the
6-conv CNN at 28x23, since 56x46 costs ~10 min per head here; 5 train / 5 test per subject, input
normalized with the training mean/std, 80 epochs: without both, cnn6 stayed near chance) with one
recipe (Adam, lr 1e-3), then measures clean
accuracy, FMR / FNMR (EER threshold on half of the test split, rates on the other half), PGD
robust accuracy at three eps (judged by
`predict`, PGD on each head's `forward`: the k-NN surrogate for k-NN heads), and training time
per step relative to softmax (steady-state steps, interleaved rounds, minimum of 3; an epoch
has the same number of steps for every head, so the ratio is the epoch-time ratio).

    python benchmarks/heads.py [--only fashion-mnist|orl] [--threads 1]

Writes benchmarks/heads.json and the "Heads" section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from pathlib import Path

import torch

from robustlab.attacks import PGD
from robustlab.data import load_dataset
from robustlab.evaluate import identification_metrics
from robustlab.evaluate.runner import run_attack
from robustlab.models import build_model
from robustlab.train import TrainConfig, make_objective, train

HEADS = ["softmax", "arcface", "ring", "triplet", "contrastive", "mct", "pcl"]
HERE = Path(__file__).parent
SETUPS = {
    "fashion-mnist": dict(backbone="lenet", load={}, n_train=None, n_test=2000, n_attack=500, epochs=8,
                          batch=128, eps=(0.05, 0.1, 0.2), normalize={"mean": [0.286], "std": [0.353]}),
    "orl": dict(backbone="cnn6", load={"resize": (28, 23), "train_per_class": 5}, n_train=None, n_test=None,
                n_attack=200, epochs=80, batch=20, eps=(0.01, 0.03, 0.05),
                normalize={"mean": [0.443], "std": [0.182]}),
}


def _config(setup, ds, head):
    cfg = {"backbone": setup["backbone"], "head": head, "num_classes": ds.num_classes,
           "input_shape": list(ds.input_shape)}
    if setup["normalize"]:
        cfg["normalize"] = setup["normalize"]
    return cfg


def _objective_args(head, setup):
    if head == "pcl":
        return {"warmup_epochs": max(1, setup["epochs"] // 4)}
    if head in ("triplet", "contrastive", "mct") and setup["batch"] <= 40:
        return {"images_per_class": 5}
    return {}


def _step_seconds(model, x, y, head, setup, steps=15, warm=3):
    """Seconds per training step in steady state (forward, loss, backward, optimizer step)."""
    model = copy.deepcopy(model).train()
    objective = make_objective(model.head.objective, model, **_objective_args(head, setup))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    extra = objective.extra_optimizer()
    batches = objective.make_batches(y, setup["batch"], torch.Generator().manual_seed(0))
    start = 0.0
    for i, b in enumerate(batches[: warm + steps]):
        if i == warm:
            start = time.perf_counter()
        out = objective(model, x[b], y[b], epoch=10**6)  # past any warm-up: the full loss
        opt.zero_grad()
        if extra is not None:
            extra.zero_grad()
        out.loss.backward()
        opt.step()
        if extra is not None:
            extra.step()
    return (time.perf_counter() - start) / steps


def run_setup(name, setup, log):
    ds = load_dataset(name, **setup["load"])
    if setup["n_train"] or setup["n_test"]:
        ds = ds.subset(n_train=setup["n_train"], n_test=setup["n_test"], seed=0)
    rows, models = {}, {}
    for head in HEADS:
        torch.manual_seed(0)
        model = build_model(_config(setup, ds, head))
        cfg = TrainConfig(epochs=setup["epochs"], batch_size=setup["batch"], optimizer="adam", lr=1e-3,
                          weight_decay=0.0, objective_args=_objective_args(head, setup))
        t0 = time.perf_counter()
        train(model, ds.x_train, ds.y_train, cfg)
        train_s = time.perf_counter() - t0
        model.eval()
        xa, ya = ds.x_test[: setup["n_attack"]], ds.y_test[: setup["n_attack"]]
        robust = {}
        for eps in setup["eps"]:
            r = run_attack(PGD(eps=eps, steps=20, seed=0), model, xa, ya)
            robust[eps] = float((r.prediction == ya).float().mean())
            if eps == setup["eps"][1]:
                x_adv = r.x_adv
        ident = identification_metrics(model, xa, ya, x_adv=x_adv, seed=0)
        full = identification_metrics(model, ds.x_test, ds.y_test, seed=0)
        rows[head] = {"clean_accuracy": full.accuracy, "fmr": full.fmr, "fnmr": full.fnmr,
                      "confidence_clean": ident.confidence_clean, "confidence_adv": ident.confidence_adv,
                      "robust": robust, "train_seconds": train_s}
        if head == "pcl":  # the same trained model, deciding by its linear classifier instead of eq. 6
            with torch.no_grad():
                logits = torch.cat([model.head.logits(model.embed(ds.x_test[i : i + 512]))
                                    for i in range(0, len(ds.x_test), 512)])
            rows[head]["softmax_decision_accuracy"] = float((logits.argmax(1) == ds.y_test).float().mean())
        models[head] = model
        log(f"{name} {head}: {json.dumps(rows[head])}")
    # timing: interleaved rounds over fresh copies, minimum per head
    per_step = {h: float("inf") for h in HEADS}
    for _ in range(3):
        for head in HEADS:
            torch.manual_seed(0)
            fresh = build_model(_config(setup, ds, head))
            per_step[head] = min(per_step[head], _step_seconds(fresh, ds.x_train, ds.y_train, head, setup))
    for head in HEADS:
        rows[head]["step_seconds"] = per_step[head]
        rows[head]["time_ratio"] = per_step[head] / per_step["softmax"]
    log(f"{name} timing: {json.dumps({h: round(rows[h]['time_ratio'], 2) for h in HEADS})}")
    return {"setup": {k: v for k, v in setup.items() if k != "load"} | {"load": str(setup["load"])},
            "n_train": len(ds.y_train), "n_test": len(ds.y_test), "rows": rows}


def markdown(results):
    lines = ["## Heads: classification versus metric learning (issue 3)", "",
             "`PYTHONPATH=src python benchmarks/heads.py` (2 CPU cores, shared machine). One recipe for",
             "every head: Adam lr 1e-3, no weight decay, cosine schedule; PGD Linf, 20 steps, one random",
             "start, on the head's `forward` (the soft k-NN surrogate for k-NN heads), success judged by",
             "`predict`. FMR / FNMR: cosine similarity of embeddings, EER threshold from half of the test",
             "split, rates on the other half. Time = training step time relative to softmax (same number",
             "of steps per epoch for every head; MCT forwards every image twice, clean and noisy).", ""]
    for name, res in results.items():
        s = res["setup"]
        eps = s["eps"]
        title = (f"### {name} ({s['backbone']}; {res['n_train']} train / {res['n_test']} test images, "
                 f"{s['epochs']} epochs, batch {s['batch']}; PGD on the first {s['n_attack']} test images)")
        lines += [title, "",
                  "| head | clean acc | FMR | FNMR | " + " | ".join(f"PGD eps {e}" for e in eps)
                  + " | conf clean | conf adv | time vs softmax |",
                  "|---|---|---|---|" + "---|" * len(eps) + "---|---|---|"]
        for head, r in res["rows"].items():
            robust = {float(k): v for k, v in r["robust"].items()}
            rob = " | ".join(f"{robust[float(e)]:.3f}" for e in eps)
            conf = f"{r['confidence_clean']:.2f} | {r['confidence_adv']:.2f}"
            lines.append(f"| {head} | {r['clean_accuracy']:.3f} | {r['fmr']:.3f} | {r['fnmr']:.3f} | {rob} | "
                         f"{conf} | {r['time_ratio']:.2f}x |")
        pcl = res["rows"].get("pcl", {})
        if "softmax_decision_accuracy" in pcl:
            lines += ["", f"PCL, same trained model: nearest-prototype decision (eq. 6) {pcl['clean_accuracy']:.3f}, "
                      f"its linear classifier {pcl['softmax_decision_accuracy']:.3f}."]
        lines.append("")
    return "\n".join(lines)


def write_readme(section):
    path = HERE / "README.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"<!-- heads:start -->\n{section}\n<!-- heads:end -->"
    if "<!-- heads:start -->" in text:
        text = re.sub(r"<!-- heads:start -->.*<!-- heads:end -->", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=list(SETUPS), default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    out = HERE / "heads.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for name, setup in SETUPS.items():
        if args.only and name != args.only:
            continue
        results[name] = run_setup(name, setup, log)
        out.write_text(json.dumps(results, indent=2))
        write_readme(markdown(results))
    log("done")


if __name__ == "__main__":
    main()
