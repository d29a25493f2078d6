"""The trainer group and the tuner, torch-free: the Trainer's keys dllab sets itself or does not
honour, the values of the others (limits, precision, strategy), and the devices asked for against
what this machine has (CPU cores, GPUs, MPS), without importing torch."""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dllab.errors import ConfigError
from dllab.field_checks import (
    BOOL,
    BOOL_OR_NULL,
    TEXT,
    Rule,
    apply,
    check_choice,
    check_int,
    fail,
    integer,
    is_int,
    is_list,
    is_number,
    one_of,
    real,
    unknown_keys,
)

PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
CLIP_ALGORITHMS = ("norm", "value")
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
        return is_int(v) and v >= low_count

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
            and all(k in TIMEDELTA_KEYS and is_number(v) and v >= 0 for k, v in units)
            and any(v for _, v in units)
        )
    return False


TRAINER_RULES: dict[str, Rule] = {
    "num_nodes": integer(1, what="machines"),
    "min_epochs": integer(0, null=True),
    "min_steps": integer(0, null=True),
    "max_time": (
        _max_time_ok,
        "must be null, DD:HH:MM:SS (e.g. 00:02:00:00) or a mapping of days, hours, minutes, seconds; longer than 0",
    ),
    "check_val_every_n_epoch": integer(1, what="validation every that many epochs"),
    "num_sanity_val_steps": integer(-1, what="-1: the whole validation split, 0: no sanity check"),
    "fast_dev_run": (
        lambda v: isinstance(v, bool) or (is_int(v) and v >= 0),
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
        lambda v: v == 1 and is_int(v),
        "must be 1: a Trainer step is a whole epoch of dllab's in-memory loop, and train/ and val/ values "
        "are logged once per epoch",
    ),
    "deterministic": BOOL,
    "benchmark": BOOL_OR_NULL,
    "inference_mode": BOOL,
    "detect_anomaly": BOOL,
    "sync_batchnorm": BOOL,
    "profiler": one_of(*PROFILERS, null=True),
    "default_root_dir": TEXT,
}


def check_trainer(cfg: DictConfig) -> None:
    """The trainer's values, the keys dllab does not honour, the strategy and the devices; its key
    names are bound to the Trainer's signature once torch is imported."""
    trainer = cfg.trainer
    for key in trainer:
        if key in TRAINER_NOT_HONOURED:
            raise fail(f"trainer.{key}", trainer.get(key), TRAINER_NOT_HONOURED[key])
    for field in ("max_epochs", "max_steps"):
        limit = "epoch" if field == "max_epochs" else "step"
        value = trainer.get(field)
        if not is_int(value) or value < -1 or value == 0:
            raise fail(
                f"trainer.{field}",
                value,
                f"must be an integer >= -1 (-1: no {limit} limit), not 0 (nothing would train)",
            )
    if trainer.max_epochs == -1 and trainer.max_steps == -1:
        raise ConfigError("trainer.max_epochs=-1 and trainer.max_steps=-1: set at least one limit")
    check_int(cfg, "trainer.accumulate_grad_batches", 1, "must be a positive integer")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (not is_number(clip) or clip <= 0):
        raise fail("trainer.gradient_clip_val", clip, "must be null or a positive number")
    check_choice(cfg, "trainer.gradient_clip_algorithm", CLIP_ALGORITHMS)
    if str(trainer.get("precision")) not in PRECISIONS:
        raise fail("trainer.precision", trainer.get("precision"), f"choose one of {', '.join(PRECISIONS)}")
    for key, value in trainer.items():
        if key in TRAINER_RULES:
            apply(f"trainer.{key}", value, TRAINER_RULES[key])
    for field, maximum in (("min_epochs", "max_epochs"), ("min_steps", "max_steps")):
        low, high = trainer.get(field), trainer.get(maximum)
        if low is not None and high != -1 and low > high:
            raise fail(f"trainer.{field}", low, f"more than trainer.{maximum}={high}")
    check_strategy(trainer.get("strategy"))
    check_choice(cfg, "trainer.accelerator", ACCELERATORS)
    check_accelerator_present(trainer.accelerator)
    check_devices(trainer.accelerator, trainer.get("devices"))


