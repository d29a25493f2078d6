"""Checks of every user-set field before anything heavy is imported or any data loaded.

Each problem is one :class:`~dllab.errors.ConfigError` line that names the field, the
value and what is allowed. Checks that need the data (a loss that does not fit a
dataset's task, a batch larger than the training split) run as soon as the data is
known, in :mod:`dllab.data.datamodule` and :mod:`dllab.train`.
"""

from __future__ import annotations

import platform
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from dllab.catalog import ACTIVATIONS, ALL_LOSSES, AUTO, LOSSES, POOLING
from dllab.data.source import fail as _fail
from dllab.data.source import image_sets, source_of
from dllab.data.source import is_int as _is_int
from dllab.data.source import is_number as _is_number
from dllab.errors import ConfigError

PLOTS = ("decision_boundary", "regression_fit", "function_fit", "confusion_matrix", "curves")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
CLIP_ALGORITHMS = ("norm", "value")


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
    node: Any = cfg
    for part in field.split("."):
        node = node[part]
    return node


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad field of a composed training config."""
    _int(cfg, "seed", 0, "must be a non-negative integer")
    check_threads(cfg.get("threads"))
    module = cfg.get("module")
    if module is not None and (not isinstance(module, str) or "." not in module):
        raise _fail("module", module, "must be null or a class path, e.g. my_pkg.modules.MyModule")
    check_data(cfg.data)
    check_augmentation(cfg)
    check_model(cfg)
    check_optimizer(cfg)
    check_trainer(cfg)
    check_plots_and_tuner(cfg)
    check_checkpoints(cfg)


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
    source_of(data).check()


def check_plots_and_tuner(cfg: DictConfig) -> None:
    """plots.* (pictures of the run) and tuner.* (the learning-rate range test, the batch-size finder)."""
    plots = cfg.get("plots")
    if plots is not None:
        for field, value in plots.items():
            if field in ("enabled", *PLOTS) and not isinstance(value, bool):
                raise _fail(f"plots.{field}", value, "must be true or false")
            if field not in ("enabled", "dirpath", "every_n_epochs", "resolution", "dpi", *PLOTS):
                raise _fail(f"plots.{field}", value, f"unknown key; pictures are {', '.join(PLOTS)}")
        for field, low in (("every_n_epochs", 1), ("resolution", 10), ("dpi", 20)):
            if field in plots:
                _int(cfg, f"plots.{field}", low)
    tuner = cfg.get("tuner")
    if tuner is not None and tuner.get("lr_find"):
        if not isinstance(tuner.lr_find, bool):
            raise _fail("tuner.lr_find", tuner.lr_find, "must be true or false")
        _number(cfg, "tuner.min_lr", lambda v: v > 0, "must be a positive number")
        _number(cfg, "tuner.max_lr", lambda v: v > tuner.min_lr, f"must be a number > tuner.min_lr={tuner.min_lr}")
        _int(cfg, "tuner.num_training", 10)
        threshold = tuner.get("early_stop_threshold")
        if threshold is not None and (not _is_number(threshold) or threshold <= 1):
            raise _fail("tuner.early_stop_threshold", threshold, "must be null or a number > 1")
    if tuner is not None and tuner.get("batch_size_find"):
        if not isinstance(tuner.batch_size_find, bool):
            raise _fail("tuner.batch_size_find", tuner.batch_size_find, "must be true or false")
        _int(cfg, "tuner.batch_size_max_trials", 1)
        _int(cfg, "tuner.batch_size_steps_per_trial", 1)


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


def check_loss(cfg: DictConfig) -> None:
    """dllab's loss names must fit the task; any other name needs a ``loss._target_``."""
    loss = cfg.loss.get("name")
    target = cfg.loss.get("_target_")
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


def check_optimizer(cfg: DictConfig) -> None:
    _number(cfg, "optimizer.lr", lambda v: v > 0, "must be a positive number")
    for field in ("weight_decay", "momentum", "lr_decay", "alpha", "eps"):
        if field in cfg.optimizer:
            _number(cfg, f"optimizer.{field}", lambda v: v >= 0, "must be a number >= 0")
    if cfg.optimizer.get("nesterov") and not cfg.optimizer.get("momentum"):
        raise ConfigError("optimizer.nesterov=true: needs optimizer.momentum > 0")


def check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    _int(cfg, "trainer.max_epochs", -1, "must be an integer >= -1 (-1: no epoch limit)")
    _int(cfg, "trainer.max_steps", -1, "must be an integer >= -1 (-1: no step limit)")
    if trainer.max_epochs == -1 and trainer.max_steps == -1:
        raise ConfigError("trainer.max_epochs=-1 and trainer.max_steps=-1: set at least one limit")
    _int(cfg, "trainer.accumulate_grad_batches", 1, "must be a positive integer")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (not _is_number(clip) or clip <= 0):
        raise _fail("trainer.gradient_clip_val", clip, "must be null or a positive number")
    _choice(cfg, "trainer.gradient_clip_algorithm", CLIP_ALGORITHMS)
    if str(trainer.get("precision")) not in PRECISIONS:
        raise _fail("trainer.precision", trainer.get("precision"), f"choose one of {', '.join(PRECISIONS)}")
    if not isinstance(trainer.get("deterministic"), bool):
        raise _fail("trainer.deterministic", trainer.get("deterministic"), "must be true or false")
    _choice(cfg, "trainer.accelerator", ACCELERATORS)
    devices = trainer.get("devices")
    if not (devices == "auto" or (_is_int(devices) and devices >= 1) or isinstance(devices, (list, ListConfig))):
        raise _fail("trainer.devices", devices, "must be 'auto', a positive integer or a list of device ids")
    check_accelerator_present(trainer.accelerator)


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


def check_augmentation(cfg: DictConfig) -> None:
    """Augmentation is a list of kornia transforms, and only for image data."""
    augmentation = cfg.get("augmentation")
    if augmentation is None:
        return
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


def no_images(setting: str, data: str, needs: str, instead: str) -> ConfigError:
    """The one error for a setting that needs image data (augmentation, a CNN) on data without."""
    return ConfigError(
        f"{setting}: data={data} holds no images; {needs} image data ({', '.join(image_sets())}); use {instead}"
    )
