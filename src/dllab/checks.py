"""The config checks of a run, in order: every user-set field before anything heavy is
imported or any data loaded (:func:`check_config`), then each class's keys bound to its
signature once torch is imported (:func:`check_targets`).

Each problem is one :class:`~dllab.errors.ConfigError` line that names the field, the value
and what is allowed. The value rules live beside their components, torch-free, built of the
pieces in :mod:`dllab.field_checks`: the data and augmentation (:mod:`dllab.data.config_checks`),
dllab's networks (:mod:`dllab.models.network_checks`), the loss, optimizer and scheduler,
trainer, devices and tuner, callbacks and loggers (``dllab.training.*_checks``), the pictures
(:mod:`dllab.pictures.plot_checks`). Here: the top level, the run's name, the metrics that
things monitor, and the order.

Key names are checked one way, by :func:`dllab.targets.check_keys`: the config node's keys
bound to its class's signature (with the keys dllab passes or reads itself). That needs the
class imported, so it runs in :func:`check_targets`, called by :func:`dllab.runs.build.build`
as soon as torch is imported and before the data is loaded.

Two more checks need more than the config, and run in :func:`dllab.runs.build.build`:
:func:`check_monitors_logged` (the metric names a module of one's own or a table's task logs)
and :func:`check_batch_norm_batches` (the training split's size).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from dllab.catalog import AUTO, MAIN_METRIC, METRICS, metric_mode
from dllab.data.config_checks import check_augmentation, check_data
from dllab.data.source import source_of
from dllab.errors import ConfigError
from dllab.field_checks import (
    BOOL,
    ENTRY_OWN_KEYS,
    NON_NEGATIVE,
    TEXT,
    TEXT_OR_NULL,
    apply,
    check_seed,
    fail,
    get,
    is_int,
    is_number,
    unknown_keys,
)
from dllab.models.network_checks import MLP_TARGET, NETWORKS, check_model
from dllab.pictures.plot_checks import check_plots
from dllab.training.callback_checks import check_callbacks, check_checkpoints
from dllab.training.logger_checks import check_loggers
from dllab.training.loss_checks import check_loss
from dllab.training.optim_checks import (
    SCHEDULER_OWN_KEYS,
    SCHEDULER_PASSED,
    check_optimizer,
    check_optimizer_keys,
    check_scheduler,
)
from dllab.training.trainer_checks import TRAINER_NOT_HONOURED, check_trainer, check_tuner, processes

# The top-level keys of conf/train.yaml composed (a test composes it and compares). Any other
# key (``+train=false``, ``+foo=1``) would be silently ignored, so it is refused.
TOP_LEVEL_KEYS = (
    "data",
    "model",
    "loss",
    "augmentation",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "plots",
    "tuner",
    "paths",
    "task_name",
    "optimized_metric",
    "seed",
    "resume",
    "ckpt_path",
    "module",
    "threads",
    "print_config",
    "verbose",
)
PATHS_KEYS = ("log_dir", "min_free_mb", "data_dir", "output_dir")  # conf/paths/default.yaml
# Groups every run needs; the others may be switched off (logger=[], callbacks=none, ...).
REQUIRED_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer", "paths")

# --- the whole config ---------------------------------------------------------------------


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad field of a composed training config."""
    try:
        _check_config(cfg)
    except MissingMandatoryValue as err:  # a ``???`` left unset that no check names itself
        raise ConfigError(f"{err.full_key}: required; set {err.full_key}=...") from err
    except InterpolationResolutionError as err:  # ${...} that cannot be resolved: one line of OmegaConf's
        message = str(err).splitlines()[0]
        raise ConfigError(f"{err.full_key}: {message}") from err


