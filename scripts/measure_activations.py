#!/usr/bin/env python3
"""Measure the activation demo (conf/experiment/activations.yaml) over seeds.

Trains ``experiment=activations`` once per activation and seed (seeds 1..N), each run in a
subprocess of this Python (``sys.executable -m dllab.train``, one torch thread), reads each
run's ``metrics.json`` and TensorBoard ``val/acc`` curve, and prints a markdown table: test
accuracy (mean ± std over seeds, min, max), the epoch of the best validation accuracy (the
checkpoint that was tested) and the epochs until validation accuracy first reached
``--threshold``.

    scripts/measure_activations.py                         # 5 seeds, 2 runs at a time
    scripts/measure_activations.py --seeds 10 --jobs 2 trainer.max_epochs=10

Extra arguments are overrides passed on to every run. Runs go to a temporary folder that is
removed afterwards, unless ``--log-dir`` names one to keep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ACTIVATIONS = ("relu", "tanh", "sigmoid")
CHEAP = ("plots=none", "+callbacks.progress_bar.enabled=false", "threads=1")


def val_acc_curve(run_dir: Path) -> list[float]:
    """val/acc per epoch (first epoch first) from the run's TensorBoard events."""
    from dllab.sweeps.summary import read_curves

    curve = read_curves(run_dir, ["val/acc"]).get("val/acc")
    return [] if curve is None else [float(v) for v in curve[1]]


def train(activation: str, seed: int, log_dir: Path, overrides: list[str]) -> dict:
    """One run of the demo; its metrics.json plus its val/acc curve."""
    run_dir = log_dir / f"{activation}_seed{seed}"
    command = [
        sys.executable, "-m", "dllab.train", "experiment=activations", f"model.activation={activation}",
        f"seed={seed}", f"paths.log_dir={log_dir}", f"hydra.run.dir={run_dir}", *CHEAP, *overrides,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    metrics_file = run_dir / "metrics.json"
    if result.returncode != 0 or not metrics_file.is_file():
        raise RuntimeError(
            f"{activation} seed {seed} failed (exit {result.returncode}):\n{' '.join(command)}\n{result.stderr[-2000:]}"
        )
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("status") != "completed":
        raise RuntimeError(f"{activation} seed {seed}: status {metrics.get('status')}: {metrics.get('error')}")
    metrics["val_acc_curve"] = val_acc_curve(run_dir)
    return metrics


def first_epoch(curve: list[float], predicate: Callable[[float], bool]) -> int | None:
    """The first epoch (1-based) whose value satisfies predicate, else None."""
    return next((epoch for epoch, value in enumerate(curve, 1) if predicate(value)), None)


def table(results: dict[str, list[dict]], threshold: float) -> str:
    reach = f"epochs to val acc ≥ {threshold:g}"
    lines = [
        f"| activation | test acc (mean ± std) | min | max | tested epoch (mean) | {reach} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for activation, runs in results.items():
        accs = [run["test"]["test/acc"] for run in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        curves = [run["val_acc_curve"] for run in runs if run["val_acc_curve"]]
        best = [run["best_epoch"] for run in runs if run.get("best_epoch")]  # the tested checkpoint's epoch
        best_cell = f"{statistics.mean(best):.1f}" if best else "n/a"
        reached = [e for e in (first_epoch(c, lambda v: v >= threshold) for c in curves) if e is not None]
        if not curves:
            reach_cell = "n/a"
        elif reached:
            reach_cell = f"{statistics.mean(reached):.1f} ({len(reached)} of {len(curves)} runs)"
        else:
            reach_cell = f"never (0 of {len(curves)} runs)"
        lines.append(
            f"| {activation} | {statistics.mean(accs):.3f} ± {std:.3f} | {min(accs):.3f} | {max(accs):.3f} "
            f"| {best_cell} | {reach_cell} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..SEEDS per activation (default 5)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each (default 2)")
    parser.add_argument("--activations", default=",".join(ACTIVATIONS), help="comma-separated (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.95, help="val acc for the epochs-to column (0.95)")
    parser.add_argument("--log-dir", type=Path, help="keep the runs here (default: a temporary folder, removed)")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, e.g. trainer.max_epochs=10")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be at least 1")
    activations = [a.strip() for a in args.activations.split(",") if a.strip()]
    seeds = range(1, args.seeds + 1)

    with tempfile.TemporaryDirectory(prefix="measure_activations_") as tmp:
        log_dir = (args.log_dir or Path(tmp)).resolve()
        jobs = [(a, s) for a in activations for s in seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(lambda job: train(job[0], job[1], log_dir, args.overrides), jobs))
    results: dict[str, list[dict]] = {a: [] for a in activations}
    for (activation, _), run in zip(jobs, runs, strict=True):
        results[activation].append(run)

    setting = " ".join(["experiment=activations", *args.overrides])
    print(f"Measured {date.today().isoformat()}: `{setting}`, seeds 1 to {args.seeds} per activation.\n")
    print(table(results, args.threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
