"""Checkpoint callbacks written on a time budget: ``last.ckpt`` (what ``resume=`` continues
from) and ``best.ckpt`` (Lightning's ``ModelCheckpoint``, new bests kept in memory)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from dllab import compat
from dllab.training.rules import BestRule

log = logging.getLogger(__name__)


@contextmanager
def naming_the_file(path: str | Path) -> Iterator[None]:
    """A failed write (a full disk) names the checkpoint it was writing: the library's
    OSError often names none."""
    try:
        yield
    except OSError as err:
        if err.filename or err.filename2:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err


class LastCheckpoint(Checkpoint):
    """``checkpoints/last.ckpt``: the latest state, saved at the end of an epoch when
    ``every_seconds`` have passed since the last save, and always when training ends.

    Why a time interval: a save costs about as much as a whole small epoch, so saving every
    epoch would be the largest cost of a short run (docs/performance.md). With it a
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

    def save_at_epoch_end(self) -> None:
        """Save at the end of this epoch, whatever the time budget says (a requeue continues there)."""
        self._last_save = float("-inf")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = time.monotonic() - self._last_save >= self.every_seconds
        if trainer.strategy.broadcast(due):  # rank 0 decides, so every rank joins the save
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_step != trainer.global_step and not getattr(trainer, "fast_dev_run", False):
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        with naming_the_file(self.path):
            trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        self._last_save = time.monotonic()


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (monitor, mode, top-k, file names: all its options but
    ``save_last``, which ``LastCheckpoint`` covers), with ties broken and the files written on
    a time budget.

    Ties on the monitored value are broken by ``tie_breaker`` (lower is better; default
    ``val/loss``): accuracy on a small validation set saturates early, and ModelCheckpoint
    would keep the first epoch that reached it for the rest of the run. A later epoch with the
    same accuracy and a lower validation loss replaces it. ``tie_breaker: null`` keeps the
    first, as ModelCheckpoint does. The epoch and optimizer step of each kept file are
    recorded (``best_epoch``, ``best_step``: epochs done, 1-based).

    A new best is snapshotted in memory (Lightning's checkpoint dict with its tensors copied
    on their device) and written to disk when
    ``write_every_seconds`` have passed since the last write, when training ends or stops
    on an exception, and before any other checkpoint is taken (``last.ckpt``,
    ``interrupted.ckpt``), so a checkpoint that names a best file always finds it on disk.
    Why: writing a checkpoint costs as much as a whole epoch of a small MLP, and early in a run
    nearly every epoch is a new best. ``write_every_seconds: 0``
    writes at once, as ModelCheckpoint does.

    It also reads the monitored values without deep-copying ``trainer.callback_metrics``
    (dllab's modules store fresh tensors there, never changed in place).
    """

    MAX_PENDING = 8  # more snapshots than this in memory (save_top_k=-1, say) are written at once

    def __init__(
        self, *args: Any, write_every_seconds: float = 30.0, tie_breaker: str | None = "val/loss", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rule = BestRule.of(str(self.monitor), self.mode, tie_breaker)  # what the stack applies too
        self.tie_breaker = self.rule.tie_breaker
        # file path -> (epochs done, optimizer steps, tie-breaker value, the epoch that first
        # reached its monitored value) when it was kept
        self.kept_at: dict[str, tuple[int, int, float, int]] = {}
        self._tie_of: int | None = None  # a tie is being kept: the first epoch of the value
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
        setting = compat.save_on_train_epoch_end_setting(self)
        if setting is not None:
            return setting
        return sum(trainer.num_val_batches) == 0

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, Tensor]:
        candidates = dict(trainer.callback_metrics)
        epoch, step = candidates.get("epoch"), candidates.get("step")
        candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _tie_value(self, trainer: L.Trainer) -> float:
        return self.rule.tie_value(trainer.callback_metrics)

    def _rank(self, path: str) -> tuple[float, float]:
        """Lower is better: the monitored value (negated for mode max), then the tie-breaker."""
        score = float(self.best_k_models[path])
        return (-score if self.mode == "max" else score, self.kept_at[path][2] if path in self.kept_at else math.inf)

    def check_monitor_top_k(self, trainer: L.Trainer, current: Tensor | None = None) -> bool:
        self._tie_of = None
        if super().check_monitor_top_k(trainer, current):
            return True
        kth = self.kth_best_model_path
        if current is None or not self.tie_breaker or self.save_top_k < 1 or kth not in self.kept_at:
            return False
        wins = self.rule.wins_tie(
            float(current), self._tie_value(trainer), float(self.best_k_models[kth]), self.kept_at[kth][2]
        )
        better = trainer.strategy.reduce_boolean_decision(wins)
        if better:
            self._tie_of = self.kept_at[kth][3]
        return better

    def _update_best_and_save(self, current: Tensor, trainer: L.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        self.kept_at = {p: at for p, at in self.kept_at.items() if p in self.best_k_models}

    def _rerank(self) -> None:
        """ModelCheckpoint ranks equal scores by insertion: rank the kept files by the
        tie-breaker too (before the checkpoint's own state is taken)."""
        if len(self.best_k_models) > 1 and all(p in self.kept_at for p in self.best_k_models):
            self.best_model_path = min(self.best_k_models, key=self._rank)
            self.best_model_score = self.best_k_models[self.best_model_path]
            if self.save_top_k > 0 and len(self.best_k_models) == self.save_top_k:
                self.kth_best_model_path = max(self.best_k_models, key=self._rank)
                self.kth_value = self.best_k_models[self.kth_best_model_path]

    @property
    def best_epoch(self) -> int | None:
        """Epochs done when the best file was kept (1-based), None before any."""
        at = self.kept_at.get(self.best_model_path)
        return at[0] if at else None

    @property
    def best_step(self) -> int | None:
        """Optimizer steps done when the best file was kept, None before any."""
        at = self.kept_at.get(self.best_model_path)
        return at[1] if at else None

    @property
    def best_tie_value(self) -> float | None:
        at = self.kept_at.get(self.best_model_path)
        return at[2] if at and math.isfinite(at[2]) else None

    @property
    def best_first_epoch(self) -> int | None:
        """The first epoch whose monitored value equalled the best one (before tie-breaking)."""
        at = self.kept_at.get(self.best_model_path)
        return at[3] if at else None

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        epoch = trainer.current_epoch + 1
        first = self._tie_of if self._tie_of is not None else epoch
        self.kept_at[filepath] = (epoch, trainer.global_step, self._tie_value(trainer), first)
        self._tie_of = None
        self._rerank()
        if self.write_every_seconds <= 0:
            compat.write_model_checkpoint(self, trainer, filepath)
            return
        self._snapshotting = True  # our own state_dict() must not write the previous snapshot
        try:
            checkpoint = compat.dump_checkpoint(trainer, self.save_weights_only)
        finally:
            self._snapshotting = False
        # Lightning builds the loops' state afresh for each dump (plain numbers): only the rest is copied
        self._pending[filepath] = {k: v if k == "loops" else _copy_tensors(v) for k, v in checkpoint.items()}
        compat.mark_checkpoint_saved(self, trainer, filepath)
        if len(self._pending) > self.MAX_PENDING:
            self.write_pending(trainer)

    def file_exists(self, filepath: Any, trainer: L.Trainer) -> bool:
        """A snapshot not yet written counts as an existing file (top-k names, version counter)."""
        return str(filepath) in self._pending or super().file_exists(filepath, trainer)

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self._pending.pop(filepath, None) is None:  # a snapshot never written needs no removal
            compat.remove_model_checkpoint(self, trainer, filepath)

    def write_pending(self, trainer: L.Trainer) -> None:
        """Write the snapshots not yet on disk (rank 0 writes; every rank may call)."""
        for filepath, checkpoint in self._pending.items():
            with naming_the_file(filepath):
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
        try:
            self.write_pending(trainer)
        except OSError as err:  # a full disk: the error that stopped the run is the one to report
            log.warning("warning: best checkpoint not written (%s)", err.strerror or err)
            return
        if (
            compat.should_save_on_exception(self, trainer)
            and trainer.state.fn == TrainerFn.FITTING
            and trainer.is_global_zero  # no barrier: other DDP ranks may be stopping already
            and self.dirpath is not None
        ):
            path = os.path.join(self.dirpath, f"exception{self.FILE_EXTENSION}")
            checkpoint = compat.dump_checkpoint(trainer, self.save_weights_only)
            trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
            log.info(f"{type(exception).__name__} raised: the state of that moment is in {path}")

    def state_dict(self) -> dict[str, Any]:
        if self._pending and not self._snapshotting and self._trainer is not None:
            self.write_pending(self._trainer)  # another checkpoint is being taken: ours first
        return super().state_dict() | {"kept_at": dict(self.kept_at)}

    def state_keeping(
        self, path: str, score: float, current: float, kept_at: tuple[int, int, float, int]
    ) -> dict[str, Any]:
        """The state this callback has when it keeps one file, ``path`` with ``score`` (``kept_at``:
        epochs done, steps, tie-breaker value, first epoch of the score), ``current`` the
        monitored value now: what a stacked model's checkpoint holds for it, as a solo run's would."""
        best = torch.tensor(score)
        self.best_k_models = {path: best}
        self.best_model_path = self.kth_best_model_path = path
        self.best_model_score = self.kth_value = best
        self.current_score = torch.tensor(current)
        self.kept_at = {path: kept_at}
        return self.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:  # as ModelCheckpoint's own state
            self.kept_at = {p: (at[0], at[1], at[2], at[3]) for p, at in state_dict.get("kept_at", {}).items()}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer


def _copy_tensors(value: Any) -> Any:
    """A copy of a checkpoint: tensors cloned, dicts, lists and tuples rebuilt, the rest (numbers,
    strings, enums) shared. Lightning's ``apply_to_collection`` does the same, more slowly."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        copied = {k: _copy_tensors(v) for k, v in value.items()}
        if type(value) is dict:
            return copied
        rebuilt = type(value)(copied)
        compat.copy_state_dict_metadata(value, rebuilt)
        return rebuilt
    if isinstance(value, list):
        return [_copy_tensors(v) for v in value]
    if type(value) is tuple:
        return tuple(_copy_tensors(v) for v in value)
    return value