def _check_config(cfg: DictConfig) -> None:
    check_top_level(cfg)
    check_threads(cfg.get("threads"))
    module = cfg.get("module")
    if module is not None and (not isinstance(module, str) or "." not in module):
        raise fail("module", module, "must be null or a class path, e.g. my_pkg.modules.MyModule")
    check_data(cfg.data)
    check_task_name(cfg)  # after the data: it follows data.name unless set
    check_augmentation(cfg)
    check_model(cfg)
    check_loss(cfg)
    check_trainer(cfg)  # first: the scheduler's defaults follow its limits (T_max: ${trainer.max_epochs})
    check_optimizer(cfg)
    check_scheduler(cfg)
    check_plots(cfg)
    check_tuner(cfg)
    check_callbacks(cfg)
    check_checkpoints(cfg)
    check_loggers(cfg)
    task = source_of(cfg.data).task
    if task != AUTO and not module:  # else the names are known once the data is read / the module built
        check_monitors_logged(cfg, METRICS[task], MAIN_METRIC[task])


def check_top_level(cfg: DictConfig) -> None:
    """No key dllab does not read, the groups a run needs, and the plain top-level values."""
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            value = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [str(key)])).get(key)  # type: ignore[union-attr]
            raise fail(str(key), value, f"unknown top-level key; dllab-train reads {', '.join(TOP_LEVEL_KEYS)}")
    for group in REQUIRED_GROUPS:
        if not isinstance(cfg.get(group), DictConfig):
            raise fail(group, cfg.get(group), f"required; choose one with {group}=<option> (dllab-train --help)")
    check_seed("seed", cfg.get("seed"))
    unknown_keys("paths", cfg.paths, PATHS_KEYS, "paths")
    for key in PATHS_KEYS:
        apply(f"paths.{key}", cfg.paths.get(key), NON_NEGATIVE if key == "min_free_mb" else TEXT)
    if not isinstance(cfg.get("optimized_metric"), str):
        raise fail("optimized_metric", cfg.get("optimized_metric"), "must be auto or a logged metric, e.g. val/loss")
    for field in ("resume", "ckpt_path"):
        apply(field, cfg.get(field), TEXT_OR_NULL)
    for field in ("print_config", "verbose"):
        if field in cfg:
            apply(field, cfg.get(field), BOOL)


def check_task_name(cfg: DictConfig) -> None:
    """``task_name`` names the run's folder under ``paths.log_dir``: one plain folder name, or
    the run would be written elsewhere (``../../x``) or in nested folders. Where it follows
    another field (``${data.name}``, the default), that field is named."""
    name = cfg.get("task_name")
    text = str(name) if is_int(name) else name
    if isinstance(text, str) and text and not text.startswith(".") and "/" not in text and "\\" not in text:
        return
    rule = "(not empty, no / or \\, not starting with .)"
    raw = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["task_name"]))  # as written: ${data.name}?
    followed = re.fullmatch(r"\$\{([\w.]+)\}", str(raw.get("task_name")) if isinstance(raw, dict) else "")
    if followed:
        field, follows = followed.group(1), "names the run's folder (task_name follows it), so it"
        raise fail(field, name, f"{follows} must be a plain folder name {rule}; or set task_name")
    raise fail("task_name", name, f"must be a plain folder name under paths.log_dir {rule}")


