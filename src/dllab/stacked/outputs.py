"""A stacked model's run dir, as its solo ``dllab-train`` run writes it.

:func:`write_run` turns one :class:`~dllab.stacked.group.ModelResult` into the files of an
ordinary run: ``config.yaml``; the loggers' per-epoch values (TensorBoard scalars, the
HParams session, a CSV); ``checkpoints/best.ckpt`` and ``last.ckpt`` as Lightning
checkpoints of the single model (``dllab-eval`` and ``resume=`` read them as any other);
the pictures; the test of the best checkpoint; ``metrics.json``. It drives dllab's own
loggers and picture callbacks through :class:`RecordTrainer`, the few Trainer attributes
they read, so the files come from the same code as a solo run's, without a Trainer's fit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dllab import compat
from dllab.catalog import metric_mode
from dllab.results import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    interrupted_fields,
    run_fields,
    save_config,
    short_hparams,
    write_metrics,
)
from dllab.runs.config import plain
from dllab.stacked.group import ENDED_BY_FAILURE, ModelResult, ModelState, StackedJob, float32
from dllab.sweeps import jobs as sweep_jobs


@dataclass
class RecordTrainer:
    """What dllab's loggers, picture callbacks and HParams writer read of a Trainer."""

    datamodule: Any
    loggers: list[Any]
    current_epoch: int = 0
    global_step: int = 0
    callback_metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    is_global_zero: bool = True
    fast_dev_run: bool = False
    sanity_checking: bool = False


def write_run(job: StackedJob, result: ModelResult, stack: dict[str, Any]) -> dict[str, Any]:
    """Write the run dir of ``job`` from ``result``; return metrics.json's fields (with
    ``status``). ``stack``: the stack's size and fit seconds, recorded under ``stack``."""
    from dllab.pictures.callbacks import build_plot_callbacks
    from dllab.runs.config import instantiate_enabled
    from dllab.training.loggers import job_swept_keys, log_run_hparams

    started = time.perf_counter()
    cfg, module, datamodule = job.cfg, job.module, job.datamodule
    run_dir = Path(cfg.paths.output_dir)
    save_config(cfg, run_dir, show=bool(cfg.get("print_config")))
    loggers = instantiate_enabled(cfg.get("logger"))
    plotters = build_plot_callbacks(**plain(cfg.plots)) if cfg.get("plots") else []
    hparams = short_hparams(cfg, module.loss_name) | sweep_jobs.swept_hparams(cfg)
    for plotter in plotters:
        plotter.run_hparams = (hparams, job_swept_keys())
    trainer = RecordTrainer(datamodule, loggers)
    for plotter in plotters:
        plotter.setup(trainer, module, "fit")  # type: ignore[arg-type]
    # a diverged model's last epoch never reached its loggers, an interrupted one's was not done
    history = result.history[: result.epochs]
    replay_epochs(job, history, trainer, plotters, result)

    best_path = None
    if job.best_checkpoint is not None and result.best is not None:
        best_path = Path(job.best_checkpoint.dirpath) / f"{job.best_checkpoint.filename}.ckpt"
        best_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint(job, result, plotters, result.best, best_path, after_validation=True), best_path)
    last = result.kept if result.status == INTERRUPTED else None if result.status in ENDED_BY_FAILURE else result.final
    if job.last_checkpoint is not None and last is not None:
        job.last_checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint(job, result, plotters, last, best_path), job.last_checkpoint.path)
    if result.status in ENDED_BY_FAILURE:
        return failed(job, result, loggers, plotters, best_path, stack, time.perf_counter() - started)

    tested = result.best
    assert result.final is not None
    net_state = tested.net_state if tested is not None and best_path is not None else result.final.net_state
    test = test_metrics(job, net_state)
    trainer.current_epoch = result.epochs
    for logger in loggers:
        logger.log_metrics(test | {"epoch": float(result.epochs)}, step=result.epochs)
    for plotter in plotters:
        if tested is not None and best_path is not None:
            plotter.tested_epoch = tested.epoch - 1
        module.net.load_state_dict(net_state)
        plotter.on_test_end(trainer, module)  # type: ignore[arg-type]
    best_val = {k: v for k, v in result.history[-1].items() if k.startswith("val/") and k.endswith("_best")}
    best_val = {k: float(torch.tensor(v, dtype=torch.float32)) for k, v in best_val.items()}
    log_run_hparams(trainer, hparams, {**test, **best_val})
    for logger in loggers:
        logger.finalize("success")
    return record(job, result, test, best_val, best_path, plotters, stack, time.perf_counter() - started)


