"""Every private Lightning (and torch) API dllab uses, in one place.

dllab's fast paths reach under Lightning's public API in a few spots: its epoch loop counts
optimizer steps itself, its checkpoint callbacks snapshot checkpoints in memory, its
TensorBoard logger writes events in batches, and sweeps start DDP workers their own way.
pyproject.toml pins ``lightning`` to the minor range these calls were tested with; a test
(``tests/test_compat.py``) checks each of them against the installed versions, so an upgrade
that moves one fails there, by name, rather than deep inside a run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

# The Lightning minor versions dllab is tested with (pyproject.toml pins the same range).
TESTED_LIGHTNING = (2, 6)

# Private ModelCheckpoint methods dllab.training.checkpointing.BestCheckpoint overrides.
MODEL_CHECKPOINT_OVERRIDES = (
    "_should_save_on_train_epoch_end",
    "_monitor_candidates",
    "_save_checkpoint",
    "_remove_checkpoint",
)


def add_optimizer_steps(trainer: L.Trainer, steps: int) -> None:
    """Count optimizer steps taken outside Lightning's optimizer wrapper: ``trainer.global_step``
    (and with it ``max_steps``, checkpoints and loggers) follows this counter."""
    trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.increment_by(steps)


def dump_checkpoint(trainer: L.Trainer, weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint dict ``trainer.save_checkpoint`` would write, without writing it and
    without its barrier (which DDP ranks that are already stopping would never reach)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=weights_only)


def write_model_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    """ModelCheckpoint's own save of ``filepath`` (the file, its bookkeeping, the loggers' notice)."""
    ModelCheckpoint._save_checkpoint(callback, trainer, filepath)


def remove_model_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    ModelCheckpoint._remove_checkpoint(callback, trainer, filepath)


def mark_checkpoint_saved(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    """ModelCheckpoint's record that ``filepath`` holds the state of this step (a snapshot
    counts as saved: the same step is not checked again, ``exception.ckpt`` is not needed)."""
    callback._last_global_step_saved = trainer.global_step
    callback._last_checkpoint_saved = filepath


def save_on_train_epoch_end_setting(callback: ModelCheckpoint) -> bool | None:
    """The ``save_on_train_epoch_end`` the callback was made with (None: Lightning decides)."""
    return callback._save_on_train_epoch_end


def should_save_on_exception(callback: ModelCheckpoint, trainer: L.Trainer) -> bool:
    return callback._should_save_on_exception(trainer)


def is_overridden(method_name: str, instance: Any, parent: type) -> bool:
    """Whether ``instance``'s class overrides ``parent``'s ``method_name`` (Lightning's helper)."""
    from lightning.pytorch.utilities.model_helpers import is_overridden as lightning_is_overridden

    return lightning_is_overridden(method_name, instance, parent)


def checkpoints_within_epochs(callback: ModelCheckpoint) -> bool:
    """Whether a ModelCheckpoint saves by training steps or time (``every_n_train_steps``,
    ``train_time_interval``), i.e. inside an epoch, in its ``on_train_batch_end``."""
    return bool(callback._every_n_train_steps) or callback._train_time_interval is not None


def tensorboard_file_writer(logger: Any) -> Any:
    """The event-file writer of a Lightning TensorBoardLogger (torch's ``SummaryWriter``'s)."""
    return logger.experiment._get_file_writer()


def logger_prefix(logger: Any) -> str:
    return logger._prefix


def ddp_worker_command() -> Callable[[int], tuple[Sequence[str], str]]:
    """The function Lightning's DDP launcher calls for a worker's command under Hydra."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    return subprocess_script._hydra_subprocess_cmd


def set_ddp_worker_command(command: Callable[[int], tuple[Sequence[str], str]]) -> None:
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = command  # type: ignore[assignment]


def forget_sigterm(trainer: L.Trainer) -> None:
    """Lightning's own SIGTERM handler (which runs before dllab's) marks the trainer to stop at
    the end of the epoch with a ``SystemExit``; a SLURM job that requeues stops its own way."""
    trainer._signal_connector.received_sigterm = False
