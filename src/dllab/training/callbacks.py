"""Lightning callbacks for cross-cutting work: the epoch progress bar, the data summary,
graceful interrupts, and checkpoints written on a time budget."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, ProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from tqdm import tqdm

log = logging.getLogger(__name__)


class EpochProgressBar(ProgressBar):
    """One bar over epochs with the latest losses and main metric.

    The bar redraws at most every ``refresh_seconds`` (the callback decides, tqdm only
    counts), and the values are formatted only for a redraw, so the bar costs next to nothing
    however short the epochs are (Lightning's per-batch bars cost about 20% of a
    small-MLP step).
    """

    SHOWN = ("train/loss", "val/loss", "val/acc", "val/mse")

    def __init__(self, refresh_seconds: float = 0.25) -> None:
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self._enabled = True
        self._bar: tqdm | None = None
        self._drawn = float("-inf")

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        self._bar = tqdm(
            total=total,
            initial=trainer.current_epoch,
            desc="epochs",
            unit="epoch",
            mininterval=float("inf"),  # update() only counts; on_train_epoch_end decides the redraws
            dynamic_ncols=True,
            file=sys.stdout,
            leave=True,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        now = time.monotonic()
        if now - self._drawn >= self.refresh_seconds:  # format the values only for a redraw
            self._show(trainer)
            self._bar.refresh()
            self._drawn = now

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._show(trainer)  # the last line shows the last epoch
            self._bar.close()
            self._bar = None

    def _show(self, trainer: L.Trainer) -> None:
        assert self._bar is not None
        metrics = trainer.callback_metrics
        shown = {k.replace("/", "_"): f"{float(metrics[k]):.4g}" for k in self.SHOWN if k in metrics}
        self._bar.set_postfix(shown, refresh=False)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)


class DataSummary(L.Callback):
    """Logs samples per split, classes per split and training samples per parameter
    before training, and warns below the rule of thumb of 10 samples per parameter."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule: Any = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "summary"):
            return
        num_parameters = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        self.lines = datamodule.summary(num_parameters)
        for line in self.lines:
            (log.warning if line.startswith("warning") else log.info)(line)


class GracefulInterrupt(L.Callback):
    """Ctrl-C or SIGTERM: save ``checkpoints/interrupted.ckpt``, mark metrics.json
    ``interrupted`` and print the exact resume command.

    ``dllab-train resume=<run dir>`` continues from ``last.ckpt`` (the end of the last
    full epoch), so a resumed run ends with the same metrics as one never stopped;
    ``interrupted.ckpt`` keeps the weights of the moment for inspection.

    The signal raises ``KeyboardInterrupt`` at once, as Python does for Ctrl-C. Python drops
    an exception raised inside a finalizer (``__del__``) that happens to be running, so the
    signal is also remembered, and the next batch or epoch hook raises it again: a signal is
    never lost.
    """

    def __init__(self) -> None:
        self._signal: int | None = None
        self._handled = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)  # Lightning chains its own handler

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signum
        raise KeyboardInterrupt(f"signal {signum}")

    def _raise_if_lost(self) -> None:
        if self._signal is not None and not self._handled:
            raise KeyboardInterrupt(f"signal {self._signal}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._raise_if_lost()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_lost()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._raise_if_lost()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        self._handled = True
        if not trainer.is_global_zero:
            return
        from dllab.results import INTERRUPTED, write_metrics

        run_dir = Path(trainer.default_root_dir)
        # not trainer.save_checkpoint: it ends with a barrier that other DDP ranks, already
        # stopping, never reach
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, run_dir / "checkpoints" / "interrupted.ckpt")
        command = f"dllab-train resume={run_dir}"
        write_metrics(
            run_dir,
            INTERRUPTED,
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
            resume_command=command,
            run_dir=str(run_dir),
        )
        print(f"\ninterrupted at epoch {trainer.current_epoch}; continue with:\n  {command}", file=sys.stderr)


