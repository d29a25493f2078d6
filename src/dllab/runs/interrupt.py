"""Ctrl-C, SIGTERM and a SLURM job's requeue signals during fit: the run's state saved and
recorded (:class:`GracefulInterrupt`).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L

from dllab import compat
from dllab.runs import exits, requeue
from dllab.training.checkpointing import LastCheckpoint


class GracefulInterrupt(L.Callback):
    """Ctrl-C or SIGTERM: save ``checkpoints/interrupted.ckpt``, mark metrics.json
    ``interrupted`` and print the exact resume command.

    ``dllab-train resume=<run dir>`` continues from ``last.ckpt`` (the end of the last
    full epoch), so a resumed run ends with the same metrics as one never stopped;
    ``interrupted.ckpt`` keeps the weights of the moment for inspection.

    The signal raises ``KeyboardInterrupt`` at once, as Python does for Ctrl-C. Python drops
    an exception raised inside a finalizer (``__del__``) that happens to be running, so the
    signal is also remembered, and the next epoch or validation-batch hook raises it again: a
    signal is never lost. (Not a per-step hook: those would cost the epoch loop a call per batch.)

    In a SLURM job of ``hydra/launcher=slurm``, SIGTERM while the job still runs (pre-emption)
    and submitit's USR2 (before the time limit) let the epoch end and requeue the job from its
    ``last.ckpt`` (:mod:`dllab.runs.requeue`).
    """

    def __init__(self) -> None:
        self._signal: int | None = None
        self._handled = False
        self._requeue = False
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)  # Lightning chains its own handler
            for signum in requeue.signals():  # a SLURM job's pre-emption and time-out signals
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if requeue.wants(signum):
            if self._trainer is not None:
                compat.forget_sigterm(self._trainer)
            return  # the epoch ends first (on_train_epoch_end)
        self._signal = signum
        exits.note_signal(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    def _raise_if_lost(self) -> None:
        if self._signal is not None and not self._handled:
            raise KeyboardInterrupt(f"signal {self._signal}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_lost()
        if requeue.armed() and trainer.strategy.broadcast(requeue.requested() is not None):
            self._requeue = True  # last.ckpt for this epoch, then the requeue as the next one starts
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, LastCheckpoint):
                    callback.save_at_epoch_end()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._requeue:
            raise requeue.RequeueRequested()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._raise_if_lost()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from dllab.results import INTERRUPTED, interrupted_fields, write_metrics

        run_dir = Path(trainer.default_root_dir)
        if isinstance(exception, requeue.RequeueRequested) and trainer.is_global_zero:
            write_metrics(
                run_dir,
                requeue.REQUEUED,
                epochs=trainer.current_epoch,
                global_step=trainer.global_step,
                restarts=requeue.restarts(),
                run_dir=str(run_dir),
            )
            print(f"\nrequeued at epoch {trainer.current_epoch}; the job continues from last.ckpt", file=sys.stderr)
        if not isinstance(exception, KeyboardInterrupt):
            return
        self._handled = True
        if not trainer.is_global_zero:
            return
        # not trainer.save_checkpoint: it ends with a barrier that other DDP ranks, already
        # stopping, never reach
        checkpoint = compat.dump_checkpoint(trainer, weights_only=False)
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, run_dir / "checkpoints" / "interrupted.ckpt")
        fields = interrupted_fields(run_dir, trainer.current_epoch, trainer.global_step)
        write_metrics(run_dir, INTERRUPTED, **fields)
        print(
            f"\ninterrupted at epoch {trainer.current_epoch}; continue with:\n  {fields['resume_command']}",
            file=sys.stderr,
        )
        exits.enter_phase("reported")  # said: the run only exits now, with 128 + the signal
