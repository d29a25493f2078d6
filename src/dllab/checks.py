"""Checks of every user-set field before anything heavy is imported or any data loaded.

Each problem is one :class:`~dllab.errors.ConfigError` line that names the field, the
value and what is allowed. Checks that need the data (a loss that does not fit a
dataset's task, a batch larger than the training split) run as soon as the data is
known, in :mod:`dllab.data.datamodule` and :mod:`dllab.train`.

The config groups that name a class (optimizer, scheduler, trainer, callbacks, loggers) are
checked key by key where the class is one that conf/ ships: their keyword names are kept here
as tuples (tests compare them with the classes' signatures), so that an unknown or misspelt key
is refused before torch is imported, not by a TypeError after the data is loaded.

Three checks need more than the config, and run in :func:`dllab.runs.build.build`:
:func:`check_targets` (the classes named by ``_target_``, once torch is imported),
:func:`check_monitors_logged` (the metric names a module of one's own or a table's task logs)
and :func:`check_batch_norm_batches` (the training split's size).
"""

from __future__ import annotations

import inspect
import math
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from dllab.catalog import (
    ACTIVATIONS,
    ALL_LOSSES,
    AUTO,
    LOSSES,
    MAIN_METRIC,
    METRICS,
    POOLING,
    metric_mode,
)
from dllab.data.source import fail as _fail
from dllab.data.source import is_int as _is_int
from dllab.data.source import is_number as _is_number
from dllab.data.source import no_images, source_of
from dllab.errors import ConfigError

PLOTS = ("decision_boundary", "regression_fit", "function_fit", "confusion_matrix", "curves")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
CLIP_ALGORITHMS = ("norm", "value")
SEED_MAX = 2**32 - 1  # Lightning's seed_everything and numpy take seeds in [0, 2**32 - 1]
MAX_DPI = 600  # a figure 8 inches wide is 4800 pixels then; far larger ones exhaust the memory
MAX_RESOLUTION = 1000  # grid points per axis of a decision boundary: 10**6 predictions per picture

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

Rule = tuple[Callable[[Any], bool], str]  # (is the value allowed, what is allowed)


# --- small helpers ------------------------------------------------------------------------


def _int(cfg: DictConfig, field: str, low: int, allowed: str | None = None) -> None:
    value = _get(cfg, field)
    if not _is_int(value) or value < low:
        raise _fail(field, value, allowed or f"must be an integer >= {low}")


def _number(cfg: DictConfig, field: str, ok: Callable[[float], bool], allowed: str) -> None:
    value = _get(cfg, field)
    if not _is_number(value) or not ok(value):
        raise _fail(field, value, allowed)


def _choice(cfg: DictConfig, field: str, choices: Iterable[str]) -> None:
    value = _get(cfg, field)
    choices = tuple(choices)
    if value not in choices:
        raise _fail(field, value, f"unknown; choose one of {', '.join(choices)}")


def _get(cfg: DictConfig, field: str) -> Any:
    """The value at a dotted path; None where a part is missing (a deleted key reads as unset)."""
    node: Any = cfg
    for part in field.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, ListConfig))


def _integer(low: int, high: int | None = None, null: bool = False, what: str = "") -> Rule:
    """Integers in [low, high]; ``what`` says what the number means."""
    span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    allowed = f"must be {'null or ' if null else ''}{span}{f' ({what})' if what else ''}"
    return (lambda v: (null and v is None) or (_is_int(v) and low <= v and (high is None or v <= high))), allowed


def _real(ok: Callable[[float], bool], allowed: str, null: bool = False) -> Rule:
    return (lambda v: (null and v is None) or (_is_number(v) and ok(v))), allowed


def _one_of(*choices: Any, null: bool = False) -> Rule:
    shown = ", ".join(str(c) for c in choices)
    return (lambda v: (null and v is None) or (isinstance(v, (str, bool)) and v in choices)), (
        f"unknown; choose one of {shown}{', or null' if null else ''}"
    )


BOOL: Rule = (lambda v: isinstance(v, bool), "must be true or false")
BOOL_OR_NULL: Rule = (lambda v: v is None or isinstance(v, bool), "must be true, false or null")
TEXT: Rule = (lambda v: isinstance(v, str) and bool(v), "must be a non-empty text")
TEXT_OR_NULL: Rule = (lambda v: v is None or (isinstance(v, str) and bool(v)), "must be null or a non-empty text")
NON_NEGATIVE: Rule = _real(lambda v: v >= 0, "must be a number >= 0")


def _apply(field: str, value: Any, rule: Rule) -> None:
    ok, allowed = rule
    if not ok(value):
        raise _fail(field, value, allowed)


def _unknown_keys(group: str, node: DictConfig, keys: Sequence[str], owner: str) -> None:
    """Refuse the first key of ``node`` that is not in ``keys`` (nor ``_target_``)."""
    unknown = [k for k in node if k not in (*keys, "_target_")]
    if unknown:
        listed = ", ".join(keys) if keys else "none"
        raise _fail(f"{group}.{unknown[0]!s}", node.get(unknown[0]), f"unknown key of {owner}; its keys: {listed}")


def _short(target: str) -> str:
    return target.rsplit(".", 1)[-1]


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
        raise _fail("module", module, "must be null or a class path, e.g. my_pkg.modules.MyModule")
    check_data(cfg.data)
    check_task_name(cfg)  # after the data: it follows data.name unless set
    check_augmentation(cfg)
    check_model(cfg)
    check_optimizer(cfg)
    check_scheduler(cfg)
    check_trainer(cfg)
    check_plots_and_tuner(cfg)
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
            raise _fail(str(key), value, f"unknown top-level key; dllab-train reads {', '.join(TOP_LEVEL_KEYS)}")
    for group in REQUIRED_GROUPS:
        if not isinstance(cfg.get(group), DictConfig):
            raise _fail(group, cfg.get(group), f"required; choose one with {group}=<option> (dllab-train --help)")
    check_seed("seed", cfg.get("seed"))
    _unknown_keys("paths", cfg.paths, PATHS_KEYS, "paths")
    for key in PATHS_KEYS:
        _apply(f"paths.{key}", cfg.paths.get(key), NON_NEGATIVE if key == "min_free_mb" else TEXT)
    if not isinstance(cfg.get("optimized_metric"), str):
        raise _fail("optimized_metric", cfg.get("optimized_metric"), "must be auto or a logged metric, e.g. val/loss")
    for field in ("resume", "ckpt_path"):
        _apply(field, cfg.get(field), TEXT_OR_NULL)
    for field in ("print_config", "verbose"):
        if field in cfg:
            _apply(field, cfg.get(field), BOOL)


