"""Paper 002 (Amos 2023), section 4.6 / Tables 5.9-5.13: defenses under its non-adaptive setting and
under robustlab's adaptive evaluation, side by side.

For each setup (a data set x a head: softmax or triplet k-NN, LeNet-5 backbone):

1. train the undefended model W;
2. build every defense of W through `robustlab.defenses.build_defense`: defensive distillation
   (T = 100, warm-started from W with its logits times T, ``init="base"``), feature squeezing as
   a transform (paper 002's Algorithm 2 as printed, ``hsv:1``, and Algorithm 3, ``mean:3``),
   Xu et al.'s squeezing detector (bits:4 + median:2, FPR 5%), MagNet (autoencoder
   [3, pool, 3], recon:1 + jsd:10 detectors, FPR 5%, reformer), M-SVDD (paper 001), and
   adversarial training when `TrainConfig(adv=...)` exists on this checkout (issue 8);
   distillation and M-SVDD refuse the triplet head, which is reported with their reason;
3. (a) non-adaptive, paper 002's way: FGSM, R-FGSM, BIM, PGD (no random start), R-PGD (random
   start) at each eps and C&W-L2 (minimum norm, once) are crafted on the *undefended* W, run for
   all their iterations (no early stop, as the libraries the paper used), and shown to each
   defended model: S / F / D, robust accuracy (worst case over the five eps-bounded ones; C&W,
   unbounded, is reported apart), the detectors' ROC-AUC
   (clean test images vs the transferred PGD images) and the confidence on the adversarial
   images (mean top softmax probability of the defended decision, Tables 5.9-5.13);
   (b) adaptive: robustlab's ensemble (APGD-CE, APGD-T with DLR, Square) plus PGD on the logit
   margin, white-box on each *defended* model: BPDA through squeezing, whole-pipeline losses
   (the reject column on the defender's side), EOT for randomized models; worst case per sample.

Clean accuracy and the false-positive rate (clean test images rejected) are on the same test
images. Results: benchmarks/paper002_results.json (written after every setup).

    PYTHONPATH=src python benchmarks/paper002.py [--quick] [--setups fmnist-softmax,...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from robustlab.attacks import make_attack
from robustlab.attacks.criteria import TopKExcluded
from robustlab.core.contract import REJECT, batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import seed_everything
from robustlab.data import load_dataset
from robustlab.defenses import build_defense
from robustlab.defenses.base import DetectorModel, defense_label
from robustlab.evaluate.metrics import per_sample_outcomes, worst_case
from robustlab.evaluate.runner import run_attack
from robustlab.evaluate.transfer import outcome_on
from robustlab.models import build_model
from robustlab.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
OUT = HERE / "paper002_results.json"

DATA = {
    "fmnist": dict(name="fashion-mnist", load={}, n_train=6000, n_test=1000, n_eval=100, epochs=4, batch=128,
                   ae_epochs=30, eps=(0.03, 0.1)),
    "orl": dict(name="orl", load={"resize": (56, 46)}, n_train=None, n_test=None, n_eval=80, epochs=40, batch=32,
                ae_epochs=300, eps=(0.03, 0.1)),
}
SETUPS = {f"{d}-{h}": (d, h) for d in DATA for h in ("softmax", "triplet")}


def defenses_for(head: str, setup: dict, quick: bool) -> dict[str, tuple[str, dict]]:
    """Row name -> (defense, params), at the benchmark's reduced scale."""
    ae_epochs = setup["ae_epochs"] // (5 if quick else 1)
    rows = {
        "distillation T=100": ("distillation", {"temperature": 100, "init": "base", "epochs": setup["epochs"],
                                                "lr": 1e-3, "batch_size": setup["batch"]}),
        "squeeze hsv:1 (Alg. 2)": ("squeeze", {"squeezers": ["hsv:1"]}),
        "squeeze mean:3 (Alg. 3)": ("squeeze", {"squeezers": ["mean:3"]}),
        "squeeze detector": ("squeeze-detector", {"squeezers": ["bits:4", "median:2"], "fpr": 0.05}),
        "magnet": ("magnet", {"structure": [3, "pool", 3], "epochs": ae_epochs, "fpr": 0.05}),
        "m-svdd": ("msvdd", {"projections": 32, "positive_epochs": 10, "svdd_epochs": 10, "finetune_epochs": 1}),
    }
    return rows