def check_threads(value: Any) -> int | None:
    """``threads`` (dllab-train, dllab-eval, dllab-landscape): null, torch's default, or a
    positive integer (a number given as text on dllab-landscape's command line counts);
    returns it as an int, or None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is not None and (not is_int(value) or value < 1):
        raise fail("threads", value, "must be null (torch's default) or a positive integer")
    return value


def check_batch_norm_batches(cfg: DictConfig, train_samples: int, world_size: int | None = None) -> None:
    """With ``model.batch_norm=true``, refuse a batch size that leaves a last batch of 1 sample in
    each epoch (the training split is not a multiple of it): BatchNorm cannot train on one sample,
    and the in-memory loop keeps the epoch's last, smaller batch. Needs the training split's size
    (after ``trainer.overfit_batches``) and the number of DDP processes, each of which trains on an
    equal share, cut to ``trainer.limit_train_batches`` (as :class:`dllab.data.datamodule.TrainEpochs`);
    without ``world_size``, the processes the trainer config starts (:func:`processes`)."""
    if cfg.model.get("_target_", MLP_TARGET) not in NETWORKS or cfg.model.get("batch_norm") is not True:
        return
    world_size = processes(cfg.trainer) if world_size is None else world_size
    batch_size = int(cfg.data.batch_size)
    samples = math.ceil(train_samples / world_size) if world_size > 1 else train_samples
    limit = cfg.trainer.get("limit_train_batches", 1.0)
    if is_number(limit):
        cut = int(limit * train_samples) if isinstance(limit, float) else int(limit) * batch_size
        samples = min(samples, cut) if cut < train_samples else samples
    if samples % batch_size != 1:
        return
    near = sorted(range(2, samples + 1), key=lambda b: (abs(b - batch_size), -b))
    fits = next((b for b in near if samples % b != 1), None)
    per = f" per process ({world_size} processes)" if world_size > 1 else ""
    instead = f"e.g. data.batch_size={fits}" if fits else "or model.batch_norm=false"
    raise fail(
        "data.batch_size",
        batch_size,
        f"with model.batch_norm=true the last batch of each epoch holds 1 of the {samples} training samples{per}, "
        f"and BatchNorm cannot train on one sample; use a batch size that leaves no single sample over, {instead}",
    )


def validates(cfg: DictConfig) -> bool:
    """Whether the run has a validation pass (trainer.limit_val_batches is not 0)."""
    return cfg.trainer.get("limit_val_batches", 1.0) != 0


def logged_metrics(metrics: Sequence[str], main_metric: str, validation: bool = True) -> list[str]:
    """The names a run logs every epoch: ``{val,train}/<metric>`` and ``/loss``, and with
    validation ``val/<main metric>_best``."""
    stages = ("val", "train") if validation else ("train",)
    names = [f"{stage}/{m}" for stage in stages for m in (*metrics, "loss")]
    if validation:
        names.append(f"val/{main_metric}_best")
    return names


def monitors(cfg: DictConfig, optimized: str) -> list[tuple[str, str, str | None]]:
    """Every metric name the config makes something watch, as (field, name, its mode field or
    None): the checkpoint (and its tie-breaker), early stopping, the Optuna pruner, any callback
    of one's own with a ``monitor``, and ReduceLROnPlateau. A value that follows ``optimized_metric``
    while it is still ``auto`` is the metric ``auto`` stands for, ``optimized``."""
    found: list[tuple[str, str, str | None]] = []

    def add(node: DictConfig, key: str, field: str, mode: str | None) -> None:
        value = node.get(key)
        if value is None:
            return
        if value == AUTO and OmegaConf.is_interpolation(node, key):
            value = optimized
        found.append((field, str(value), mode if mode and mode.rsplit(".", 1)[-1] in node else None))

    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig):
            add(node, "monitor", f"callbacks.{name}.monitor", f"callbacks.{name}.mode")
            add(node, "tie_breaker", f"callbacks.{name}.tie_breaker", None)
    scheduler = cfg.scheduler
    if str(scheduler.get("_target_")).endswith("ReduceLROnPlateau"):
        if "monitor" in scheduler:
            add(scheduler, "monitor", "scheduler.monitor", "scheduler.mode")
        else:  # dllab's default (dllab.training.module.TaskModule._step_scheduler)
            found.append(("scheduler.monitor", "val/loss", "scheduler.mode" if "mode" in scheduler else None))
    return found


def check_monitors_logged(cfg: DictConfig, metrics: Sequence[str], main_metric: str) -> None:
    """``optimized_metric`` and every monitored name (:func:`monitors`) must be one the run
    logs, and a mode set by hand must match the metric's direction: a name never logged leaves
    the checkpoint unchosen, early stopping failing at its first check, and the plateau
    scheduler never reducing the learning rate.

    ``metrics`` and ``main_metric`` are the module's (``module.metrics``, ``module.main_metric``).
    :func:`check_config` calls this when the task is known from the config; for data whose task
    only the loaded data tells (a CSV), or a module of one's own, call it once the module is built."""
    validation = validates(cfg)
    names = logged_metrics(metrics, main_metric, validation)
    everything = logged_metrics(metrics, main_metric, True)
    off = "" if validation else " (validation is off: trainer.limit_val_batches=0)"
    optimized = str(cfg.optimized_metric)
    if optimized == AUTO:
        optimized = f"val/{main_metric}" if validation else "train/loss"
    elif optimized not in names:
        raise ConfigError(f"optimized_metric={optimized}: not logged{off}; choose one of {', '.join(names)}")
    for field, name, mode_field in monitors(cfg, optimized):
        # a tie-breaker is only read when it is there: the default val/loss may stay with validation off
        allowed = everything if field.endswith("tie_breaker") else names
        if name not in allowed:
            raise ConfigError(f"{field}={name}: not logged{off}; choose one of {', '.join(allowed)}")
        if mode_field is None:
            continue
        parent, _, key = mode_field.rpartition(".")
        node = get(cfg, parent)
        if not (isinstance(node, DictConfig) and key in node) or OmegaConf.is_interpolation(node, key):
            continue  # a mode that follows the metric (dllab.metric_mode) is right by construction
        mode = node.get(key)
        if mode in ("min", "max") and mode != metric_mode(name):
            raise ConfigError(
                f"{mode_field}={mode}: {name} is {'maximized' if metric_mode(name) == 'max' else 'minimized'}; "
                f"use {mode_field}={metric_mode(name)}"
            )