def check_task_name(cfg: DictConfig) -> None:
    """``task_name`` names the run's folder under ``paths.log_dir``: one plain folder name, or
    the run would be written elsewhere (``../../x``) or in nested folders. Where it follows
    another field (``${data.name}``, the default), that field is named."""
    name = cfg.get("task_name")
    text = str(name) if _is_int(name) else name
    if isinstance(text, str) and text and not text.startswith(".") and "/" not in text and "\\" not in text:
        return
    rule = "(not empty, no / or \\, not starting with .)"
    raw = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["task_name"]))  # as written: ${data.name}?
    followed = re.fullmatch(r"\$\{([\w.]+)\}", str(raw.get("task_name")) if isinstance(raw, dict) else "")
    if followed:
        field, follows = followed.group(1), "names the run's folder (task_name follows it), so it"
        raise _fail(field, name, f"{follows} must be a plain folder name {rule}; or set task_name")
    raise _fail("task_name", name, f"must be a plain folder name under paths.log_dir {rule}")


def check_seed(field: str, value: Any) -> None:
    if not _is_int(value) or not 0 <= value <= SEED_MAX:
        raise _fail(field, value, f"must be a non-negative integer up to {SEED_MAX} (2**32 - 1, the seed range)")


def check_threads(value: Any) -> int | None:
    """``threads`` (dllab-train, dllab-eval, dllab-landscape): null, torch's default, or a
    positive integer (a number given as text on dllab-landscape's command line counts);
    returns it as an int, or None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is not None and (not _is_int(value) or value < 1):
        raise _fail("threads", value, "must be null (torch's default) or a positive integer")
    return value


def check_checkpoints(cfg: DictConfig) -> None:
    """dllab.training.checkpointing.BestCheckpoint writes on a time budget; last.ckpt is LastCheckpoint's."""
    best = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    for field in ("every_n_train_steps", "train_time_interval"):
        if best.get(field):
            raise _fail(
                f"callbacks.model_checkpoint.{field}",
                best.get(field),
                "not supported: dllab checks for a new best once per epoch (a checkpoint inside an epoch "
                "cannot be resumed exactly); use every_n_epochs",
            )
    if best.get("save_last") and best.get("write_every_seconds", 0) > 0:
        raise _fail(
            "callbacks.model_checkpoint.save_last",
            best.get("save_last"),
            "not with write_every_seconds > 0 (last.ckpt is callbacks.last_checkpoint's); use false",
        )


# --- data, model, loss --------------------------------------------------------------------


def check_data(data: DictConfig) -> None:
    """The DataModule's keys, then the source: its ``_target_``, no key that neither takes,
    and the source's own ``check`` (built from the config, nothing loaded)."""
    for field in ("batch_size", "eval_batch_size"):
        value = data.get(field)
        if not _is_int(value) or value < 1:
            raise _fail(f"data.{field}", value, "must be a positive integer")
    for field in ("val_fraction", "test_fraction"):
        value = data.get(field)
        if not _is_number(value) or not 0 < value < 1:
            raise _fail(f"data.{field}", value, "must be a fraction in (0, 1)")
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {data.val_fraction + data.test_fraction:g}: "
            "leaves no training data; the sum must be below 1"
        )
    if not isinstance(data.get("standardize"), bool):
        raise _fail("data.standardize", data.get("standardize"), "must be true or false")
    if "name" in data and not (isinstance(data.get("name"), str) and data.get("name")):
        raise _fail("data.name", data.get("name"), "must be a non-empty text: the dataset's name")
    if "seed" in data:  # the split's seed (default: the run's seed)
        check_seed("data.seed", data.get("seed"))
    source_of(data).check()


MLP_TARGET = "dllab.models.mlp.MLP"
CNN_TARGET = "dllab.models.cnn.CNN"
# The config keys of dllab's own networks (a test keeps them in step with their signatures).
NETWORK_KEYS = {
    MLP_TARGET: ("hidden_sizes", "activation", "dropout", "batch_norm"),
    CNN_TARGET: ("channels", "kernel_size", "pooling", "activation", "hidden_sizes", "dropout", "batch_norm"),
}


def check_model(cfg: DictConfig) -> None:
    """dllab's own networks (MLP, CNN) are checked key by key here, torch-free; any other
    ``model._target_`` is checked against its class's signature when it is built, before
    training (:func:`dllab.models.network.build_network`)."""
    target = cfg.model.get("_target_", MLP_TARGET)
    if not isinstance(target, str) or "." not in target:
        raise _fail("model._target_", target, "must be a class path, e.g. dllab.models.mlp.MLP or my_pkg.nets.MyNet")
    if target in NETWORK_KEYS:
        _check_network_options(cfg, target)
    if target == CNN_TARGET and source_of(cfg.data).image_shape is None:
        raise no_images("model=cnn", cfg.data.name, "a CNN needs", "model=mlp")
    check_loss(cfg)


def _check_network_options(cfg: DictConfig, target: str) -> None:
    model = cfg.model
    keys = NETWORK_KEYS[target]
    unknown = [k for k in model if k not in (*keys, "_target_")]
    if unknown:
        name = target.rsplit(".", 1)[-1]
        raise _fail(f"model.{unknown[0]}", model[unknown[0]], f"unknown key of {name}; its keys: {', '.join(keys)}")
    hidden = model.get("hidden_sizes")
    if not isinstance(hidden, (list, ListConfig)) or not all(_is_int(h) and h > 0 for h in hidden):
        raise _fail("model.hidden_sizes", hidden, "must be a list of positive integers, e.g. [64,64]")
    _choice(cfg, "model.activation", ACTIVATIONS)
    _number(cfg, "model.dropout", lambda v: 0 <= v < 1, "must be a number in [0, 1)")
    if not isinstance(model.get("batch_norm"), bool):
        raise _fail("model.batch_norm", model.get("batch_norm"), "must be true or false")
    if target == CNN_TARGET:
        channels = model.get("channels")
        if (
            not isinstance(channels, (list, ListConfig))
            or not channels
            or not all(_is_int(c) and c > 0 for c in channels)
        ):
            raise _fail("model.channels", channels, "must be a non-empty list of positive integers, e.g. [32,64]")
        _int(cfg, "model.kernel_size", 1, "must be a positive integer")
        _choice(cfg, "model.pooling", POOLING)
    if model.batch_norm and cfg.data.batch_size == 1:
        raise _fail(
            "data.batch_size",
            1,
            "model.batch_norm=true needs training batches of 2 or more samples (BatchNorm cannot train on one); "
            "use a larger data.batch_size or model.batch_norm=false",
        )