def save_progress(job: StackedJob, result: ModelResult) -> None:
    """A model's ``best.ckpt`` (when it has a best not yet on disk) and ``last.ckpt`` while its
    stack trains, from the state the stack kept at this epoch's end, as a solo run's checkpoint
    callbacks save them on ``last.ckpt``'s time budget: the best first, so that last.ckpt never
    names a file that is not there; each written whole before it replaces the old one, so a
    kill leaves the previous file. ``resume=<job dir>`` continues from it as from a solo run's."""
    from dllab.pictures.callbacks import build_plot_callbacks

    state = result.kept
    if state is None or job.last_checkpoint is None:
        return
    plotters = build_plot_callbacks(**plain(job.cfg.plots)) if job.cfg.get("plots") else []
    trainer = RecordTrainer(job.datamodule, [])
    for plotter in plotters:
        plotter.setup(trainer, job.module, "fit")  # type: ignore[arg-type]
    replay_epochs(job, result.history[: state.epoch], trainer, plotters, result)  # the curves' history
    best_path = None
    best = result.best
    if job.best_checkpoint is not None and best is not None:
        best_path = Path(job.best_checkpoint.dirpath) / f"{job.best_checkpoint.filename}.ckpt"
        if best is not result.saved_best:
            save_whole(checkpoint(job, result, plotters, best, best_path, after_validation=True), best_path)
            result.saved_best = best
    save_whole(checkpoint(job, result, plotters, state, best_path), job.last_checkpoint.path)