# --- the classes named by _target_, once torch is imported ----------------------------------------


def check_targets(cfg: DictConfig) -> None:
    """The classes the model, loss, optimizer, scheduler, trainer, callbacks and loggers name by
    ``_target_`` exist, are of the right kind, and take the keys given: each node's keys bound to
    its class's signature (:func:`dllab.targets.check_keys`), one line naming the field where
    Hydra's ``instantiate`` would raise a multi-line error after the data is loaded. This imports
    the classes, so it runs once the run imports torch anyway (:func:`dllab.runs.build.build`).
    A class that takes ``**kwargs`` checks its keys itself."""
    import lightning.pytorch as pl
    import torch

    from dllab.models.network import DATA_SIZES
    from dllab.targets import check_keys, import_class

    network = import_class(cfg.model.get("_target_", MLP_TARGET), "model._target_", torch.nn.Module)
    check_keys("model", cfg.model, network, passed=DATA_SIZES)
    if cfg.loss.get("_target_") is not None:  # its keys: dllab.training.losses.build_loss checks them
        import_class(cfg.loss._target_, "loss._target_")
    check_optimizer_keys(
        cfg.optimizer, import_class(cfg.optimizer._target_, "optimizer._target_", torch.optim.Optimizer)
    )
    if cfg.scheduler.get("_target_") is not None:
        scheduler = import_class(cfg.scheduler._target_, "scheduler._target_")
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau
        if not issubclass(scheduler, (torch.optim.lr_scheduler.LRScheduler, plateau)):
            raise ConfigError(
                f"scheduler._target_={cfg.scheduler._target_}: not a learning-rate scheduler of torch.optim"
            )
        own = SCHEDULER_OWN_KEYS if issubclass(scheduler, plateau) else ()
        check_keys("scheduler", cfg.scheduler, scheduler, SCHEDULER_PASSED, own)
    if cfg.trainer.get("_target_") is not None:
        trainer = import_class(cfg.trainer._target_, "trainer._target_", pl.Trainer)
        owner = "Lightning's Trainer" if trainer is pl.Trainer else None
        check_keys("trainer", cfg.trainer, trainer, TRAINER_NOT_HONOURED, owner=owner)
    from torch.utils.tensorboard import SummaryWriter

    writer = (SummaryWriter, ("log_dir",))  # TensorBoardLogger's **kwargs go to its writer; log_dir it sets
    for group, base in (("callbacks", pl.Callback), ("logger", pl.loggers.Logger)):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, DictConfig) and node.get("_target_") is not None:
                cls = import_class(node._target_, f"{group}.{name}._target_", base)
                forwards = writer if issubclass(cls, pl.loggers.TensorBoardLogger) else None
                check_keys(f"{group}.{name}", node, cls, own=ENTRY_OWN_KEYS, forwards=forwards)