def processes(trainer: DictConfig) -> int:
    """The training processes the trainer config starts: devices per node times nodes (one for
    ``devices: auto`` on the CPU, every GPU there is on a GPU)."""
    devices = trainer.get("devices", "auto")
    if devices == "auto":
        devices = (gpu_count() or 1) if device_kind(str(trainer.get("accelerator", "auto"))) == "cuda" else 1
    count = len(devices) if _is_list(devices) else int(devices)
    return count * int(trainer.get("num_nodes", 1))


def check_batch_norm_batches(cfg: DictConfig, train_samples: int, world_size: int | None = None) -> None:
    """With ``model.batch_norm=true``, refuse a batch size that leaves a last batch of 1 sample in
    each epoch (the training split is not a multiple of it): BatchNorm cannot train on one sample,
    and the in-memory loop keeps the epoch's last, smaller batch. Needs the training split's size
    (after ``trainer.overfit_batches``) and the number of DDP processes, each of which trains on an
    equal share, cut to ``trainer.limit_train_batches`` (as :class:`dllab.data.datamodule.TrainEpochs`);
    without ``world_size``, the processes the trainer config starts (:func:`processes`)."""
    if cfg.model.get("_target_", MLP_TARGET) not in NETWORK_KEYS or cfg.model.get("batch_norm") is not True:
        return
    world_size = processes(cfg.trainer) if world_size is None else world_size
    batch_size = int(cfg.data.batch_size)
    samples = math.ceil(train_samples / world_size) if world_size > 1 else train_samples
    limit = cfg.trainer.get("limit_train_batches", 1.0)
    if _is_number(limit):
        cut = int(limit * train_samples) if isinstance(limit, float) else int(limit) * batch_size
        samples = min(samples, cut) if cut < train_samples else samples
    if samples % batch_size != 1:
        return
    near = sorted(range(2, samples + 1), key=lambda b: (abs(b - batch_size), -b))
    fits = next((b for b in near if samples % b != 1), None)
    per = f" per process ({world_size} processes)" if world_size > 1 else ""
    instead = f"e.g. data.batch_size={fits}" if fits else "or model.batch_norm=false"
    raise _fail(
        "data.batch_size",
        batch_size,
        f"with model.batch_norm=true the last batch of each epoch holds 1 of the {samples} training samples{per}, "
        f"and BatchNorm cannot train on one sample; use a batch size that leaves no single sample over, {instead}",
    )


def check_loss(cfg: DictConfig) -> None:
    """dllab's loss names must fit the task; any other name needs a ``loss._target_``."""
    loss = cfg.loss.get("name", AUTO)  # as dllab's module reads it
    target = cfg.loss.get("_target_")
    if not (isinstance(loss, str) and loss):
        raise _fail("loss.name", loss, "must be a loss name (auto, cross_entropy, ...) or, with loss._target_, a label")
    if target is not None and (not isinstance(target, str) or "." not in target):
        raise _fail("loss._target_", target, "must be a class path, e.g. torch.nn.CrossEntropyLoss")
    if loss not in (AUTO, *ALL_LOSSES) and target is None:
        raise _fail(
            "loss.name", loss, f"unknown loss; choose one of {', '.join((AUTO, *ALL_LOSSES))}, or give loss._target_"
        )
    task = source_of(cfg.data).task
    if task != AUTO:  # else known once the data is read
        check_loss_fits(loss, task, f"data={cfg.data.name}")
    if loss not in ALL_LOSSES:
        return  # a loss of one's own: its class checks its arguments
    for field, ok, allowed in (
        ("label_smoothing", lambda v: 0 <= v < 1, "must be a number in [0, 1)"),
        ("margin", lambda v: v > 0, "must be a positive number"),
        ("delta", lambda v: v > 0, "must be a positive number"),
    ):
        if field in cfg.loss:
            _number(cfg, f"loss.{field}", ok, allowed)


def check_loss_fits(loss: str, task: str, data: str) -> None:
    if loss in ALL_LOSSES and loss not in LOSSES[task]:
        raise ConfigError(
            f"loss={loss} does not fit {data}, a {task} task; valid for {task}: {', '.join(LOSSES[task])}"
        )


# --- optimizer and scheduler --------------------------------------------------------------

# The keyword names of the optimizers conf/optimizer ships, but ``params`` (a test compares
# them with torch's signatures). ``fused: auto`` is dllab's (dllab.training.optim.build_optimizer).
OPTIMIZER_KEYS = {
    "torch.optim.Adam": (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "foreach",
        "maximize",
        "capturable",
        "differentiable",
        "fused",
        "decoupled_weight_decay",
    ),
    "torch.optim.AdamW": (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "maximize",
        "foreach",
        "capturable",
        "differentiable",
        "fused",
    ),
    "torch.optim.SGD": (
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "maximize",
        "foreach",
        "differentiable",
        "fused",
    ),
    "torch.optim.RMSprop": (
        "lr",
        "alpha",
        "eps",
        "weight_decay",
        "momentum",
        "centered",
        "capturable",
        "foreach",
        "maximize",
        "differentiable",
    ),
    "torch.optim.Adagrad": (
        "lr",
        "lr_decay",
        "weight_decay",
        "initial_accumulator_value",
        "eps",
        "foreach",
        "maximize",
        "differentiable",
        "fused",
    ),
}
# Options of torch's optimizers that dllab's training loop does not fit, refused when set true.
OPTIMIZER_REFUSED = {
    "maximize": "dllab minimizes the loss (true would climb it); leave it false",
    "capturable": "for CUDA graphs, which dllab's loop does not capture; leave it false",
    "differentiable": "for differentiating through the optimizer step, which dllab's loop does not do; leave it false",
}
OPTIMIZER_RULES: dict[str, Rule] = {
    "lr": _real(lambda v: v > 0, "must be a positive number"),
    "betas": (
        lambda v: _is_list(v) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
        "must be a list of two numbers in [0, 1), e.g. [0.9,0.999]",
    ),
    "eps": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "lr_decay": NON_NEGATIVE,
    "initial_accumulator_value": NON_NEGATIVE,
    "momentum": _real(lambda v: 0 <= v < 1, "must be a number in [0, 1)"),
    "dampening": _real(lambda v: 0 <= v <= 1, "must be a number in [0, 1]"),
    "alpha": _real(lambda v: 0 <= v < 1, "must be a number in [0, 1)"),
    "amsgrad": BOOL,
    "nesterov": BOOL,
    "centered": BOOL,
    "decoupled_weight_decay": BOOL,
    "maximize": BOOL,
    "capturable": BOOL,
    "differentiable": BOOL,
    "foreach": BOOL_OR_NULL,
    "fused": (lambda v: v is None or v == AUTO or isinstance(v, bool), "must be auto, true, false or null"),
}