def save_whole(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` into a file beside ``path``, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)


def replay_epochs(
    job: StackedJob, history: list[dict[str, float]], trainer: RecordTrainer, plotters: list[Any], result: ModelResult
) -> None:
    """Each epoch's values to the loggers (the learning rate at the epoch's start, then the
    train values, then the validation values, at the steps a solo run uses), and to the
    picture callbacks' epoch-end hooks with the weights of that epoch where they draw."""
    module = job.module
    lr_logged: dict[str, float] = {}
    if job.lr_monitor is not None:  # the rate as the solo run's optimizer holds it (no scheduler stacks)
        optimizer = module.configure_optimizers()
        lr_logged = {compat.lr_monitor_name(job.lr_monitor, optimizer): float(optimizer.param_groups[0]["lr"])}
    for epoch, values in enumerate(history):
        trainer.current_epoch = epoch
        if lr_logged:
            for logger in trainer.loggers:
                logger.log_metrics(lr_logged, step=epoch)
        train = {k: v for k, v in values.items() if k.startswith("train/")}
        val = {k: v for k, v in values.items() if k.startswith("val/")}
        for part in (train, val):
            if part:
                trainer.callback_metrics.update({k: torch.tensor(v, dtype=torch.float32) for k, v in part.items()})
                for logger in trainer.loggers:
                    logger.log_metrics(dict(part), step=epoch + 1)
                    logger.save()
        for plotter in plotters:
            if val:  # as the Trainer calls every callback after validation
                plotter.on_validation_end(trainer, module)
            snapshot = result.snapshots.get(epoch + 1)
            if snapshot is not None:
                module.net.load_state_dict(snapshot)
            plotter.on_train_epoch_end(trainer, module)


def checkpoint(
    job: StackedJob,
    result: ModelResult,
    plotters: list[Any],
    state: ModelState,
    best_path: Path | None,
    after_validation: bool = False,
) -> dict[str, Any]:
    """The Lightning checkpoint of one model in ``state``: taken right after that epoch's
    validation (the best checkpoint) or at its end (``last.ckpt``)."""
    module = job.module
    epochs, steps = state.epoch, state.step
    main = f"val/{module.main_metric}_best"
    history = result.history[:epochs]
    running = [v[main] for v in history if main in v]
    state_dict = {f"net.{k}": v for k, v in state.net_state.items()}
    tracker = "max_value" if metric_mode(main) == "max" else "min_value"  # MaxMetric's or MinMetric's state
    if running:
        state_dict[f"best.{tracker}"] = torch.tensor(running[-1], dtype=torch.float32)
    callbacks: dict[str, Any] = {}
    kept = result.best if not after_validation else state
    if kept is not None and kept.epoch > epochs:  # a best found after this state: not known then
        kept = None
    callback = job.best_checkpoint
    if callback is not None and kept is not None and best_path is not None:
        current = float(history[-1].get(callback.monitor, kept.score))
        at = (kept.epoch, kept.step, kept.tie_value, kept.first_epoch)
        callbacks[callback.state_key] = callback.state_keeping(str(best_path), kept.score, current, at)
    if job.early_stopping is not None and state.early_stopping_state is not None:
        callbacks[job.early_stopping.state_key] = state.early_stopping_state
    for plotter in plotters:
        plotter_state = plotter.state_dict()
        if plotter_state:
            if "history" in plotter_state:  # the curves as they were then
                done = epochs - 1 if after_validation else epochs
                plotter_state = {"history": {k: v[:done] for k, v in plotter_state["history"].items()}}
            callbacks[plotter.state_key] = plotter_state
    return {
        "epoch": epochs - 1 if after_validation else epochs,
        "global_step": steps,
        "pytorch-lightning_version": L.__version__,
        "state_dict": state_dict,
        "loops": compat.loops_state(epochs, steps, len(job.datamodule.val_dataloader()), after_validation),
        "callbacks": callbacks,
        "optimizer_states": [state.optimizer_state],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": dict(module.hparams),
        "dllab_task": module.task,
        "torch_rng_state": state.rng_state,
    }


def failed(
    job: StackedJob,
    result: ModelResult,
    loggers: list[Any],
    plotters: list[Any],
    best_path: Path | None,
    stack: dict[str, Any],
    write_seconds: float,
) -> dict[str, Any]:
    """A diverged model's record, as a solo run's failure writes it; an interrupted one's with
    ``interrupted.ckpt`` (the weights of the moment) and the command that carries on."""
    run_dir = Path(job.cfg.paths.output_dir)
    for logger in loggers:
        logger.finalize(FAILED)
    fields: dict[str, Any] = {"run_dir": str(run_dir)}
    if result.status == INTERRUPTED:  # as GracefulInterrupt records it
        moment = result.final
        assert moment is not None
        path = run_dir / "checkpoints" / "interrupted.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint(job, result, plotters, moment, best_path), path)
        fields = interrupted_fields(run_dir, result.epochs, result.steps)
    else:
        fields["error"] = result.stop_reason or result.status
    fields["stack"] = dict(stack)
    fields["wall_seconds"] = round(stack["fit_seconds"] / max(stack["models"], 1) + write_seconds, 3)
    write_metrics(run_dir, result.status, **fields)
    return fields | {"status": result.status}


@torch.no_grad()
def test_metrics(job: StackedJob, net_state: dict[str, torch.Tensor]) -> dict[str, float]:
    """The test split on ``net_state``, as ``trainer.test`` computes it (the module's own
    ``test_step`` and torchmetrics)."""
    module = job.module
    module.net.load_state_dict(net_state)
    module.net.eval()
    for batch_idx, batch in enumerate(job.datamodule.test_dataloader()):
        module.test_step(batch, batch_idx)
    values = {k: float(v) for k, v in module.test_values().items()}
    module.net.train()
    return values


def record(
    job: StackedJob,
    result: ModelResult,
    test: dict[str, float],
    best_val: dict[str, float],
    best_path: Path | None,
    plotters: list[Any],
    stack: dict[str, Any],
    write_seconds: float,
) -> dict[str, Any]:
    """metrics.json's fields, built by :func:`dllab.results.run_fields` as the solo run's are;
    the fit and wall seconds are this model's share of the stack's."""
    cfg = job.cfg
    metric = str(cfg.optimized_metric)
    values = result.history[-1] if result.history else {}
    share = stack["fit_seconds"] / max(stack["models"], 1)
    best = result.best if best_path is not None else None
    tested = None
    if best is not None:
        tested = {
            "best_epoch": best.epoch,
            "best_step": best.step,
            "tie_breaker": job.best_checkpoint.tie_breaker,
            "best_tie_value": best.tie_value if math.isfinite(best.tie_value) else None,
            "best_first_epoch": best.first_epoch,
        }
    fields = run_fields(
        metric=metric,
        last_value=float32(values.get(metric, float("nan"))),  # as Lightning logs it
        best_score=best.score if best is not None else None,
        test=test,
        best_val=best_val,
        epochs=result.epochs,
        global_step=result.steps,
        fit_seconds=share,
        best_checkpoint=str(best_path) if best_path else None,
        run_dir=str(cfg.paths.output_dir),
        tested=tested,
        plotters=plotters,
    )
    if result.stop_reason and result.status != COMPLETED:
        fields["error"] = result.stop_reason
    fields["stack"] = dict(stack)
    fields["wall_seconds"] = round(share + write_seconds, 3)
    write_metrics(Path(cfg.paths.output_dir), result.status, **fields)
    return fields | {"status": result.status}