def check_strategy(strategy: Any) -> None:
    if isinstance(strategy, str) and strategy.startswith(SPAWNING_STRATEGIES):
        raise fail(
            "trainer.strategy",
            strategy,
            "its workers are started by spawn or fork and the run records none of their training "
            "(epochs: 0, global_step: 0); use trainer=ddp (trainer.strategy=ddp)",
        )
    if strategy not in STRATEGIES:
        raise fail(
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
    ids = is_list(devices) and bool(devices) and all(is_int(d) and d >= 0 for d in devices)
    if not (devices == "auto" or (is_int(devices) and devices >= 1) or (ids and len(set(devices)) == len(devices))):
        raise fail("trainer.devices", devices, "must be 'auto', a positive integer or a list of device ids")
    kind = device_kind(accelerator)
    counted = not started_by_cluster()
    if kind == "cpu":
        cores = cpu_cores()
        if is_list(devices):
            raise fail(
                "trainer.devices",
                devices,
                f"a list of device ids is for GPUs; on the CPU give a number of processes (at most {cores}, "
                "the CPU cores here)",
            )
        if counted and is_int(devices) and devices > cores:
            raise fail(
                "trainer.devices",
                devices,
                f"more processes than the {cores} CPU cores here; use at most trainer.devices={cores} on the CPU",
            )
    elif kind == "cuda":
        count = gpu_count() if counted else None
        wanted = max(devices) + 1 if is_list(devices) else devices
        if count and is_int(wanted) and wanted > count:
            raise fail("trainer.devices", devices, f"this machine has {count} GPU(s) (ids 0 to {count - 1})")
    elif kind == "mps" and devices not in ("auto", 1) and not (is_list(devices) and list(devices) == [0]):
        raise fail("trainer.devices", devices, "Apple MPS is one device; use trainer.devices=1")


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


def processes(trainer: DictConfig) -> int:
    """The training processes the trainer config starts: devices per node times nodes (one for
    ``devices: auto`` on the CPU, every GPU there is on a GPU)."""
    devices = trainer.get("devices", "auto")
    if devices == "auto":
        devices = (gpu_count() or 1) if device_kind(str(trainer.get("accelerator", "auto"))) == "cuda" else 1
    count = len(devices) if is_list(devices) else int(devices)
    return count * int(trainer.get("num_nodes", 1))


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
    "min_lr": real(lambda v: v > 0, "must be a positive number"),
    "max_lr": real(lambda v: v > 0, "must be a positive number"),
    "num_training": integer(10, what="optimizer steps of the range test"),
    "early_stop_threshold": real(lambda v: v > 1, "must be null or a number > 1", null=True),
    "eval_samples": integer(1),
    "beta": real(lambda v: 0 <= v < 1, "must be a number in [0, 1) (the smoothing of the loss)"),
    "batch_size_max_trials": integer(1),
    "batch_size_steps_per_trial": integer(1),
}


def check_tuner(cfg: DictConfig) -> None:
    """tuner.*: the learning-rate range test and the batch-size finder."""
    tuner = cfg.get("tuner")
    if tuner is None:
        return
    unknown_keys("tuner", tuner, TUNER_KEYS, "the tuner")
    for key in tuner:  # also while lr_find and batch_size_find are off: a bad value is a mistake all the same
        apply(f"tuner.{key}", tuner.get(key), TUNER_RULES[str(key)])
    if is_number(tuner.get("min_lr")) and is_number(tuner.get("max_lr")) and tuner.max_lr <= tuner.min_lr:
        raise fail("tuner.max_lr", tuner.max_lr, f"must be a number > tuner.min_lr={tuner.min_lr}")