def check_optimizer(cfg: DictConfig) -> None:
    """dllab's optimizers key by key; another ``optimizer._target_`` checks its own arguments,
    the common ones (lr, weight_decay, ...) are checked here all the same."""
    optimizer = cfg.optimizer
    target = optimizer.get("_target_")
    if not isinstance(target, str) or "." not in target:
        raise _fail("optimizer._target_", target, "must be a class path, e.g. torch.optim.Adam")
    keys = OPTIMIZER_KEYS.get(target)
    if keys is not None:
        _unknown_keys("optimizer", optimizer, keys if "fused" in keys else (*keys, "fused"), _short(target))
    _number(cfg, "optimizer.lr", lambda v: v > 0, "must be a positive number")
    for key, value in optimizer.items():
        if key in OPTIMIZER_RULES:
            _apply(f"optimizer.{key}", value, OPTIMIZER_RULES[key])
        if key in OPTIMIZER_REFUSED and value:
            raise _fail(f"optimizer.{key}", value, OPTIMIZER_REFUSED[key])
    if optimizer.get("nesterov") and (not optimizer.get("momentum") or optimizer.get("dampening")):
        raise ConfigError("optimizer.nesterov=true: needs optimizer.momentum > 0 and optimizer.dampening=0")
    fused = optimizer.get("fused", AUTO)
    if keys is not None and "fused" not in keys and fused not in (AUTO, None):
        raise _fail("optimizer.fused", fused, f"{_short(target)} has no fused kernel; use auto")
    if fused is True and optimizer.get("foreach"):
        raise _fail("optimizer.foreach", True, "not with optimizer.fused=true (torch takes one of them); use null")


# The keyword names of the schedulers conf/scheduler ships, but ``optimizer`` and
# ``last_epoch`` (set by dllab; a resumed run restores the scheduler's state); a test compares
# them with torch's signatures. ``monitor`` is dllab's: the metric ReduceLROnPlateau reads.
SCHEDULER_KEYS = {
    "torch.optim.lr_scheduler.StepLR": ("step_size", "gamma"),
    "torch.optim.lr_scheduler.CosineAnnealingLR": ("T_max", "eta_min"),
    "torch.optim.lr_scheduler.ReduceLROnPlateau": (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lr",
        "eps",
    ),
}
SCHEDULER_OWN_KEYS = {"torch.optim.lr_scheduler.ReduceLROnPlateau": ("monitor",)}
SCHEDULER_RULES: dict[str, Rule] = {
    "step_size": _integer(1, what="epochs between two decays"),
    "gamma": _real(
        lambda v: 0 < v <= 1,
        "must be a number in (0, 1] (the learning rate is multiplied by it every step_size epochs)",
    ),
    "T_max": _integer(
        1,
        what="epochs from optimizer.lr down to eta_min; it follows trainer.max_epochs unless set, so set it "
        "when trainer.max_epochs=-1",
    ),
    "eta_min": NON_NEGATIVE,
    "mode": _one_of("min", "max"),
    "factor": _real(lambda v: 0 < v < 1, "must be a number in (0, 1) (the learning rate is multiplied by it)"),
    "patience": _integer(0, what="epochs without improvement before the learning rate drops"),
    "threshold": NON_NEGATIVE,
    "threshold_mode": _one_of("rel", "abs"),
    "cooldown": _integer(0, what="epochs to wait after a drop"),
    "min_lr": NON_NEGATIVE,
    "eps": NON_NEGATIVE,
    "monitor": (lambda v: isinstance(v, str) and bool(v), "must be a logged metric, e.g. val/loss"),
}


def check_scheduler(cfg: DictConfig) -> None:
    """scheduler=none has no keys; the shipped schedulers are checked key by key; another
    ``scheduler._target_`` checks its own arguments when it is built."""
    scheduler = cfg.scheduler
    target = scheduler.get("_target_")
    if target is None:
        extra = [k for k in scheduler if k != "_target_"]
        if extra:
            raise _fail(
                f"scheduler.{extra[0]}",
                scheduler.get(extra[0]),
                "no scheduler is set (scheduler._target_ is null); choose scheduler=step, cosine or plateau",
            )
        return
    if not isinstance(target, str) or "." not in target:
        raise _fail("scheduler._target_", target, "must be null or a class path, e.g. torch.optim.lr_scheduler.StepLR")
    keys = SCHEDULER_KEYS.get(target)
    if keys is None:
        return
    keys = (*keys, *SCHEDULER_OWN_KEYS.get(target, ()))
    _unknown_keys("scheduler", scheduler, keys, _short(target))
    for key in keys:
        if key in scheduler or key in ("step_size", "T_max"):  # those two have no default
            _apply(f"scheduler.{key}", scheduler.get(key), SCHEDULER_RULES[key])


# --- trainer ------------------------------------------------------------------------------

