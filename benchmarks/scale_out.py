"""Scale-out: one evaluation grid in-process against the Ray executor, and DDP step times.

Grid part: LeNet-5 trained once on digits; a grid of `--attacks` x `--eps` evaluation
cells (default 4 iterative attacks x 8 eps = 32 cells) run through `run_grid` with
  - the in-process executor at 1 torch thread (and at 2, the other way to use 2 cores),
  - a local Ray instance with 1 worker, then with 2 workers (1 CPU and 1 thread per task),
    each first "cold" (worker processes start and import torch) and then "warm" (the
    same grid into a fresh run directory on the same Ray instance).
Every run starts from the stored checkpoint (no training inside the timings) and writes
its own run directory; the rows are checked identical to the in-process ones. The per-task
overhead of Ray is (Ray 1 worker warm - in-process 1 thread) / number of tasks.

DDP part: `--ddp-steps` optimizer steps of LeNet-5 on digits resized to 28x28, batch
`--ddp-batch`, in 1 process and under torchrun with 2 gloo processes (rank 0 reports the
mean step time after one warm-up epoch).

    nice -n 10 python benchmarks/scale_out.py [--n-eval 450] [--steps 30] [--out benchmarks/scale_out.json]

`uptime` is recorded beside every timing: on a shared machine the ratios move with the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from robustlab.experiment import ExecutorSpec, ExperimentSpec, run_grid
from robustlab.store.results import ResultStore


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def grid_spec(args: argparse.Namespace) -> ExperimentSpec:
    attacks = [{"name": name, "steps": args.steps} for name in ("pgd", "bim", "mim", "apgd")][: args.attacks]
    eps = [round(0.01 * (i + 1), 3) for i in range(args.eps)]
    return ExperimentSpec.from_dict({
        "name": "scale-out",
        "data": {"name": "digits", "n_eval": args.n_eval},
        "models": [{"id": "lenet", "model": {"backbone": "lenet", "head": "softmax"},
                    "train": {"epochs": 10, "optimizer": "adam", "lr": 0.003}}],
        "attacks": attacks,
        "eps": eps,
    })


def rows_of(run_dir: Path) -> dict:
    with ResultStore(run_dir) as store:
        return {r.key.as_tuple(): ({k: v for k, v in r.metrics.items() if k != "seconds"}, r.per_sample)
                for r in store.rows()}


def timed_grid(spec: ExperimentSpec, seed_dir: Path, work: Path, label: str, executor=None) -> dict:
    """Run the grid into a fresh copy of `seed_dir` (checkpoint only); wall time and checks."""
    run_dir = work / label
    shutil.copytree(seed_dir / "checkpoints", run_dir / "checkpoints")
    before = load()
    start = time.perf_counter()
    outcome = run_grid(spec, run_dir, executor=executor)
    seconds = time.perf_counter() - start
    assert not outcome.failures and outcome.trained == 0, outcome.failures
    print(f"{label:28s} {seconds:7.2f} s  {outcome.computed} cells   [{before}]", flush=True)
    return {"label": label, "seconds": seconds, "cells": outcome.computed, "tasks": outcome.computed + 1,
            "uptime": before, "run_dir": str(run_dir)}


def grid_benchmark(args: argparse.Namespace, work: Path) -> dict:
    import ray

    from robustlab.experiment.executors.ray_executor import RayExecutor

    spec = grid_spec(args)
    seed_dir = work / "seed"
    torch.set_num_threads(1)
    run_grid(dataclasses.replace(spec, attacks=spec.attacks[:1], eps=spec.eps[:1]), seed_dir)  # trains once
    results = [timed_grid(spec, seed_dir, work, "in-process, 1 thread")]
    if not args.skip_threads:
        torch.set_num_threads(2)
        results.append(timed_grid(spec, seed_dir, work, "in-process, 2 threads"))
        torch.set_num_threads(1)
    reference = rows_of(Path(results[0]["run_dir"]))
    ray_spec = dataclasses.replace(spec, executor=ExecutorSpec(name="ray", num_cpus=1))
    for workers in (1, 2):
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - start
        for phase in ("cold", "warm"):
            r = timed_grid(ray_spec, seed_dir, work, f"ray, {workers} worker(s), {phase}", RayExecutor())
            r.update(workers=workers, phase=phase, ray_init_seconds=init)
            r["rows_identical"] = rows_of(Path(r["run_dir"])) == reference
            results.append(r)
        ray.shutdown()
    by = {r["label"]: r for r in results}
    base = by["in-process, 1 thread"]["seconds"]
    n_tasks = by["in-process, 1 thread"]["tasks"]
    summary = {
        "cells": by["in-process, 1 thread"]["cells"],
        "throughput_ray2_warm_vs_inprocess": base / by["ray, 2 worker(s), warm"]["seconds"],
        "throughput_ray2_cold_vs_inprocess": base / by["ray, 2 worker(s), cold"]["seconds"],
        "scaling_ray_2_vs_1_worker_warm": by["ray, 1 worker(s), warm"]["seconds"]
        / by["ray, 2 worker(s), warm"]["seconds"],
        "overhead_ms_per_task_warm": 1000 * (by["ray, 1 worker(s), warm"]["seconds"] - base) / n_tasks,
        "overhead_ms_per_task_cold": 1000 * (by["ray, 1 worker(s), cold"]["seconds"] - base) / n_tasks,
    }
    if "in-process, 2 threads" in by:
        summary["throughput_ray2_warm_vs_inprocess_2_threads"] = (
            by["in-process, 2 threads"]["seconds"] / by["ray, 2 worker(s), warm"]["seconds"])
    return {"runs": results, "summary": summary}


def ddp_worker(steps: int, batch: int) -> None:
    """One DDP (or plain) training run; rank 0 prints its mean step time as JSON."""
    from robustlab.core.runtime import pick_device
    from robustlab.data import load_dataset
    from robustlab.models import build_model
    from robustlab.train import TrainConfig, train
    from robustlab.train import distributed as dist

    dist.init_from_env(pick_device("cpu"))
    torch.set_num_threads(1)
    data = load_dataset("digits", resize=28)
    n = steps * batch
    x, y = data.x_train[:n], data.y_train[:n]
    model = build_model({"backbone": "lenet", "head": "softmax", "num_classes": 10, "input_shape": [1, 28, 28]})
    logs = train(model, x, y, TrainConfig(epochs=3, batch_size=batch, optimizer="sgd", lr=0.01))
    per_step = [log.seconds / steps for log in logs[1:]]  # epoch 1 is the warm-up
    if dist.is_main():
        print(json.dumps({"step_seconds": min(per_step), "per_epoch": per_step,
                          "world": int(os.environ.get("WORLD_SIZE", "1"))}), flush=True)
    dist.finish()


def ddp_benchmark(args: argparse.Namespace) -> dict:
    me = [__file__, "--ddp-worker", "--ddp-steps", str(args.ddp_steps), "--ddp-batch", str(args.ddp_batch)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    launch = {1: [sys.executable, *me], 2: [*torchrun, *me]}
    out = {}
    for world, cmd in launch.items():
        before = load()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        res = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
        res["uptime"] = before
        out[f"{world} process(es)"] = res
        print(f"DDP {world} process(es): {1000 * res['step_seconds']:.1f} ms/step   [{before}]", flush=True)
    one, two = out["1 process(es)"]["step_seconds"], out["2 process(es)"]["step_seconds"]
    out["speedup_2_vs_1"] = one / two
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-eval", type=int, default=450)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--attacks", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--eps", type=int, default=8)
    parser.add_argument("--ddp-steps", type=int, default=10)
    parser.add_argument("--ddp-batch", type=int, default=128)
    parser.add_argument("--part", choices=("grid", "ddp", "all"), default="all")
    parser.add_argument("--skip-threads", action="store_true", help="Leave out the in-process 2-thread run.")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("scale_out.json"))
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        ddp_worker(args.ddp_steps, args.ddp_batch)
        return
    result: dict = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__},
                    "args": vars(args) | {"out": str(args.out)}}
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        if args.part in ("grid", "all"):
            result["grid"] = grid_benchmark(args, Path(tmp))
            print(json.dumps(result["grid"]["summary"], indent=2), flush=True)
        if args.part in ("ddp", "all"):
            result["ddp"] = ddp_benchmark(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
