"""Build a checked config into a run: data, module, callbacks, loggers and Trainer, seeded;
the tuner's searches when asked for; the resolved config saved.

Everything heavy (torch, Lightning) is imported inside the functions, after the config has
been checked, so ``--help``, ``--cfg job`` and bad-config errors return quickly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from dllab.catalog import AUTO, DEFAULT_METRIC
from dllab.checkpoints import check_checkpoint_fits, check_checkpoint_network, checkpoint_field, read_checkpoint
from dllab.checks import check_batch_norm_batches, check_monitors_logged, check_targets
from dllab.overrides import is_multirun
from dllab.results import save_config, short_hparams
from dllab.runs.config import instantiate_enabled, plain, split_trainer_config, validates
from dllab.runs.dry_run import blame_user_code, dry_run
from dllab.sweeps import jobs as sweep_jobs
from dllab.training.loss_checks import check_loss_fits
from dllab.training.trainer_checks import check_accelerator_present

log = logging.getLogger("dllab.train")
details = logging.getLogger("dllab.details")  # train.log only (conf/hydra/job_logging/dllab.yaml)


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
    dry_run(cfg, datamodule, module)  # the user's network, step and loss, before any folder is made
    module.augment = build_augmenter(
        plain(cfg.augmentation) if cfg.get("augmentation") else {},
        cfg.data.name,
        datamodule.image_shape,
        datamodule.scaling,
        seed=cfg.seed,
        mirror=datamodule.source.mirrored,
    )

    from dllab.runs.interrupt import GracefulInterrupt
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
        run.tuned["lr_find"] = find_and_use_lr(cfg, module, datamodule, run_dir, trainer.loggers)
    if cfg.get("tuner") and cfg.tuner.get("batch_size_find") and not trainer.fast_dev_run:
        from dllab.runs.exits import signal_exit
        from dllab.training.tuner import find_and_use_batch_size

        with signal_exit():  # Lightning's tuner fits: a signal there ends as in training
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


def seeded_data_and_module(
    cfg: DictConfig, checkpoint: dict[str, Any] | None = None, datamodule: Any = None
) -> tuple[Any, Any]:
    """The run's DataModule (set up) and LightningModule, built right after seeding with
    ``cfg.seed``, so the initial weights and what the global random generator holds next
    (dropout's draws) are the run's; ``optimized_metric: auto`` resolved. A stacked sweep
    (:mod:`dllab.stacked`) builds each of its models here too, as its solo run would, and may
    hand in a set-up ``datamodule`` of this data config that building leaves the random
    generators untouched by (:func:`dllab.stacked.group.shared_datamodule`)."""
    import lightning as L

    from dllab.data.datamodule import build_datamodule
    from dllab.training.module import module_class

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    _, loop_kwargs, data_kwargs = split_trainer_config(cfg.trainer)
    if datamodule is None:
        with blame_user_code(cfg, "data._target_"):
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
    with blame_user_code(cfg, "model._target_"):  # __init__ of one's own network, module or loss
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
    if checkpoint is not None:
        check_checkpoint_network(cfg.ckpt_path, checkpoint, module, checkpoint_field(cfg))
    check_monitors_logged(cfg, module.metrics, module.main_metric)
    return datamodule, module


def find_and_use_lr(cfg: Any, module: Any, datamodule: Any, run_dir: Path, loggers: Iterable[Any]) -> dict[str, Any]:
    """Run the range test for ``dllab-train``, set ``optimizer.lr`` of the module and the
    config to the suggestion (the configured lr stays when there is none), log it (run log,
    TensorBoard ``tuner/lr_find_suggestion`` and ``tuner/lr_find`` image) and save lr_find.png."""
    from omegaconf import open_dict

    from dllab.pictures import plots
    from dllab.pictures.callbacks import log_figure
    from dllab.training.tuner import lr_range_test

    accepted = inspect.signature(lr_range_test).parameters
    options = {k: v for k, v in cfg.tuner.items() if k in accepted}
    result = lr_range_test(module, datamodule, seed=int(cfg.seed), **options)
    configured = float(cfg.optimizer.lr)
    if result.suggestion is None:
        log.warning(
            "lr_find: no suggestion (the test stopped after %d steps); keeping optimizer.lr=%g",
            len(result.lrs),
            configured,
        )
        used = configured
    else:
        used = result.suggestion
        log.info("lr_find: suggested lr %.4g (configured %.4g); training with it", used, configured)
    module.hparams["optimizer"]["lr"] = used
    with open_dict(cfg):
        cfg.optimizer.lr = used
    figure = plots.lr_find_figure(result.lrs, result.losses, result.suggestion)
    loggers = list(loggers)
    png = log_figure(loggers, "tuner/lr_find", figure, 0)
    path = Path(run_dir) / "lr_find.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    for logger in loggers:
        logger.log_metrics({"tuner/lr_find_suggestion": used}, step=0)
    return {"suggestion": result.suggestion, "configured_lr": configured, "used_lr": used, "steps": len(result.lrs)}


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