# The keyword names of Lightning's Trainer (a test compares them with its signature).
TRAINER_KEYWORDS = (
    "accelerator",
    "strategy",
    "devices",
    "num_nodes",
    "precision",
    "logger",
    "callbacks",
    "fast_dev_run",
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "max_time",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "log_every_n_steps",
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "deterministic",
    "benchmark",
    "inference_mode",
    "use_distributed_sampler",
    "profiler",
    "detect_anomaly",
    "barebones",
    "plugins",
    "sync_batchnorm",
    "reload_dataloaders_every_n_epochs",
    "default_root_dir",
    "enable_autolog_hparams",
    "model_registry",
)
# Trainer keywords that dllab sets itself, or whose feature its in-memory loop (a Trainer
# step is a whole epoch, dllab.training.epoch_loop) does not have: they would be silently
# ignored, so they are refused with the reason and what to use instead.
TRAINER_NOT_HONOURED = {
    "logger": "dllab passes the loggers of the logger group; use logger=tensorboard, csv, many or []",
    "callbacks": "dllab passes the callbacks of the callbacks group; add one as callbacks.<name> with a _target_",
    "enable_checkpointing": "set from the callbacks group; switch a checkpoint off with "
    "~callbacks.model_checkpoint or ~callbacks.last_checkpoint (callbacks=none: all)",
    "enable_progress_bar": "set from the callbacks group; switch the bar off with ~callbacks.progress_bar",
    "enable_model_summary": "set from the callbacks group; the layer table is callbacks.model_summary (verbose=true)",
    "val_check_interval": "dllab validates once per epoch (a Trainer step is a whole epoch of its in-memory loop); "
    "use trainer.check_val_every_n_epoch",
    "limit_predict_batches": "dllab-train does not predict; use trainer.limit_test_batches",
    "use_distributed_sampler": "dllab's in-memory loaders give each DDP process its share without a sampler",
    "reload_dataloaders_every_n_epochs": "the splits stay in memory, reshuffled every epoch; nothing is reloaded",
    "barebones": "dllab's runs record their metrics, checkpoints and pictures; switch those off with "
    "logger=[] callbacks=none plots=none",
    "plugins": "not configurable in dllab; precision and devices come from trainer.precision and trainer.devices",
    "enable_autolog_hparams": "dllab logs the run's hyperparameters itself (TensorBoard's HParams tab)",
    "model_registry": "not supported by dllab; the run dir keeps the checkpoints",
}
LIGHTNING_TRAINERS = ("lightning.pytorch.Trainer", "lightning.Trainer", "lightning.pytorch.trainer.trainer.Trainer")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")
# Lightning's strategies that start their workers by spawn or fork: the workers train, and the
# process that records the run sees none of it.
SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")
PROFILERS = ("simple", "advanced", "pytorch")
TIMEDELTA_KEYS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")


def _fraction_or_count(low_count: int, zero_fraction: bool) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, float) and math.isfinite(v):
            return (v >= 0 if zero_fraction else v > 0) and v <= 1
        return _is_int(v) and v >= low_count

    return ok


def _max_time_ok(value: Any) -> bool:
    """null, ``DD:HH:MM:SS`` or a mapping of timedelta units, and longer than nothing."""
    if value is None:
        return True
    if isinstance(value, str):
        parts = re.fullmatch(r"(\d+):(\d+):(\d+):(\d+)", value)
        return parts is not None and any(int(p) for p in parts.groups())
    if isinstance(value, DictConfig):
        units = [(k, v) for k, v in value.items()]
        return (
            bool(units)
            and all(k in TIMEDELTA_KEYS and _is_number(v) and v >= 0 for k, v in units)
            and any(v for _, v in units)
        )
    return False


TRAINER_RULES: dict[str, Rule] = {
    "num_nodes": _integer(1, what="machines"),
    "min_epochs": _integer(0, null=True),
    "min_steps": _integer(0, null=True),
    "max_time": (
        _max_time_ok,
        "must be null, DD:HH:MM:SS (e.g. 00:02:00:00) or a mapping of days, hours, minutes, seconds; longer than 0",
    ),
    "check_val_every_n_epoch": _integer(1, what="validation every that many epochs"),
    "num_sanity_val_steps": _integer(-1, what="-1: the whole validation split, 0: no sanity check"),
    "fast_dev_run": (
        lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0),
        "must be true, false or a number of batches (an integer >= 0)",
    ),
    "limit_train_batches": (
        _fraction_or_count(1, zero_fraction=False),
        "must be a fraction in (0, 1] or a positive number of batches (0 would train nothing)",
    ),
    "limit_val_batches": (
        _fraction_or_count(0, zero_fraction=True),
        "must be a fraction in [0, 1] or a number of batches >= 0 (0: no validation)",
    ),
    "limit_test_batches": (
        _fraction_or_count(0, zero_fraction=True),
        "must be a fraction in [0, 1] or a number of batches >= 0",
    ),
    "overfit_batches": (
        _fraction_or_count(0, zero_fraction=True),
        "must be a fraction in [0, 1] or a number of batches >= 0 (0: off)",
    ),
    "log_every_n_steps": (
        lambda v: v == 1 and _is_int(v),
        "must be 1: a Trainer step is a whole epoch of dllab's in-memory loop, and train/ and val/ values "
        "are logged once per epoch",
    ),
    "deterministic": BOOL,
    "benchmark": BOOL_OR_NULL,
    "inference_mode": BOOL,
    "detect_anomaly": BOOL,
    "sync_batchnorm": BOOL,
    "profiler": _one_of(*PROFILERS, null=True),
    "default_root_dir": TEXT,
}


def check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    target = trainer.get("_target_")
    for key in trainer:
        if key in TRAINER_NOT_HONOURED:
            raise _fail(f"trainer.{key}", trainer.get(key), TRAINER_NOT_HONOURED[key])
        if key != "_target_" and key not in TRAINER_KEYWORDS and target in LIGHTNING_TRAINERS:
            valid = [k for k in TRAINER_KEYWORDS if k not in TRAINER_NOT_HONOURED]
            raise _fail(
                f"trainer.{key}", trainer.get(key), f"unknown key of Lightning's Trainer; its keys: {', '.join(valid)}"
            )
    for field in ("max_epochs", "max_steps"):
        limit = "epoch" if field == "max_epochs" else "step"
        value = trainer.get(field)
        if not _is_int(value) or value < -1 or value == 0:
            raise _fail(
                f"trainer.{field}",
                value,
                f"must be an integer >= -1 (-1: no {limit} limit), not 0 (nothing would train)",
            )
    if trainer.max_epochs == -1 and trainer.max_steps == -1:
        raise ConfigError("trainer.max_epochs=-1 and trainer.max_steps=-1: set at least one limit")
    _int(cfg, "trainer.accumulate_grad_batches", 1, "must be a positive integer")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (not _is_number(clip) or clip <= 0):
        raise _fail("trainer.gradient_clip_val", clip, "must be null or a positive number")
    _choice(cfg, "trainer.gradient_clip_algorithm", CLIP_ALGORITHMS)
    if str(trainer.get("precision")) not in PRECISIONS:
        raise _fail("trainer.precision", trainer.get("precision"), f"choose one of {', '.join(PRECISIONS)}")
    for key, value in trainer.items():
        if key in TRAINER_RULES:
            _apply(f"trainer.{key}", value, TRAINER_RULES[key])
    for field, maximum in (("min_epochs", "max_epochs"), ("min_steps", "max_steps")):
        low, high = trainer.get(field), trainer.get(maximum)
        if low is not None and high != -1 and low > high:
            raise _fail(f"trainer.{field}", low, f"more than trainer.{maximum}={high}")
    check_strategy(trainer.get("strategy"))
    _choice(cfg, "trainer.accelerator", ACCELERATORS)
    check_accelerator_present(trainer.accelerator)
    check_devices(trainer.accelerator, trainer.get("devices"))