def train_base(ds, head: str, setup: dict, adv: dict | None = None):
    cfg = {"backbone": "lenet", "head": head, "num_classes": ds.num_classes, "input_shape": list(ds.input_shape)}
    seed_everything(0)
    model = build_model(cfg)
    kwargs = {"adv": adv} if adv else {}
    tc = TrainConfig(epochs=setup["epochs"], batch_size=setup["batch"], optimizer="adam", lr=2e-3,
                     weight_decay=0.0, seed=0, **kwargs)
    train(model, ds.x_train, ds.y_train, tc)
    return model.eval()


def transfer_set(base, x, y, eps_grid, quick: bool) -> dict[str, torch.Tensor]:
    """Paper 002's six attacks on the undefended model, all iterations (no early stop)."""
    never = TopKExcluded(base.num_classes)  # never satisfied: every step is taken
    steps = 10 if quick else 20
    attacks = {}
    for eps in eps_grid:
        attacks[f"fgsm@{eps}"] = make_attack("fgsm", eps=eps)
        attacks[f"rfgsm@{eps}"] = make_attack("rfgsm", eps=eps, criterion=never)
        attacks[f"bim@{eps}"] = make_attack("bim", eps=eps, steps=steps // 4, criterion=never)
        attacks[f"pgd@{eps}"] = make_attack("pgd", eps=eps, steps=steps, random_start=False, criterion=never)
        attacks[f"rpgd@{eps}"] = make_attack("pgd", eps=eps, steps=steps, random_start=True, criterion=never)
    attacks["cw"] = make_attack("cw", initial_const=10.0, search_steps=2, steps=30 if quick else 100, lr=0.01)
    return {name: run_attack(a, base, x, y).x_adv for name, a in attacks.items()}


def adaptive_cells(model, x, y, eps: float, quick: bool) -> dict:
    """Worst case over robustlab's ensemble and PGD on the logit margin, white-box on `model`."""
    steps = 10 if quick else 20
    attacks = {
        "autoattack": make_attack("autoattack", eps=eps, steps=steps, n_targets=3, queries=100 if quick else 200),
        "pgd-margin": make_attack("pgd", eps=eps, steps=steps, loss="margin"),
    }
    clean = batched_predict(model, x)
    cells, conf = [], []
    for a in attacks.values():
        r = run_attack(a, model, x, y)
        cells.append(per_sample_outcomes(x, y, clean, r))
        conf.append(confidence(model, r.x_adv))
    out = worst_case(cells)
    out["members"] = {name: float((torch.tensor(c["adv_pred"]) == y).float().mean()) for name, c in
                      zip(attacks, cells, strict=True)}
    out["confidence_adv"] = min(conf)
    return out


@torch.no_grad()
def confidence(model, x) -> float:
    """Mean top softmax probability over the real classes of the model's scores."""
    scores = torch.cat([model(x[i : i + 256])[:, : model.num_classes] for i in range(0, len(x), 256)])
    return float(scores.softmax(dim=1).max(dim=1).values.mean())


def detection_auc(model, x_clean, x_adv) -> float | None:
    if not isinstance(model, DetectorModel):
        return None
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        s = torch.cat([model.detection_score(x_clean), model.detection_score(x_adv)]).numpy()
    labels = [0] * len(x_clean) + [1] * len(x_adv)
    return float(roc_auc_score(labels, s))


def evaluate_defended(name, model, x, y, transfers, eps_grid, quick, log) -> dict:
    t0 = time.perf_counter()
    pred = batched_predict(model, x)
    row: dict = {"defense": defense_label(model.defense_spec()) if hasattr(model, "defense_spec") else name,
                 "clean_accuracy": float((pred == y).float().mean()),
                 "fpr": float((pred == REJECT).float().mean()), "confidence_clean": confidence(model, x)}
    clean = pred
    keys = ("success_rate", "failed_rate", "detected_rate", "robust_accuracy")
    cw = outcome_on(model, x, y, transfers["cw"], clean_pred=clean)
    row["transfer_cw"] = {m: cw[m] for m in keys}  # minimum-norm: not in the eps worst case
    for eps in eps_grid:
        names = [n for n in transfers if n.endswith(f"@{eps}")]
        per = {n.split("@")[0]: outcome_on(model, x, y, transfers[n], clean_pred=clean) for n in names}
        robust = clean == y
        for n in names:
            robust &= per[n.split("@")[0]]["adv_pred"] == y
        row[f"transfer@{eps}"] = {
            "robust_accuracy": float(robust.float().mean()),
            "per_attack": {k: {m: v[m] for m in keys} for k, v in per.items()},
            "confidence_adv": confidence(model, transfers[f"pgd@{eps}"]),
            "detection_auc": detection_auc(model, x, transfers[f"pgd@{eps}"]),
        }
        row[f"adaptive@{eps}"] = adaptive_cells(model, x, y, eps, quick)
    row["seconds"] = time.perf_counter() - t0
    log(f"  {name}: clean {row['clean_accuracy']:.3f} fpr {row['fpr']:.3f} | " + " | ".join(
        f"eps {e}: transfer {row[f'transfer@{e}']['robust_accuracy']:.3f} adaptive "
        f"{row[f'adaptive@{e}']['robust_accuracy']:.3f}" for e in eps_grid) + f" ({row['seconds']:.0f} s)")
    return row


def run_setup(key: str, quick: bool, log, rows: set[str] | None = None) -> dict:
    data_key, head = SETUPS[key]
    setup = dict(DATA[data_key])
    if quick:
        setup.update(n_train=1500 if setup["n_train"] else None, n_eval=40, epochs=max(2, setup["epochs"] // 4))
    seed_everything(0)
    ds = load_dataset(setup["name"], seed=0, **setup["load"])
    if setup["n_train"]:
        ds = ds.subset(n_train=setup["n_train"], n_test=setup["n_test"], seed=0)
    sub = ds.subset(n_test=setup["n_eval"], seed=1) if setup["n_eval"] < len(ds.y_test) else ds
    x, y = sub.x_test, sub.y_test
    t0 = time.perf_counter()
    base = train_base(ds, head, setup)
    log(f"{key}: {len(ds.y_train)} train, {len(y)} eval images of {ds.input_shape}; W trained in "
        f"{time.perf_counter() - t0:.0f} s")
    eps_grid = list(setup["eps"])
    t0 = time.perf_counter()
    transfers = transfer_set(base, x, y, eps_grid, quick)
    log(f"  transferred attacks crafted in {time.perf_counter() - t0:.0f} s")
    result = {"setup": {k: v for k, v in setup.items() if k != "load"} | {"load": str(setup["load"]), "head": head,
                                                                        "n_train_used": len(ds.y_train)},
              "rows": {}, "refused": {}}
    result["rows"]["none"] = evaluate_defended("none", base, x, y, transfers, eps_grid, quick, log)
    for row_name, (defense, params) in defenses_for(head, setup, quick).items():
        if rows is not None and row_name not in rows:
            continue
        t0 = time.perf_counter()
        try:
            built = build_defense(defense, base, ds, **params)
        except ConfigError as exc:
            result["refused"][row_name] = str(exc)
            log(f"  {row_name}: refused ({str(exc)[:90]}...)")
            continue
        build_s = time.perf_counter() - t0
        row = evaluate_defended(row_name, built.model, x, y, transfers, eps_grid, quick, log)
        row["build_seconds"] = build_s
        result["rows"][row_name] = row
    if rows is not None and "adversarial training" not in rows:
        pass
    elif "adv" in TrainConfig.__dataclass_fields__:
        t0 = time.perf_counter()
        adv_model = train_base(ds, head, setup, adv={"method": "fgsm-mix", "eps": max(eps_grid)})
        row = evaluate_defended("adversarial training", adv_model, x, y, transfers, eps_grid, quick, log)
        row["build_seconds"] = time.perf_counter() - t0
        result["rows"]["adversarial training (fgsm-mix)"] = row
    else:
        result["refused"]["adversarial training"] = "TrainConfig has no adv= on this checkout (issue 8 not landed)"
    return result


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}"


def tables(results: dict) -> str:
    """Markdown tables from a results file: one per setup, one row per defense."""
    lines = []
    for key, res in results["setups"].items():
        eps_grid = res["setup"]["eps"]
        lines += [f"**{key}** ({res['setup']['n_train_used']} training images, {res['setup']['n_eval']} attacked, "
                  f"{res['seconds']:.0f} s)", ""]
        head = "| defense | clean | FPR |"
        rule = "|---|---:|---:|"
        for e in eps_grid:
            head += f" transfer {e} | S/F/D transfer PGD {e} | AUC {e} | conf {e} | adaptive {e} | S/F/D adaptive {e} |"
            rule += "---:|---:|---:|---:|---:|---:|"
        lines += [head + " C&W transfer S/F/D |", rule + "---:|"]
        for name, row in res["rows"].items():
            line = f"| {name} | {_pct(row['clean_accuracy'])} | {_pct(row['fpr'])} |"
            for e in eps_grid:
                t, a = row[f"transfer@{e}"], row[f"adaptive@{e}"]
                p = t["per_attack"]["pgd"]
                sfd = f"{_pct(p['success_rate'])}/{_pct(p['failed_rate'])}/{_pct(p['detected_rate'])}"
                asfd = f"{_pct(a['success_rate'])}/{_pct(1 - a['success_rate'] - a['detection_rate'])}/" \
                       f"{_pct(a['detection_rate'])}"
                line += (f" {_pct(t['robust_accuracy'])} | {sfd} | {_pct(t['detection_auc'])} | "
                         f"{_pct(t['confidence_adv'])} | **{_pct(a['robust_accuracy'])}** | {asfd} |")
            c = row["transfer_cw"]
            line += f" {_pct(c['success_rate'])}/{_pct(c['failed_rate'])}/{_pct(c['detected_rate'])} |"
            lines.append(line)
        for name, why in res.get("refused", {}).items():
            lines.append(f"| {name} | refused: {why.split(';')[0][:110]} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny scale, to check the script runs")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, from {list(SETUPS)}")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--table", action="store_true", help="print Markdown tables from --out and exit")
    parser.add_argument("--rows", default=None, help="only these defense rows (comma-separated; 'none' always runs)")
    args = parser.parse_args()
    if args.table:  # --out may name several result files, comma-separated
        print("\n".join(tables(json.loads(Path(f).read_text())) for f in args.out.split(",") if Path(f).exists()))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results = {"uptime_start": os.popen("uptime").read().strip(), "threads": torch.get_num_threads(),
               "quick": args.quick, "setups": {}}

    def log(msg: str) -> None:
        print(msg, flush=True)

    t_all = time.perf_counter()
    for key in args.setups.split(","):
        t0 = time.perf_counter()
        rows = set(args.rows.split(",")) if args.rows else None
        results["setups"][key] = run_setup(key, args.quick, log, rows)
        results["setups"][key]["seconds"] = time.perf_counter() - t0
        results["uptime_end"] = os.popen("uptime").read().strip()
        results["seconds"] = time.perf_counter() - t_all
        Path(args.out).write_text(json.dumps(results, indent=1))
        log(f"{key} done in {time.perf_counter() - t0:.0f} s; uptime: {results['uptime_end']}")


if __name__ == "__main__":
    main()
