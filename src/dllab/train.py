"""``dllab-train``: compose the config, check it, fit, test the best checkpoint, record
the run, and return the optimized metric (so sweepers can use it).

Everything heavy (torch, Lightning) is imported inside :func:`train`, after the
config has been checked, so ``--help``, ``--cfg job`` and bad-config errors return
quickly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from dllab.catalog import AUTO, DEFAULT_METRIC, metric_mode
from dllab.checkpoints import check_checkpoint_fits, checkpoint_field, read_checkpoint
from dllab.checks import (
    check_accelerator_present,
    check_batch_norm_batches,
    check_config,
    check_loss_fits,
    check_monitors_logged,
    check_targets,
)
from dllab.errors import ConfigError, DivergedError
from dllab.hydra_help import install as install_help
from dllab.results import (
    COMPLETED,
    CONFIG_ERROR,
    DIVERGED,
    FAILED,
    INTERRUPTED,
    finite_or_none,
    result_lines,
    save_config,
    short_hparams,
    to_float,
    upgrade_config,
    write_metrics,
)
from dllab.run_dirs import PREEXISTING, TAKEN
from dllab.sweeps import jobs as sweep_jobs
from dllab.sweeps import requeue

log = logging.getLogger("dllab.train")
details = logging.getLogger("dllab.details")  # train.log only (conf/hydra/job_logging/dllab.yaml)

# What the run is doing, for the message of a signal that stops it (set by run, build, fit_and_test).
_PHASE = ["start-up"]
_SIGNALS: list[int] = []  # SIGINT/SIGTERM received by this process


def _on_signal(signum: int, frame: Any) -> None:
    _SIGNALS.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def catch_signals() -> None:
    """SIGTERM (a scheduler's stop) is handled as Ctrl-C is, from the first line on: whatever
    phase it hits ends with ``status: interrupted`` and a message, not a silent kill.
    (During fit, :class:`~dllab.training.callbacks.GracefulInterrupt` takes over and saves.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def config_dir() -> str:
    """conf/ shipped inside the wheel, else the repository's conf/ (editable install)."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf")


# Trainer keys that the in-memory step loop honours itself (see dllab.training.module and
# dllab.data.datamodule); the Lightning Trainer gets its neutral values for them.
MODULE_TRAINER_KEYS = ("accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm")
DATA_TRAINER_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches")


OmegaConf.register_new_resolver("dllab.metric_mode", metric_mode, replace=True)


def verbose_errors(cfg: DictConfig | None = None) -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or bool(cfg is not None and cfg.get("verbose"))


def plain(node: DictConfig) -> dict[str, Any]:
    """A resolved config node as a plain dict (primitive hyperparameters for checkpoints)."""
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def split_trainer_config(trainer_cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Trainer kwargs, module kwargs and datamodule kwargs from the trainer config."""
    trainer = plain(trainer_cfg)
    module = {k: trainer.pop(k) for k in MODULE_TRAINER_KEYS if k in trainer}
    data = {k: trainer.pop(k) for k in DATA_TRAINER_KEYS if k in trainer}
    limit_val = data.get("limit_val_batches", 1.0)
    if limit_val == 0:  # validation off: the Trainer must skip it
        trainer["limit_val_batches"] = 0
    return trainer, module, data


@dataclass
class Run:
    """What :func:`build` makes of a config: everything :func:`fit_and_test` needs."""

    cfg: DictConfig
    datamodule: Any
    module: Any
    trainer: Any
    callbacks: list[Any]
    plotters: list[Any]
    tuned: dict[str, Any] = field(default_factory=dict)  # lr_find, batch_size_find results
    hparams: dict[str, Any] = field(default_factory=dict)  # the HParams tab's set, also in picture titles


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one model; return the fields of metrics.json."""
    started = time.perf_counter()
    _PHASE[0] = "set-up"  # from here: imports of torch and Lightning, data, model
    run = build(cfg)
    result = fit_and_test(run)
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    record(run, result)
    return result


def build(cfg: DictConfig) -> Run:
    """Data, module, callbacks, loggers and Trainer of a checked config, seeded; the tuner's
    searches (learning rate, batch size) when asked for; the resolved config saved."""
    import torch
    from hydra.utils import instantiate

    from dllab.data.augmentation import build_augmenter
    from dllab.pictures.callbacks import build_plot_callbacks

    quiet_library_logs(bool(cfg.get("verbose")))
    check_accelerator_present(cfg.trainer.accelerator, torch_checked=True)
    check_targets(cfg)  # the _target_ classes import and are of the right kind
    checkpoint = read_checkpoint(cfg.ckpt_path, checkpoint_field(cfg)) if cfg.get("ckpt_path") else None
    threads = sweep_jobs.job_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    details.info("torch threads: %d", torch.get_num_threads())
    run_dir = Path(cfg.paths.output_dir)
    trainer_kwargs, _, _ = split_trainer_config(cfg.trainer)
    datamodule, module = seeded_data_and_module(cfg, checkpoint)
    module.augment = build_augmenter(
        plain(cfg.augmentation) if cfg.get("augmentation") else {},
        cfg.data.name,
        datamodule.image_shape,
        datamodule.scaling,
        seed=cfg.seed,
        mirror=datamodule.source.mirrored,
    )

    from dllab.training.callbacks import GracefulInterrupt
    from dllab.training.checkpointing import LastCheckpoint

    callbacks = [*instantiate_enabled(cfg.get("callbacks")), GracefulInterrupt()]
    # last.ckpt is taken after every other checkpoint callback has seen the epoch (stable sort)
    callbacks.sort(key=lambda c: isinstance(c, LastCheckpoint))
    plotters = build_plot_callbacks(**plain(cfg.plots)) if cfg.get("plots") else []
    callbacks += plotters
    loggers = instantiate_enabled(cfg.get("logger"))
    if not loggers:
        callbacks = without_logger_callbacks(callbacks)
    trainer_kwargs |= trainer_flags_for(callbacks)
    sweep_jobs.use_job_ddp_workers()
    trainer = instantiate(trainer_kwargs, callbacks=callbacks, logger=loggers or False)
    run = Run(cfg, datamodule, module, trainer, callbacks, plotters)
    if cfg.get("tuner") and cfg.tuner.get("lr_find") and not trainer.fast_dev_run:
        from dllab.training.tuner import find_and_use_lr

        run.tuned["lr_find"] = find_and_use_lr(cfg, module, datamodule, run_dir, trainer.loggers)
    if cfg.get("tuner") and cfg.tuner.get("batch_size_find") and not trainer.fast_dev_run:
        from dllab.training.tuner import find_and_use_batch_size

        run.tuned["batch_size_find"] = find_and_use_batch_size(cfg, trainer, module, datamodule)
    # after the tuner: its learning rate is the run's
    run.hparams = short_hparams(cfg, module.loss_name) | sweep_jobs.swept_hparams(cfg)
    from dllab.training.loggers import job_swept_keys

    for plotter in plotters:
        plotter.run_hparams = (run.hparams, job_swept_keys())
    if trainer.fast_dev_run and not is_multirun():  # a smoke test writes nothing (a sweep's jobs: their records)
        if cfg.get("print_config"):
            from dllab.results import config_tree

            print("config:\n" + "\n".join(config_tree(cfg)), flush=True)
    else:
        save_config(cfg, run_dir, show=bool(cfg.get("print_config")))
    return run


def seeded_data_and_module(cfg: DictConfig, checkpoint: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The run's DataModule (set up) and LightningModule, built right after seeding with
    ``cfg.seed``, so the initial weights and what the global random generator holds next
    (dropout's draws) are the run's; ``optimized_metric: auto`` resolved. A stacked sweep
    (:mod:`dllab.stacked`) builds each of its models here too, as its solo run would."""
    import lightning as L

    from dllab.data.datamodule import build_datamodule
    from dllab.training.module import module_class

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    _, loop_kwargs, data_kwargs = split_trainer_config(cfg.trainer)
    datamodule = build_datamodule(cfg.data, **data_kwargs)
    datamodule.setup()
    if checkpoint is not None:  # before Lightning loads it into a model of other sizes
        check_checkpoint_fits(cfg.ckpt_path, checkpoint, datamodule, checkpoint_field(cfg))
    task = datamodule.task
    check_loss_fits(cfg.loss.name, task, f"data={cfg.data.name}")
    check_batch_norm_batches(cfg, len(datamodule.arrays["train"][0]))  # before the Trainer makes folders
    with open_dict(cfg):
        if cfg.optimized_metric == AUTO:
            cfg.optimized_metric = DEFAULT_METRIC[task] if validates(cfg) else "train/loss"
    image_shape = datamodule.image_shape
    module = module_class(task, cfg.get("module"))(
        input_size=datamodule.input_size,
        output_size=datamodule.output_size,
        net=plain(cfg.model),
        image_shape=list(image_shape) if image_shape else None,
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.scheduler) if cfg.scheduler.get("_target_") else None,
        class_names=datamodule.class_names,
        **loop_kwargs,
    )
    check_monitors_logged(cfg, module.metrics, module.main_metric)
    return datamodule, module


def fit_and_test(run: Run) -> dict[str, Any]:
    """Fit, then test the best checkpoint (the last weights when there is none); the fields of
    metrics.json but ``wall_seconds``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    cfg, trainer, module, datamodule = run.cfg, run.trainer, run.module, run.datamodule
    run_dir = Path(cfg.paths.output_dir)
    details.info("run dir: %s", run_dir)
    fit_started = time.perf_counter()
    _PHASE[0] = "training"
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - fit_started
    logged = {k: to_float(v) for k, v in trainer.callback_metrics.items()}

    best_checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = best_checkpoint.best_model_path if best_checkpoint else ""
    if best_path and run_dir.resolve() not in Path(best_path).resolve().parents:
        # a resumed run dir that was moved: its checkpoint remembers the old location
        moved = run_dir / "checkpoints" / Path(best_path).name
        best_path = str(moved) if moved.is_file() else best_path
    # which model is tested, read before trainer.test restores the callbacks' state from it
    tested = {
        key: getattr(best_checkpoint, key, None)
        for key in ("best_epoch", "best_step", "tie_breaker", "best_tie_value", "best_first_epoch")
    }
    _PHASE[0] = "testing"
    test_results = trainer.test(
        module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True
    )
    test_metrics = {k: to_float(v) for k, v in (test_results[0] if test_results else {}).items()}
    best_val = {k: v for k, v in logged.items() if k.startswith("val/") and k.endswith("_best")}
    objective = logged.get(cfg.optimized_metric, float("nan"))
    if cfg.optimized_metric.startswith("val/") and not cfg.optimized_metric.endswith("_best"):
        # the value at the best checkpoint, not at the last epoch
        score = best_checkpoint.best_model_score if best_checkpoint else None
        objective = to_float(score) if score is not None else objective

    result = {
        "optimized_metric": cfg.optimized_metric,
        "objective": finite_or_none(objective),
        "test": test_metrics,
        "best_val": best_val,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "fit_seconds": round(fit_seconds, 3),
        "best_checkpoint": best_path or None,
        "run_dir": str(run_dir),
    }
    if best_path:
        result |= {k: v for k, v in tested.items() if v is not None or k in ("best_epoch", "best_step")}
    elif trainer.fast_dev_run:
        result["tested_reason"] = "debug=fast_dev_run (nothing written)"
    elif best_checkpoint is not None:
        result["tested_reason"] = f"{best_checkpoint.monitor} was never logged, so no best checkpoint was kept"
    # a callback may end a run early with its own status (the Optuna pruner: "pruned")
    statuses = [getattr(c, "run_status", None) for c in run.callbacks]
    result["status"] = next((s for s in statuses if s), COMPLETED)
    if run.plotters:
        result["plot_seconds"] = round(sum(p.seconds for p in run.plotters), 3)
        if any(p.error for p in run.plotters):
            result["warnings"] = [f"picture not drawn: {p.error}" for p in run.plotters if p.error]
    return result | run.tuned


def record(run: Run, result: dict[str, Any]) -> None:
    """TensorBoard's HParams session: the run's short hyperparameters and its final metrics."""
    from dllab.training.loggers import log_run_hparams  # Lightning: imported only once a run trains

    log_run_hparams(run.trainer, run.hparams, {**result["test"], **result["best_val"]})


def quiet_library_logs(verbose: bool = False) -> None:
    """Lightning logs through Hydra's handlers only (no second copy of each line), without
    its advertising tips and the deprecation noise of its own dependencies; its info lines
    (devices found, checkpoint restored) only with ``verbose=true``: the console keeps what
    the run says about the data and its result."""
    import warnings

    import lightning  # noqa: F401  (adds its handlers on import; cleared below)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "Tip:" not in record.getMessage()
    )
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning's advice on any machine with SLURM's client installed, also for local runs
    warnings.filterwarnings("ignore", message=".*The `srun` command is available on your system.*")


def validates(cfg: DictConfig) -> bool:
    """Whether the run has a validation pass (trainer.limit_val_batches is not 0)."""
    return cfg.trainer.get("limit_val_batches", 1.0) != 0


def instantiate_enabled(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a callbacks/logger group; ``enabled: false`` skips one."""
    from hydra.utils import instantiate

    objects = []
    for node in (group or {}).values():
        if node is None or "_target_" not in node:
            continue
        node = plain(node)
        if node.pop("enabled", True):
            objects.append(instantiate(node))
    return objects


def without_logger_callbacks(callbacks: list[Any]) -> list[Any]:
    """With the logger off (``logger=[]``, ``~logger``) the callbacks that only write to it
    are left out, with a word, instead of stopping the run (Lightning's LearningRateMonitor
    refuses a Trainer without a logger)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    from dllab.data.augmentation import AugmentationPreview

    dropped = [c for c in callbacks if isinstance(c, (LearningRateMonitor, AugmentationPreview))]
    if dropped:
        names = ", ".join(type(c).__name__ for c in dropped)
        log.info("no logger (logger=[]): %s left out, as they only write to it", names)
    return [c for c in callbacks if not any(c is d for d in dropped)]


def trainer_flags_for(callbacks: list[Any]) -> dict[str, bool]:
    """Lightning adds its own bar, checkpoint and summary unless told not to."""
    from lightning.pytorch.callbacks import Checkpoint, ModelSummary, ProgressBar

    return {
        "enable_progress_bar": any(isinstance(c, ProgressBar) for c in callbacks),
        "enable_checkpointing": any(isinstance(c, Checkpoint) for c in callbacks),
        "enable_model_summary": any(isinstance(c, ModelSummary) for c in callbacks),
    }


def run(cfg: DictConfig) -> float | None:
    """Check, train and record one run; errors become one line and a status in metrics.json."""
    run_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    _PHASE[0] = "start-up"
    restarted = is_multirun() and requeue.restarts() > 0 and (run_dir / "config.yaml").is_file()
    if restarted:  # a requeued SLURM job: its own dir, from its own checkpoint
        with open_dict(cfg):
            cfg.resume = str(run_dir)
    elif TAKEN and not cfg.get("resume"):
        print(
            f"error: hydra.run.dir={TAKEN[-1]}: holds another run; give a new dir, "
            f"or resume={TAKEN[-1]} to continue that run",
            file=sys.stderr,
        )
        if is_multirun():
            return sweep_jobs.worst_value(cfg)  # the other run's records stay untouched
        sys.exit(2)
    try:
        if cfg.get("resume"):
            cfg = resume_config(cfg, requeued=restarted)
        check_config(cfg)
        with sweep_jobs.fresh_distributed_state():
            result = train(cfg)
    except KeyboardInterrupt:
        return _interrupted(cfg, run_dir, wall=time.perf_counter() - started)
    except ConfigError as err:
        return _fail(cfg, run_dir, CONFIG_ERROR, err, exit_code=2)
    except DivergedError as err:
        return _fail(cfg, run_dir, DIVERGED, err, exit_code=1, wall=time.perf_counter() - started)
    except Exception as err:
        if _SIGNALS:  # the signal broke an import or a library call: the signal is the cause
            return _interrupted(cfg, run_dir, wall=time.perf_counter() - started)
        if verbose_errors(cfg):
            raise
        return _fail(cfg, run_dir, FAILED, err, exit_code=1, wall=time.perf_counter() - started)
    if sweep_jobs.global_rank() != 0:  # a DDP worker: rank 0 records the run
        return result["objective"]
    status = result.pop("status")
    if requeue.restarts():
        result["restarts"] = requeue.restarts()  # SLURM requeued the job (pre-emption, time-out)
    fast_dev_run = bool(cfg.trainer.get("fast_dev_run"))
    if fast_dev_run and not is_multirun():
        result["written"] = not remove_written_by_hydra(run_dir, cfg)  # a smoke test: no run dir left behind
    else:
        write_metrics(run_dir, status, **result)
    tensorboard = not is_multirun() and (run_dir / "tensorboard").is_dir()  # not with the logger off
    for line in result_lines(result | {"status": status}, tensorboard=tensorboard):
        log.info(line)  # the terminal and train.log
    if result["objective"] is None and is_multirun():
        return sweep_jobs.worst_value(cfg)
    return result["objective"]


def _interrupted(cfg: DictConfig, run_dir: Path, wall: float) -> float:
    """A signal outside Lightning's fit and test (which :class:`GracefulInterrupt` handles):
    metrics.json says ``interrupted``, in which phase, and the command that carries on."""
    phase = _PHASE[0]
    signum = _SIGNALS[-1] if _SIGNALS else signal.SIGINT
    if sweep_jobs.global_rank() != 0:
        sys.exit(128 + signum)
    command = continue_command(run_dir)
    if cfg.trainer.get("fast_dev_run") and not is_multirun() and remove_written_by_hydra(run_dir, cfg):
        command = start_again_command()  # a smoke test leaves nothing behind
    else:
        write_metrics(
            run_dir,
            INTERRUPTED,
            phase=phase,
            resume_command=command,
            wall_seconds=round(wall, 3),
            run_dir=str(run_dir),
        )
    _PHASE[0] = "reported"
    print(f"\ninterrupted ({signal.Signals(signum).name}) during {phase}; continue with:\n  {command}", file=sys.stderr)
    logging.getLogger("torch").setLevel(logging.WARNING)  # an import cut short leaves its exit-time stats on
    if is_multirun():
        raise KeyboardInterrupt  # Ctrl-C stops the whole sweep, as it does during training
    sys.exit(128 + signum)


def continue_command(run_dir: Path) -> str:
    """``resume=`` once the run dir holds its config (a resume without a checkpoint starts the
    run over in its dir), else the command line that started it."""
    if (run_dir / "config.yaml").is_file():
        return f"dllab-train resume={run_dir}"
    return start_again_command()


def start_again_command() -> str:
    import shlex

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return " ".join(["dllab-train", *(shlex.quote(o) for o in overrides)])


def disk_error(err: BaseException, run_dir: Path) -> str | None:
    """One line for a write that failed because the disk is full or read-only (an OSError,
    or torch's RuntimeError around one), naming the file and how to carry on; else None."""
    import errno

    codes = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EACCES)
    chain: list[BaseException] = []
    while err is not None and len(chain) < 10:
        chain.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in codes:
            path = cause.filename2 or cause.filename or run_dir
            break
    else:
        try:
            full = shutil.disk_usage(run_dir).free < 2**20
        except OSError:
            full = False
        if not (full and any("write" in str(c) for c in chain)):
            return None
        path, cause = run_dir, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    resume = f"dllab-train resume={run_dir}" if (run_dir / "config.yaml").is_file() else "start the run again"
    return f"{path}: cannot write ({cause.strerror}) during {_PHASE[0]}; free space or fix the disk, then: {resume}"


def _fail(cfg: DictConfig, run_dir: Path, status: str, err: BaseException, exit_code: int, wall: float = 0.0) -> float:
    message = str(err) if isinstance(err, (ConfigError, DivergedError)) else f"{type(err).__name__}: {err}"
    message = (disk_error(err, run_dir) if status == FAILED else None) or message
    print(f"error: {message}", file=sys.stderr)
    if verbose_errors(cfg) and status != FAILED:
        import traceback

        traceback.print_exception(err)
    if sweep_jobs.global_rank() != 0:
        pass  # a DDP worker: rank 0 records the run
    elif status == CONFIG_ERROR and cfg.get("resume"):
        remove_if_made_by_hydra(run_dir, cfg)  # a resumed run's own metrics.json stays as it was
    elif status == CONFIG_ERROR and not is_multirun() and remove_if_made_by_hydra(run_dir, cfg):
        pass  # nothing was made but Hydra's files: no half-made run dir left behind
    elif cfg.trainer.get("fast_dev_run") and not is_multirun() and remove_written_by_hydra(run_dir, cfg):
        pass  # a smoke test leaves nothing behind, also when it fails
    else:
        try:
            write_metrics(run_dir, status, error=message, wall_seconds=round(wall, 3), run_dir=str(run_dir))
        except OSError as write_err:  # the disk that failed the run may fail its record too
            print(f"error: {run_dir / 'metrics.json'}: not written ({write_err.strerror})", file=sys.stderr)
        print(f"run dir: {run_dir}", file=sys.stderr)
    if status == FAILED and not verbose_errors(cfg):
        print("(set HYDRA_FULL_ERROR=1 or verbose=true for the traceback)", file=sys.stderr)
    if is_multirun():
        return sweep_jobs.worst_value(cfg)  # the sweep goes on; a sweeper ranks this job last
    sys.exit(exit_code)


def remove_if_made_by_hydra(run_dir: Path, cfg: DictConfig) -> bool:
    """Remove a run dir that holds nothing but what Hydra wrote for this invocation (its
    .hydra/ and log file), and the then-empty folders above it; anything else stays."""
    if not run_dir.is_dir():
        return True
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"} if HydraConfig.initialized() else set()
    if cfg.get("resume") and str(Path(cfg.resume)) in PREEXISTING:
        return False  # the user's dir: never removed
    if not {p.name for p in run_dir.iterdir()} <= hydra_files:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in () if cfg.get("resume") else (run_dir.parent, run_dir.parent.parent):
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break
    return True


def remove_written_by_hydra(run_dir: Path, cfg: DictConfig) -> bool:
    """A smoke test's run dir: removed when it holds only Hydra's files and the empty folders
    the run's callbacks made (Lightning's checkpoint callbacks make checkpoints/ before they
    know that nothing will be saved)."""
    for name in ("checkpoints", "tensorboard"):
        with contextlib.suppress(OSError):
            (run_dir / name).rmdir()  # only if empty
    return remove_if_made_by_hydra(run_dir, cfg)


def resume_config(cfg: DictConfig, requeued: bool = False) -> DictConfig:
    """The saved config of the run dir ``resume`` names, set to continue from its last.ckpt.

    A resumed run is the same run: other overrides are refused (a changed run is a new run,
    ``ckpt_path=<dir>/checkpoints/last.ckpt``), and a run dir that was moved or copied has
    its saved absolute paths pointed at where it is now. A ``requeued`` SLURM job carries its
    sweep's overrides, which made that config."""
    run_dir = Path(cfg.resume)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={cfg.resume}: not a dllab run dir (no config.yaml); give a dir under logs/*/runs/")
    others = (
        [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
        if HydraConfig.initialized() and not requeued
        else []
    )
    if others:
        raise ConfigError(
            f"resume={cfg.resume}: continues the run with its own config, so {' '.join(others)} cannot apply; "
            f"to change it, start a new run with ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
        )
    checkpoint = resume_checkpoint(run_dir)
    loaded = OmegaConf.load(saved)
    assert isinstance(loaded, DictConfig)
    missing = [key for key in ("data", "model", "trainer", "paths") if key not in loaded]
    if missing:
        raise ConfigError(f"resume={cfg.resume}: {saved} is not a dllab run's config (no {', '.join(missing)})")
    loaded = upgrade_config(loaded)
    old_dir, new_dir = str(loaded.paths.output_dir), str(run_dir.resolve())
    if old_dir != new_dir:
        container = OmegaConf.to_container(loaded)
        loaded = OmegaConf.create(_repoint(container, old_dir, new_dir))
    with open_dict(loaded):
        loaded.resume = str(run_dir)
        loaded.ckpt_path = str(checkpoint) if checkpoint else None
        loaded.paths.output_dir = new_dir
    if checkpoint is None:
        log.info("resuming %s: no checkpoint was written yet, so the run starts over in its dir", run_dir)
    elif checkpoint.name == "last.ckpt":
        log.info("resuming %s from %s", run_dir, checkpoint)
    else:
        log.info(
            "resuming %s from %s (the weights at the interrupt, newer than any last.ckpt; "
            "the interrupted epoch runs again from its start)",
            run_dir,
            checkpoint,
        )
    return loaded


def resume_checkpoint(run_dir: Path) -> Path | None:
    """What ``resume=`` continues from: ``last.ckpt`` (the end of a whole epoch, so the resumed
    run ends as one never stopped) unless ``interrupted.ckpt`` is at least one whole epoch
    further (last.ckpt is written on a time budget, or not yet); None when neither exists."""
    last = run_dir / "checkpoints" / "last.ckpt"
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    if not interrupted.is_file() or (last.is_file() and last.stat().st_mtime >= interrupted.stat().st_mtime):
        return last if last.is_file() else None
    if not last.is_file():
        return interrupted
    last_epoch = read_checkpoint(last, "resume").get("epoch", 0)
    interrupted_epoch = read_checkpoint(interrupted, "resume").get("epoch", 0)
    return interrupted if interrupted_epoch > last_epoch + 1 else last


def _repoint(node: Any, old: str, new: str) -> Any:
    """Every string under ``node`` that starts with the path ``old`` now starts with ``new``."""
    if isinstance(node, dict):
        return {k: _repoint(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_repoint(v, old, new) for v in node]
    if isinstance(node, str) and (node == old or node.startswith(old + "/")):
        return new + node[len(old) :]
    return node


def is_multirun() -> bool:
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run(cfg)


def main() -> None:
    """Console entry point of ``dllab-train`` (also ``python -m dllab.train``)."""
    catch_signals()
    install_help()  # --help lists the config groups in one pass, without conf/_base
    try:
        _hydra_main()
    except KeyboardInterrupt:
        signum = _SIGNALS[-1] if _SIGNALS else signal.SIGINT
        if _PHASE[0] != "reported":  # a signal while Hydra composed the config: no run yet
            if HydraConfig.initialized() and not is_multirun() and not PREEXISTING:  # never a resume's dir
                with contextlib.suppress(Exception):  # the run dir may not be resolved yet
                    remove_if_made_by_hydra(Path(HydraConfig.get().runtime.output_dir), OmegaConf.create({}))
            print(f"interrupted ({signal.Signals(signum).name}) before the run started; nothing was written")
        sys.exit(128 + signum)
    summary = sys.modules.get("dllab.sweeps.summary")  # loaded by a multirun's callback, else not needed
    if summary is not None and summary.LAST_SWEEP.jobs and summary.LAST_SWEEP.failed == summary.LAST_SWEEP.jobs:
        sys.exit(1)  # a multirun whose every job failed


if __name__ == "__main__":
    main()