def check_strategy(strategy: Any) -> None:
    if isinstance(strategy, str) and strategy.startswith(SPAWNING_STRATEGIES):
        raise _fail(
            "trainer.strategy",
            strategy,
            "its workers are started by spawn or fork and the run records none of their training "
            "(epochs: 0, global_step: 0); use trainer=ddp (trainer.strategy=ddp)",
        )
    if strategy not in STRATEGIES:
        raise _fail(
            "trainer.strategy", strategy, f"unknown or not supported by dllab; choose one of {', '.join(STRATEGIES)}"
        )


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def gpu_count() -> int | None:
    """CUDA GPUs this process may use, without importing torch: CUDA_VISIBLE_DEVICES when set,
    else the NVIDIA driver's list; None when neither tells."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for part in visible.split(","):
            if not part.strip() or part.strip().startswith("-"):
                break  # CUDA stops at the first invalid entry
            ids.append(part)
        return len(ids)
    listed = Path("/proc/driver/nvidia/gpus")
    return len(list(listed.iterdir())) if listed.is_dir() else None


# Set where a cluster starts one process per device itself (SLURM, torchrun): each process then
# sees only its own share of the cores and GPUs, so their count says nothing about trainer.devices.
CLUSTER_ENV = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID")


def started_by_cluster() -> bool:
    return any(name in os.environ for name in CLUSTER_ENV)


def device_kind(accelerator: str) -> str:
    """What ``accelerator`` runs on here: cpu, cuda or mps (``auto`` as Lightning picks it)."""
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        if cuda_driver_present() and gpu_count() != 0:
            return "cuda"
        return "mps" if sys.platform == "darwin" and platform.machine() == "arm64" else "cpu"
    return accelerator


def check_devices(accelerator: str, devices: Any) -> None:
    """A device count or id list that the accelerator has: processes on the CPU up to its cores,
    GPU ids that exist (where the driver tells), one MPS device."""
    ids = _is_list(devices) and bool(devices) and all(_is_int(d) and d >= 0 for d in devices)
    if not (devices == "auto" or (_is_int(devices) and devices >= 1) or (ids and len(set(devices)) == len(devices))):
        raise _fail("trainer.devices", devices, "must be 'auto', a positive integer or a list of device ids")
    kind = device_kind(accelerator)
    counted = not started_by_cluster()
    if kind == "cpu":
        cores = cpu_cores()
        if _is_list(devices):
            raise _fail(
                "trainer.devices",
                devices,
                f"a list of device ids is for GPUs; on the CPU give a number of processes (at most {cores}, "
                "the CPU cores here)",
            )
        if counted and _is_int(devices) and devices > cores:
            raise _fail(
                "trainer.devices",
                devices,
                f"more processes than the {cores} CPU cores here; use at most trainer.devices={cores} on the CPU",
            )
    elif kind == "cuda":
        count = gpu_count() if counted else None
        wanted = max(devices) + 1 if _is_list(devices) else devices
        if count and _is_int(wanted) and wanted > count:
            raise _fail("trainer.devices", devices, f"this machine has {count} GPU(s) (ids 0 to {count - 1})")
    elif kind == "mps" and devices not in ("auto", 1) and not (_is_list(devices) and list(devices) == [0]):
        raise _fail("trainer.devices", devices, "Apple MPS is one device; use trainer.devices=1")


def cuda_driver_present() -> bool:
    """Cheap test (no torch import) for an NVIDIA driver on this machine."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def check_accelerator_present(accelerator: str, torch_checked: bool = False) -> None:
    """A GPU or MPS asked for and absent is an error, not a silent fallback to the CPU."""
    if accelerator in ("gpu", "cuda"):
        present = cuda_driver_present()
        if present and torch_checked:
            import torch

            present = torch.cuda.is_available()
        if not present:
            raise ConfigError(
                f"trainer.accelerator={accelerator}: no CUDA GPU on this machine; "
                "use trainer=cpu (or trainer=default, which picks what is there)"
            )
    if accelerator == "mps" and not (sys.platform == "darwin" and platform.machine() == "arm64"):
        raise ConfigError(
            "trainer.accelerator=mps: Apple MPS needs a Mac with Apple silicon; "
            "use trainer=cpu (or trainer=default, which picks what is there)"
        )


# --- pictures and tuner -------------------------------------------------------------------

TUNER_KEYS = (
    "lr_find",
    "min_lr",
    "max_lr",
    "num_training",
    "early_stop_threshold",
    "eval_samples",
    "beta",
    "batch_size_find",
    "batch_size_max_trials",
    "batch_size_steps_per_trial",
)


TUNER_RULES: dict[str, Rule] = {
    "lr_find": BOOL,
    "batch_size_find": BOOL,
    "min_lr": _real(lambda v: v > 0, "must be a positive number"),
    "max_lr": _real(lambda v: v > 0, "must be a positive number"),
    "num_training": _integer(10, what="optimizer steps of the range test"),
    "early_stop_threshold": _real(lambda v: v > 1, "must be null or a number > 1", null=True),
    "eval_samples": _integer(1),
    "beta": _real(lambda v: 0 <= v < 1, "must be a number in [0, 1) (the smoothing of the loss)"),
    "batch_size_max_trials": _integer(1),
    "batch_size_steps_per_trial": _integer(1),
}


