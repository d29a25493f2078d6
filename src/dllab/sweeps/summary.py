"""The leaderboard of a sweep: ``summary.csv``, ``summary.md`` and ``summary.png`` in the
sweep dir, one row per job, best first; and ``summary_curves.png``, the validation curves of
every job overlaid, coloured by the swept value (read from the jobs' TensorBoard events).

Written at the end of every multirun (:class:`SweepSummaryCallback`, a Hydra callback
in ``conf/hydra/default.yaml``) and by ``dllab-summary <sweep dir>`` for any sweep dir,
also one that is still running or was interrupted. Every job of the sweep is listed, as
Hydra's ``multirun.yaml`` plans them: a job without a dir is ``not started``, one without
``metrics.json`` ``unfinished`` (still running, or killed), one whose ``metrics.json`` or
``.hydra/overrides.yaml`` cannot be read ``broken`` (the reason names the file); a bad job
never stops the summary of the others.

``dllab-summary`` exits with 2 (one line on stderr) when there is nothing to summarise (no
such dir, no job in it) and when every job that ran is broken (the summary that lists them is
written all the same); else with 0, also when some jobs failed, are broken or never started.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dllab import compat
from dllab.catalog import metric_mode
from dllab.checkpoints import error_line
from dllab.overrides import SWEPT_KEYS_ENV, run_label, shown_overrides, split_override
from dllab.results import COMPLETED, PRUNED
from dllab.sweeps.compose import compose_as_hydra, compose_once
from dllab.sweeps.jobs import swept_keys
from dllab.sweeps.settings import refuse_bad_sweep
from dllab.sweeps.sweep_dir import claim, release

SWEEP_DIR_ENV = "DLLAB_SWEEP_DIR"
UNFINISHED = "unfinished"
NOT_STARTED = "not started"
BROKEN = "broken"
# A pruned job was stopped on purpose by the search: not a failure.
OK_STATUSES = (COMPLETED, PRUNED)
FIXED_COLUMNS = (
    "job",
    "status",
    "metric",
    "objective",
    "epochs",
    "global_step",
    "best_epoch",
    "wall_seconds",
    "overrides",
)
CURVES_PNG = "summary_curves.png"


@dataclass
class SweepResult:
    """What the last multirun of this process ended with (read by ``dllab-train``'s exit code)."""

    jobs: int = 0
    failed: int = 0  # not started jobs are not failed ones
    not_started: int = 0
    note: str = ""  # why the sweep's planned jobs are unknown, when they are
    by_status: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # best first, as collect() returns them
    not_written: dict[str, str] = field(default_factory=dict)  # file name -> why (a read-only or full place)


LAST_SWEEP = SweepResult()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs of a sweep (each has Hydra's ``.hydra/``), by job number."""
    found = [p.parent for p in sweep_dir.glob("*/.hydra") if p.parent.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


@dataclass
class SweepPlan:
    """The jobs a sweep was started with: job number -> its overrides (empty where the sweeper
    chooses them as it goes); ``note`` says why they are unknown when they are."""

    jobs: dict[int, list[str]] = field(default_factory=dict)
    note: str = ""


def planned_jobs(sweep_dir: Path) -> SweepPlan:
    """Every job of the sweep, from the ``multirun.yaml`` Hydra writes when it starts one (job
    number = position in the sweep, as Hydra numbers job dirs): a grid of Hydra's BasicSweeper
    expanded by Hydra's own parser and sweeper; a sweeper with ``n_trials`` (Optuna) has jobs
    0 .. n_trials - 1, their overrides chosen as it goes. Other sweepers: unknown."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return SweepPlan(note=f"{path.name}: not found")
    try:
        hydra_cfg = (yaml.safe_load(path.read_text()) or {})["hydra"]
        sweeper, task = hydra_cfg.get("sweeper") or {}, list(hydra_cfg["overrides"]["task"] or [])
        if "n_trials" in sweeper:
            return SweepPlan({n: [] for n in range(int(sweeper["n_trials"]))})
        target = str(sweeper.get("_target_", ""))
        if not target.endswith(".BasicSweeper"):
            return SweepPlan(note=f"hydra.sweeper={target}: its jobs are not known in advance")
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]  # before the task's, as Hydra does
        grid = compat.basic_sweeper_grid([*params, *(str(o) for o in task)])
    except Exception as err:  # not YAML, not Hydra's layout, or a sweep that needs the config (glob)
        return SweepPlan(note=f"{path.name}: cannot tell the sweep's jobs ({error_line(err)})")
    return SweepPlan(dict(enumerate(grid)))


def read_overrides(job_dir: Path) -> list[str] | None:
    """The job's overrides from ``.hydra/overrides.yaml`` (None when there is none); ValueError
    naming the file when it is not a YAML list of overrides."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return None
    name = f"{job_dir.name}/.hydra/overrides.yaml"
    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{name}: not readable YAML ({error_line(err, 80)})") from err
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(f"{name}: not a list of overrides (key=value)")
    return overrides


def read_metrics(job_dir: Path) -> dict[str, Any]:
    """The job's ``metrics.json``, checked to hold what the summary reads from it; ValueError
    naming the file otherwise."""
    name = f"{job_dir.name}/metrics.json"
    try:
        metrics = json.loads((job_dir / "metrics.json").read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{name}: not readable JSON ({error_line(err, 80)})") from err
    if not isinstance(metrics, dict):
        raise ValueError(f"{name}: holds a JSON {type(metrics).__name__}, not an object")
    objective = metrics.get("objective")
    if objective is not None and (isinstance(objective, bool) or not isinstance(objective, int | float)):
        raise ValueError(f"{name}: objective={objective!r} is not a number (or null)")
    for key in ("status", "optimized_metric"):
        if metrics.get(key) is not None and not isinstance(metrics[key], str):
            raise ValueError(f"{name}: {key}={metrics[key]!r} is not a string")
    if not isinstance(metrics.get("test") or {}, dict):
        raise ValueError(f"{name}: test={metrics['test']!r} is not an object of metrics")
    return metrics


def read_job(job_dir: Path, planned: list[str] | None = None) -> dict[str, Any]:
    """One row: the job's overrides and what its metrics.json says; ``broken`` with the reason
    when either file cannot be read (``planned``: the overrides the sweep gave the job, shown then)."""
    row: dict[str, Any] = {"job": int(job_dir.name), "run_dir": str(job_dir)}
    problems = []
    try:
        overrides = read_overrides(job_dir)
    except ValueError as err:
        problems.append(str(err))
        overrides = None
    shown = shown_overrides(overrides if overrides is not None else planned or [])
    row |= {"overrides": " ".join(shown), "params": dict(split_override(o) for o in shown)}
    if not (job_dir / "metrics.json").exists():
        row |= {"status": UNFINISHED, "error": "no metrics.json (still running, or the job was killed)"}
    else:
        try:
            metrics = read_metrics(job_dir)
        except ValueError as err:
            problems.append(str(err))
        else:
            objective = metrics.get("objective")
            row |= {
                "status": metrics.get("status") or UNFINISHED,
                "metric": metrics.get("optimized_metric"),
                "objective": float(objective) if objective is not None else math.nan,
                "epochs": metrics.get("epochs"),
                "global_step": metrics.get("global_step"),
                "best_epoch": metrics.get("best_epoch"),
                "wall_seconds": metrics.get("wall_seconds"),
                "error": metrics.get("error", ""),
            }
            row |= dict(metrics.get("test") or {})
    if problems:
        row |= {"status": BROKEN, "error": "; ".join(problems)}
    return row


def not_started(job: int, overrides: list[str]) -> dict[str, Any]:
    shown = shown_overrides(overrides)
    params = dict(split_override(o) for o in shown)
    return {"job": job, "status": NOT_STARTED, "overrides": " ".join(shown), "params": params, "run_dir": ""}


def collect(sweep_dir: Path, plan: SweepPlan | None = None) -> list[dict[str, Any]]:
    """Every job of the sweep (``plan``, default :func:`planned_jobs`, and every job dir found),
    best first by its optimized metric; failed jobs next, jobs not started last."""
    plan = plan if plan is not None else planned_jobs(sweep_dir)
    found = {int(d.name): d for d in job_dirs(sweep_dir)}
    rows = [
        read_job(found[job], plan.jobs.get(job)) if job in found else not_started(job, plan.jobs[job])
        for job in sorted(found.keys() | plan.jobs.keys())
    ]
    metrics = [r["metric"] for r in rows if r.get("metric")]
    sign = -1.0 if metrics and metric_mode(metrics[0]) == "max" else 1.0

    def key(row: dict[str, Any]) -> tuple[int, float, int]:
        value = row.get("objective", math.nan)
        usable = row["status"] in OK_STATUSES and isinstance(value, float) and math.isfinite(value)
        group = 0 if usable else 2 if row["status"] == NOT_STARTED else 1
        return (group, sign * value if usable else 0.0, row["job"])

    return sorted(rows, key=key)


def columns(rows: list[dict[str, Any]], params: bool = False) -> list[str]:
    test = sorted({k for r in rows for k in r if k.startswith("test/")})
    swept = swept_parameters(rows) if params else []
    return [*FIXED_COLUMNS[:4], *test, *FIXED_COLUMNS[4:], *swept, "run_dir", "error"]


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows, params=True), extrasaction="ignore")
        writer.writeheader()
        for row in rows:  # the swept parameters get a column each, for pandas & co.
            writer.writerow({k: ("" if v is None else v) for k, v in (row | row["params"]).items()})


def write_markdown(rows: list[dict[str, Any]], path: Path, sweep_dir: Path, note: str = "") -> None:
    names = [c for c in columns(rows) if c != "run_dir"]
    metric = next((r["metric"] for r in rows if r.get("metric")), "?")
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{counts(rows)}. Best first by `{metric}`; job dirs are `<sweep dir>/<job>/`.",
        "",
        *([f"Note: {note}; listed: the job dirs found.", ""] if note else []),
        "| " + " | ".join(names) + " |",
        "|" + "|".join(" --- " for _ in names) + "|",
    ]
    for row in rows:
        cells = [fmt(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in names]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def swept_parameters(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys that take more than one value across the jobs (else all override keys)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["params"] if k not in keys]
    varying = [k for k in keys if len({r["params"].get(k) for r in rows}) > 1]
    return varying or keys


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def write_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """The optimized metric against each swept parameter (one panel per parameter);
    numbers on a (log) axis, choices as categories; failed jobs left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] in OK_STATUSES and math.isfinite(r.get("objective", math.nan))]
    params = swept_parameters(rows) or ["job"]
    metric = next((r["metric"] for r in rows if r.get("metric")), "objective")
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.4), squeeze=False)
    for ax, param in zip(axes[0], params, strict=True):
        raw = [str(r["job"]) if param == "job" else r["params"].get(param) for r in done]
        values = [r["objective"] for r in done]
        numbers = [_number(v) for v in raw]
        if raw and all(n is not None for n in numbers) and len(set(raw)) > 2:
            xs = [float(n) for n in numbers if n is not None]
            ax.scatter(xs, values, alpha=0.8)
            if min(xs) > 0 and max(xs) / min(xs) >= 100:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in raw}, key=lambda s: (_number(s) is None, _number(s) or 0.0, s))
            position = {label: i for i, label in enumerate(labels)}
            ax.scatter([position[str(v)] for v in raw], values, alpha=0.8)
            for label, i in position.items():
                mine = [y for v, y in zip(raw, values, strict=True) if str(v) == label]
                ax.hlines(sum(mine) / len(mine), i - 0.25, i + 0.25, colors="C1")
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(done)} of {len(rows)} jobs (orange: mean per choice)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


Curve = tuple[np.ndarray, np.ndarray]


def read_curves(job_dir: Path, tags: list[str]) -> dict[str, Curve]:
    """Per-epoch values of ``tags`` from the TensorBoard events under ``<job>/tensorboard``
    as (epochs done, values); tags the job never logged are left out. The x value is the
    logged ``epoch`` + 1 at the scalar's step (the step itself without an ``epoch`` scalar);
    a step logged twice (a resumed run) keeps its last value."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # no line per events file read
    guidance = {ea.SCALARS: 0, ea.IMAGES: 1, ea.TENSORS: 1, ea.HISTOGRAMS: 1, ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1}
    run_dirs = sorted({p.parent for p in (job_dir / "tensorboard").rglob("events.out.tfevents.*")})
    by_step: dict[str, dict[int, float]] = {}
    epoch_at: dict[int, float] = {}
    for run_dir in run_dirs:
        events = ea.EventAccumulator(str(run_dir), size_guidance=guidance)
        events.Reload()
        scalars = set(events.Tags().get("scalars", []))
        if "epoch" in scalars:
            epoch_at |= {e.step: e.value for e in events.Scalars("epoch")}
        for tag in tags:
            if tag in scalars:
                by_step.setdefault(tag, {}).update({e.step: e.value for e in events.Scalars(tag)})
    curves: dict[str, Curve] = {}
    for tag, values in by_step.items():
        steps = sorted(values)
        epochs = [epoch_at[s] + 1 if s in epoch_at else float(s) for s in steps]
        curves[tag] = (np.asarray(epochs, dtype=float), np.asarray([values[s] for s in steps], dtype=float))
    return curves


def write_curves_plot(rows: list[dict[str, Any]], path: Path) -> int:
    """``summary_curves.png``: every job's validation curves of the optimized metric and of
    ``val/loss`` overlaid, coloured by the first swept parameter (line style by the second);
    jobs without curves (no TensorBoard events, or failed before validating) are left out.
    Returns the number of jobs drawn; with none, no file (and an old one is removed)."""
    from dllab.pictures import plots

    metric = next((r["metric"] for r in rows if r.get("metric")), None)
    tags = [t for t in (metric if metric and metric.startswith("val/") else None, "val/loss") if t]
    tags = list(dict.fromkeys(tags))
    params = swept_parameters(rows) or ["job"]
    colour_by = params[0]
    second = params[1] if len(params) > 1 else None
    second_values = sorted({str(r["params"].get(second)) for r in rows}) if second else []
    jobs: list[plots.SweepCurve] = []
    for row in sorted(rows, key=lambda r: r["job"]):
        if not row["run_dir"]:
            continue  # a job that never started has no dir
        try:
            curves = read_curves(Path(row["run_dir"]), tags)
        except Exception as err:  # a broken events file must not cost the rest of the summary
            print(f"sweep summary: job {row['job']}: no curves ({err})", file=sys.stderr)
            continue
        if not curves:
            continue
        overrides = row["overrides"].split()
        jobs.append(
            plots.SweepCurve(
                label=f"{row['job']}: {run_label(overrides) if overrides else 'defaults'}",
                value=str(row["job"]) if colour_by == "job" else str(row["params"].get(colour_by)),
                curves=curves,
                style=second_values.index(str(row["params"].get(second))) if second else 0,
                ok=row["status"] in OK_STATUSES,
            )
        )
    if not jobs:
        path.unlink(missing_ok=True)
        return 0
    styled = f", line style by {second}" if second else ""
    title = f"validation curves of {len(jobs)} of {len(rows)} jobs, coloured by {colour_by}{styled}"
    figure = plots.sweep_curves_figure(jobs, tags, colour_by, title=title, per_job_legend=second is not None)
    plots.save(figure, path)
    return len(jobs)


def counts(rows: list[dict[str, Any]]) -> str:
    """``6 jobs, 1 failed, 2 not started``: a job that never ran has not failed."""
    failed = sum(r["status"] not in (*OK_STATUSES, NOT_STARTED) for r in rows)
    waiting = sum(r["status"] == NOT_STARTED for r in rows)
    return f"{len(rows)} jobs, {failed} failed" + (f", {waiting} not started" if waiting else "")


def write_summary(sweep_dir: Path) -> SweepResult:
    """Write summary.csv, summary.md, summary.png and summary_curves.png into the sweep dir."""
    plan = planned_jobs(sweep_dir)
    rows = collect(sweep_dir, plan)
    if not rows:
        why = f" ({plan.note})" if plan.note else ""
        raise FileNotFoundError(
            f"sweep_dir={sweep_dir}: no job dirs (<job number>/.hydra/) in it{why}; "
            "give a sweep dir (logs/<task>/multiruns/<sweep>)"
        )
    writers = {
        "summary.csv": lambda path: write_csv(rows, path),
        "summary.md": lambda path: write_markdown(rows, path, sweep_dir, plan.note),
        "summary.png": lambda path: write_plot(rows, path),
        CURVES_PNG: lambda path: write_curves_plot(rows, path),
    }
    not_written = {}
    for name, write in writers.items():
        try:
            write(sweep_dir / name)
        except OSError as err:  # the table is still shown; what could not be written is named
            not_written[name] = err.strerror or str(err)
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    waiting = by_status.get(NOT_STARTED, 0)
    failed = sum(n for s, n in by_status.items() if s not in OK_STATUSES) - waiting
    return SweepResult(
        jobs=len(rows),
        failed=failed,
        not_started=waiting,
        note=plan.note,
        by_status=by_status,
        rows=rows,
        not_written=not_written,
    )


def results_table(rows: list[dict[str, Any]], limit: int = 20) -> list[str]:
    """The sweep's results for the terminal, best first: a column per swept key, the
    optimized metric, the matching test metric, the epoch tested, and the status."""
    params = swept_parameters(rows)
    metric = next((r["metric"] for r in rows if r.get("metric")), "objective")
    tests = sorted({k for r in rows for k in r if k.startswith("test/")})
    matching = f"test/{metric.split('/', 1)[-1]}"
    test = matching if matching in tests else (tests[0] if tests else None)
    header = ["job", *params, metric, *([test] if test else []), "best epoch", "status"]
    table = [header]
    for row in rows[:limit]:
        best = row.get("best_epoch")
        epochs = f"{best}/{row.get('epochs')}" if best is not None else fmt(row.get("epochs"))
        error = " ".join(str(row.get("error") or "").split())  # one line, whatever the message
        status = f"{row['status']}: {error}"[:60] if error and row["status"] not in OK_STATUSES else row["status"]
        cells = [str(row["job"]), *(str(row["params"].get(p, "")) for p in params), fmt(row.get("objective"))]
        table.append([*cells, *([fmt(row.get(test))] if test else []), epochs, status])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in summary.md")
    return lines


def report(result: SweepResult, sweep_dir: Path) -> str:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(result.by_status.items()))
    waiting = f", {result.not_started} not started" if result.not_started else ""
    lines = [f"sweep: {result.jobs} jobs, {result.failed} failed{waiting} ({statuses})"]
    if result.note:
        lines.append(f"note: {result.note}; listed: the job dirs found")
    written = [n for n in ("summary.md", "summary.csv", "summary.png") if n not in result.not_written]
    if CURVES_PNG not in result.not_written and (sweep_dir / CURVES_PNG).exists():
        written.append(CURVES_PNG)
    if written:
        also = f" (also {', '.join(written[1:])})" if written[1:] else ""
        lines.append(f"summary: {sweep_dir / written[0]}{also}")
    lines.append(f"look at it: tensorboard --logdir {sweep_dir}  (curves: http://localhost:6006/#custom_scalars)")
    return "\n".join(lines)


def not_written_lines(result: SweepResult, sweep_dir: Path) -> list[str]:
    """One line per summary file that could not be written, naming it and why."""
    return [f"error: {sweep_dir / name}: not written ({why})" for name, why in result.not_written.items()]


class SweepSummaryCallback(Callback):
    """Hydra callback of every multirun.

    At the start it fixes the sweep dir: resolved once here, with the sweep's primary
    config, and handed to the jobs in ``DLLAB_SWEEP_DIR`` (a job resolving it itself would
    use its own ``task_name`` and, in a joblib worker, its own process id). At the end it
    writes the summary and says how many jobs failed.
    """

    def __init__(self) -> None:
        self._saved_env: dict[str, str | None] = {}
        self._lock: IO[str] | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        compose_as_hydra()  # nothing kept from an earlier multirun of this process
        compose_once()  # the jobs' configs the checks compose are the ones the launcher gets
        refuse_bad_sweep(config)  # the launcher's, the sweeper's and the jobs' settings, before anything is made
        self._lock = claim(config)  # before anything is written into it
        self._saved_env = {name: os.environ.get(name) for name in (SWEEP_DIR_ENV, SWEPT_KEYS_ENV)}
        os.environ[SWEEP_DIR_ENV] = str(Path(str(config.hydra.sweep.dir)).absolute())
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(config))  # readable TensorBoard run names

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        compose_as_hydra()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        release(self._lock)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:
            result = write_summary(sweep_dir)
        except FileNotFoundError as err:
            print(f"sweep summary: {err}", file=sys.stderr)
            return
        LAST_SWEEP.jobs, LAST_SWEEP.failed, LAST_SWEEP.by_status = result.jobs, result.failed, result.by_status
        print("\n" + report(result, sweep_dir))
        print("\n".join(["", *results_table(result.rows)]))
        if result.not_written:
            print("\n".join(not_written_lines(result, sweep_dir)), file=sys.stderr)
        if result.failed == result.jobs:
            print("error: every job of the sweep failed; see the error column of summary.md", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """``dllab-summary <sweep dir>``: (re)write the summary of a finished or partial sweep."""
    parser = argparse.ArgumentParser(prog="dllab-summary", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="logs/<task>/multiruns/<sweep>")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: sweep_dir={args.sweep_dir}: not a directory", file=sys.stderr)
        sys.exit(2)
    try:
        result = write_summary(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(report(result, args.sweep_dir))
    print("\n".join(["", *results_table(result.rows)]))
    if result.not_written:  # a read-only or full place: the table above is the summary
        print("\n".join(not_written_lines(result, args.sweep_dir)), file=sys.stderr)
    broken = result.by_status.get(BROKEN, 0)
    if broken and broken == result.jobs - result.not_started:  # the summary lists them, and nothing else
        print(
            f"error: sweep_dir={args.sweep_dir}: every job that ran is broken ({broken}); "
            "see the error column of summary.md",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