class LastCheckpoint(Checkpoint):
    """``checkpoints/last.ckpt``: the latest state, saved at the end of an epoch when
    ``every_seconds`` have passed since the last save, and always when training ends.

    A save costs about 1.4 ms on 2 CPU cores while a whole small epoch takes 3 to 10 ms, so
    saving every epoch would be the largest cost of a short run. With a time interval a
    crash loses at most that much training (``resume=`` continues from here); Ctrl-C or
    SIGTERM saves ``interrupted.ckpt`` anyway. ``every_seconds: 0`` saves every epoch.

    A Lightning ``Checkpoint``, so the Trainer runs it after early stopping and after the
    best-checkpoint callback: ``last.ckpt`` holds their state for the epoch it ends.
    (Lightning's ``ModelCheckpoint(save_last=True)`` rewrites last.ckpt only together with a
    new best, and ignores ``train_time_interval`` under manual optimization.)
    """

    def __init__(self, dirpath: str, filename: str = "last", every_seconds: float = 30.0) -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.every_seconds = every_seconds
        self._last_save = 0.0
        self._saved_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_save = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = time.monotonic() - self._last_save >= self.every_seconds
        if trainer.strategy.broadcast(due):  # rank 0 decides, so every rank joins the save
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_step != trainer.global_step and not getattr(trainer, "fast_dev_run", False):
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        self._last_save = time.monotonic()


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (monitor, mode, top-k, file names: all its options but
    ``save_last``, which ``LastCheckpoint`` covers), with the files written on a time budget.

    A new best is snapshotted in memory (Lightning's checkpoint dict with its tensors copied
    on their device: about 0.65 ms for dllab's MLPs on 2 CPU cores, 0.46 ms of it Lightning's
    ``dump_checkpoint``) and written to disk when
    ``write_every_seconds`` have passed since the last write, when training ends or stops
    on an exception, and before any other checkpoint is taken (``last.ckpt``,
    ``interrupted.ckpt``), so a checkpoint that names a best file always finds it on disk.
    Writing a checkpoint costs 1 to 3 ms on 2 CPU cores, as much as a whole epoch of a small
    MLP, and early in a run nearly every epoch is a new best. ``write_every_seconds: 0``
    writes at once, as ModelCheckpoint does.

    It also reads the monitored values without deep-copying ``trainer.callback_metrics``
    (dllab's modules store fresh tensors there, never changed in place).
    """

    MAX_PENDING = 8  # more snapshots than this in memory (save_top_k=-1, say) are written at once

    def __init__(self, *args: Any, write_every_seconds: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.save_last and write_every_seconds > 0:
            raise ValueError(
                "save_last: not with write_every_seconds > 0 (the last file would lag behind); "
                "LastCheckpoint writes last.ckpt"
            )
        self.write_every_seconds = write_every_seconds
        self._pending: dict[str, dict[str, Any]] = {}  # file path -> checkpoint not yet written
        self._last_write = time.monotonic()
        self._snapshotting = False
        self._trainer: L.Trainer | None = None  # set in setup: state_dict() writes through it

    def _should_save_on_train_epoch_end(self, trainer: L.Trainer) -> bool:
        """Check for a new best right after validation when there is one (ModelCheckpoint waits
        for the epoch's end): then ``last.ckpt``, taken at the epoch's end, already knows it."""
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        return sum(trainer.num_val_batches) == 0

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, Tensor]:
        candidates = dict(trainer.callback_metrics)
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self.write_every_seconds <= 0:
            super()._save_checkpoint(trainer, filepath)
            return
        self._snapshotting = True  # our own state_dict() must not write the previous snapshot
        try:
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)
        finally:
            self._snapshotting = False
        # Lightning builds the loops' state afresh for each dump (plain numbers): only the rest is copied
        self._pending[filepath] = {k: v if k == "loops" else _copy_tensors(v) for k, v in checkpoint.items()}
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if len(self._pending) > self.MAX_PENDING:
            self.write_pending(trainer)

    def file_exists(self, filepath: Any, trainer: L.Trainer) -> bool:
        """A snapshot not yet written counts as an existing file (top-k names, version counter)."""
        return str(filepath) in self._pending or super().file_exists(filepath, trainer)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self._pending.pop(filepath, None) is None:  # a snapshot never written needs no removal
            super()._remove_checkpoint(trainer, filepath)

    def write_pending(self, trainer: L.Trainer) -> None:
        """Write the snapshots not yet on disk (rank 0 writes; every rank may call)."""
        for filepath, checkpoint in self._pending.items():
            trainer.strategy.save_checkpoint(checkpoint, filepath)
        if self._pending and trainer.is_global_zero:
            for logger in trainer.loggers:  # now that the files exist (loggers that upload them)
                logger.after_save_checkpoint(self)
        self._pending.clear()
        self._last_write = time.monotonic()

    def _write_if_due(self, trainer: L.Trainer) -> None:
        if self._pending and time.monotonic() - self._last_write >= self.write_every_seconds:
            self.write_pending(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # the check when there is no validation
        self._write_if_due(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)  # the check after validation
        self._write_if_due(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.write_pending(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Write the bests found so far; with ``save_on_exception``, the training state of the
        moment goes to ``exception.ckpt`` beside them. (ModelCheckpoint would save it under the
        monitored file name, here ``best.ckpt``: the best would be lost, and after a divergence
        replaced by NaN weights.) As in ModelCheckpoint, nothing is saved when no optimizer step
        was taken since the last checkpoint (that state is already on disk), nor outside fit."""
        self.write_pending(trainer)
        if (
            self._should_save_on_exception(trainer)
            and trainer.state.fn == TrainerFn.FITTING
            and trainer.is_global_zero  # no barrier: other DDP ranks may be stopping already
            and self.dirpath is not None
        ):
            path = os.path.join(self.dirpath, f"exception{self.FILE_EXTENSION}")
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)
            trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
            log.info(f"{type(exception).__name__} raised: the state of that moment is in {path}")

    def state_dict(self) -> dict[str, Any]:
        if self._pending and not self._snapshotting and self._trainer is not None:
            self.write_pending(self._trainer)  # another checkpoint is being taken: ours first
        return super().state_dict()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer


def _copy_tensors(value: Any) -> Any:
    """A copy of a checkpoint: tensors cloned, dicts, lists and tuples rebuilt, the rest (numbers,
    strings, enums) shared. Lightning's ``apply_to_collection`` does the same at 3 times the cost."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        copied = {k: _copy_tensors(v) for k, v in value.items()}
        if type(value) is dict:
            return copied
        rebuilt = type(value)(copied)
        if hasattr(value, "_metadata"):  # a module state_dict's per-module versions
            rebuilt._metadata = value._metadata  # type: ignore[attr-defined]
        return rebuilt
    if isinstance(value, list):
        return [_copy_tensors(v) for v in value]
    if type(value) is tuple:
        return tuple(_copy_tensors(v) for v in value)
    return value