def check_plots_and_tuner(cfg: DictConfig) -> None:
    """plots.* (pictures of the run) and tuner.* (the learning-rate range test, the batch-size finder)."""
    plots = cfg.get("plots")
    if plots is not None:
        for field, value in plots.items():
            if field in ("enabled", *PLOTS) and not isinstance(value, bool):
                raise _fail(f"plots.{field}", value, "must be true or false")
            if field not in ("enabled", "dirpath", "every_n_epochs", "resolution", "dpi", *PLOTS):
                raise _fail(f"plots.{field}", value, f"unknown key; pictures are {', '.join(PLOTS)}")
        for field, rule in (
            ("every_n_epochs", _integer(1)),
            ("resolution", _integer(10, MAX_RESOLUTION, what="grid points per axis")),
            ("dpi", _integer(20, MAX_DPI, what="dots per inch")),
            ("dirpath", TEXT),
        ):
            if field in plots:
                _apply(f"plots.{field}", plots.get(field), rule)
    tuner = cfg.get("tuner")
    if tuner is None:
        return
    _unknown_keys("tuner", tuner, TUNER_KEYS, "the tuner")
    for key in tuner:  # also while lr_find and batch_size_find are off: a bad value is a mistake all the same
        _apply(f"tuner.{key}", tuner.get(key), TUNER_RULES[str(key)])
    if _is_number(tuner.get("min_lr")) and _is_number(tuner.get("max_lr")) and tuner.max_lr <= tuner.min_lr:
        raise _fail("tuner.max_lr", tuner.max_lr, f"must be a number > tuner.min_lr={tuner.min_lr}")


# --- callbacks and what they monitor ------------------------------------------------------

_MODEL_CHECKPOINT_KEYS = (
    "dirpath",
    "filename",
    "monitor",
    "verbose",
    "save_last",
    "save_top_k",
    "save_on_exception",
    "save_weights_only",
    "mode",
    "auto_insert_metric_name",
    "every_n_train_steps",
    "train_time_interval",
    "every_n_epochs",
    "save_on_train_epoch_end",
    "enable_version_counter",
)
# The keyword names of the callbacks conf/callbacks and conf/hparams_search name (a test
# compares them with their signatures); ``enabled`` is dllab's (dllab.runs.config.instantiate_enabled).
CALLBACK_KEYS = {
    "dllab.training.checkpointing.BestCheckpoint": (*_MODEL_CHECKPOINT_KEYS, "write_every_seconds", "tie_breaker"),
    "lightning.pytorch.callbacks.ModelCheckpoint": _MODEL_CHECKPOINT_KEYS,
    "dllab.training.checkpointing.LastCheckpoint": ("dirpath", "filename", "every_seconds"),
    "lightning.pytorch.callbacks.EarlyStopping": (
        "monitor",
        "min_delta",
        "patience",
        "verbose",
        "mode",
        "strict",
        "check_finite",
        "stopping_threshold",
        "divergence_threshold",
        "check_on_train_epoch_end",
        "log_rank_zero_only",
    ),
    "lightning.pytorch.callbacks.LearningRateMonitor": ("logging_interval", "log_momentum", "log_weight_decay"),
    "lightning.pytorch.callbacks.ModelSummary": ("max_depth",),
    "dllab.training.callbacks.EpochProgressBar": ("refresh_seconds",),
    "dllab.training.callbacks.DataSummary": (),
    "dllab.data.augmentation.AugmentationPreview": ("n_images", "tag"),
    "dllab.sweeps.pruning.OptunaPruning": ("storage", "study_name", "trial_id", "monitor"),
}
CALLBACK_RULES: dict[str, Rule] = {
    "dirpath": TEXT_OR_NULL,
    "filename": TEXT_OR_NULL,
    "tag": TEXT,
    "monitor": TEXT_OR_NULL,
    "tie_breaker": TEXT_OR_NULL,
    "mode": _one_of("min", "max"),
    "save_last": (lambda v: v is None or isinstance(v, bool) or v == "link", "must be true, false, link or null"),
    "save_top_k": _integer(-1, what="-1: every epoch, 0: none"),
    "every_n_epochs": _integer(0, null=True),
    "write_every_seconds": NON_NEGATIVE,
    "every_seconds": NON_NEGATIVE,
    "refresh_seconds": NON_NEGATIVE,
    "patience": _integer(0, what="validations without improvement before stopping"),
    "min_delta": NON_NEGATIVE,
    "stopping_threshold": _real(lambda v: True, "must be null or a number", null=True),
    "divergence_threshold": _real(lambda v: True, "must be null or a number", null=True),
    "logging_interval": _one_of("epoch", "step", null=True),
    "max_depth": _integer(-1, what="-1: every layer"),
    "n_images": _integer(1),
    "storage": TEXT_OR_NULL,
    "study_name": TEXT_OR_NULL,
    "trial_id": _integer(0, null=True),
    **dict.fromkeys(
        ("verbose", "save_on_exception", "save_weights_only", "auto_insert_metric_name", "enable_version_counter"),
        BOOL,
    ),
    **dict.fromkeys(("strict", "check_finite", "log_rank_zero_only", "log_momentum", "log_weight_decay"), BOOL),
    **dict.fromkeys(("save_on_train_epoch_end", "check_on_train_epoch_end"), BOOL_OR_NULL),
}


# The keys of those callbacks and loggers that have no default (a test compares them with the
# signatures): a config that deletes one (~logger.csv.save_dir) would fail when it is built.
REQUIRED_KEYS = {
    "dllab.training.checkpointing.LastCheckpoint": ("dirpath",),
    "lightning.pytorch.callbacks.EarlyStopping": ("monitor",),
    "dllab.training.loggers.TensorBoardLogger": ("save_dir",),
    "lightning.pytorch.loggers.CSVLogger": ("save_dir",),
}


def _required_keys(field: str, node: DictConfig, target: str) -> None:
    for key in REQUIRED_KEYS.get(target, ()):
        if node.get(key) is None:
            raise ConfigError(f"{field}.{key}: required by {_short(target)}; set {field}.{key}=...")


def check_callbacks(cfg: DictConfig) -> None:
    """Each entry of the callbacks group: a class with a ``_target_`` (or null), ``enabled``
    true or false, and for the callbacks dllab ships, known keys with valid values."""
    callbacks = cfg.get("callbacks")
    if callbacks is None:
        return
    for name in callbacks:
        node = callbacks.get(name)
        if node is None:
            continue
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if not isinstance(target, str) or "." not in target:
            raise _fail(f"callbacks.{name}", node, "must be a callback: a mapping with a _target_ (its class), or null")
        if "enabled" in node:
            _apply(f"callbacks.{name}.enabled", node.get("enabled"), BOOL)
        keys = CALLBACK_KEYS.get(target)
        if keys is None:
            continue  # a callback of one's own: its class checks its arguments
        _unknown_keys(f"callbacks.{name}", node, (*keys, "enabled"), _short(target))
        _required_keys(f"callbacks.{name}", node, target)
        for key in node:
            if key in CALLBACK_RULES and key in keys:
                _apply(f"callbacks.{name}.{key}", node.get(key), CALLBACK_RULES[key])


_TENSORBOARD_KEYS = ("save_dir", "name", "version", "log_graph", "default_hp_metric", "prefix", "sub_dir")
# The keyword names of the loggers conf/logger ships (a test compares them with their signatures);
# ``enabled`` is dllab's. Lightning's TensorBoardLogger hands other keys to torch's SummaryWriter.
LOGGER_KEYS = {
    "dllab.training.loggers.TensorBoardLogger": (*_TENSORBOARD_KEYS, "flush_seconds"),
    "lightning.pytorch.loggers.CSVLogger": ("save_dir", "name", "version", "prefix", "flush_logs_every_n_steps"),
}
LOGGER_RULES: dict[str, Rule] = {
    "save_dir": TEXT,
    "name": (lambda v: v is None or isinstance(v, str), "must be a text or null"),
    "version": (
        lambda v: v is None or isinstance(v, str) or (_is_int(v) and v >= 0),
        "must be null (the next free number), a number >= 0 or a text",
    ),
    "prefix": (lambda v: isinstance(v, str), "must be a text"),
    "sub_dir": TEXT_OR_NULL,
    "log_graph": BOOL,
    "default_hp_metric": BOOL,
    "flush_seconds": NON_NEGATIVE,
    "flush_logs_every_n_steps": _integer(1),
}


def check_loggers(cfg: DictConfig) -> None:
    """Each entry of the logger group: a class with a ``_target_`` (or null); dllab's loggers
    key by key. No logger at all (``logger=[]``, ``~logger``) is fine."""
    loggers = cfg.get("logger")
    if loggers is None:
        return
    if not isinstance(loggers, DictConfig):
        raise _fail("logger", loggers, "must be a mapping of loggers (logger=tensorboard, csv, many or [])")
    for name in loggers:
        node = loggers.get(name)
        if node is None:
            continue
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if not isinstance(target, str) or "." not in target:
            raise _fail(f"logger.{name!s}", node, "must be a logger: a mapping with a _target_ (its class), or null")
        if "enabled" in node:
            _apply(f"logger.{name!s}.enabled", node.get("enabled"), BOOL)
        keys = LOGGER_KEYS.get(target)
        if keys is None:
            continue
        _unknown_keys(f"logger.{name!s}", node, (*keys, "enabled"), _short(target))
        _required_keys(f"logger.{name!s}", node, target)
        for key in node:
            if key in LOGGER_RULES:
                _apply(f"logger.{name!s}.{key!s}", node.get(key), LOGGER_RULES[str(key)])


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
        node = _get(cfg, parent)
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
    """The classes the optimizer, scheduler, trainer, callbacks and loggers name by ``_target_``
    exist, are of the right kind and take the keys given: one line naming the field, where
    Hydra's ``instantiate`` would raise a multi-line error after the data is loaded. The config
    checks cannot tell ``torch.optim.Adamm`` from ``torch.optim.Adam`` without importing torch;
    this imports the classes, so it runs once the run imports torch anyway (:func:`dllab.runs.build.build`).
    A class that takes ``**kwargs`` checks its keys itself."""
    import lightning.pytorch as pl
    import torch

    from dllab.targets import import_class

    named: tuple[tuple[str, type | None], ...] = (("model", torch.nn.Module), ("loss", None))
    for field, base in named:  # their keys: dllab's builders check them
        if cfg[field].get("_target_") is not None:
            import_class(cfg[field]._target_, f"{field}._target_", base)
    groups: list[tuple[str, Any, type, tuple[str, ...]]] = [
        ("optimizer", cfg.optimizer, torch.optim.Optimizer, ("fused",)),  # fused: auto is dllab's
        ("scheduler", cfg.scheduler, object, ("monitor",)),  # monitor: dllab's, for ReduceLROnPlateau
        ("trainer", cfg.trainer, pl.Trainer, ()),
    ]
    groups += [(f"callbacks.{k}", v, pl.Callback, ("enabled",)) for k, v in (cfg.get("callbacks") or {}).items()]
    groups += [(f"logger.{k}", v, pl.loggers.Logger, ("enabled",)) for k, v in (cfg.get("logger") or {}).items()]
    schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for field, node, base, own in groups:
        if not isinstance(node, DictConfig) or node.get("_target_") is None:
            continue
        cls = import_class(node.get("_target_"), f"{field}._target_", None if base is object else base)
        if field == "scheduler" and not issubclass(cls, schedulers):
            raise ConfigError(f"scheduler._target_={node._target_}: not a learning-rate scheduler of torch.optim")
        parameters = inspect.signature(cls).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        takes = [k for k in parameters if k not in ("self", "params", "optimizer")]
        unknown = [k for k in node if k not in (*takes, *own, "_target_")]
        if unknown:
            raise _fail(
                f"{field}.{unknown[0]!s}",
                node.get(unknown[0]),
                f"unknown key of {cls.__name__}; its keys: {', '.join(takes)}",
            )


# --- augmentation ---------------------------------------------------------------------------


def check_augmentation(cfg: DictConfig) -> None:
    """Augmentation is a list of kornia transforms, and only for image data."""
    augmentation = cfg.get("augmentation")
    if augmentation is None:
        return
    _unknown_keys("augmentation", augmentation, ("name", "transforms"), "augmentation")
    if "name" in augmentation:
        _apply("augmentation.name", augmentation.get("name"), TEXT)
    transforms = augmentation.get("transforms")
    if not isinstance(transforms, (list, ListConfig)):
        raise _fail("augmentation.transforms", transforms, "must be a list of kornia augmentations")
    for i, spec in enumerate(transforms):
        if not isinstance(spec, DictConfig) or not isinstance(spec.get("_target_"), str):
            raise _fail(f"augmentation.transforms[{i}]", spec, "must be a mapping with a _target_ (a kornia class)")
    if transforms and source_of(cfg.data).image_shape is None:
        raise no_images(
            f"augmentation={augmentation.get('name')}", cfg.data.name, "augmentation works on", "augmentation=none"
        )
