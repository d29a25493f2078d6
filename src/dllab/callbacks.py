"""Lightning callbacks for cross-cutting work: the epoch progress bar, the data summary and
graceful interrupts."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from tqdm import tqdm

log = logging.getLogger(__name__)


class EpochProgressBar(ProgressBar):
    """One bar over epochs with the latest losses and main metric.

    tqdm redraws at most every ``refresh_seconds``, so the bar costs next to nothing
    however short the epochs are (Lightning's per-batch bars cost about 20% of a
    small-MLP step).
    """

    SHOWN = ("train/loss", "val/loss", "val/acc", "val/mse")

    def __init__(self, refresh_seconds: float = 0.25) -> None:
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self._enabled = True
        self._bar: tqdm | None = None

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
            mininterval=self.refresh_seconds,
            dynamic_ncols=True,
            file=sys.stdout,
            leave=True,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is None:
            return
        metrics = trainer.callback_metrics
        shown = {k.replace("/", "_"): f"{float(metrics[k]):.4g}" for k in self.SHOWN if k in metrics}
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

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


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class GracefulInterrupt(L.Callback):
    """Ctrl-C or SIGTERM: save ``checkpoints/interrupted.ckpt``, mark metrics.json
    ``interrupted`` and print the exact resume command.

    ``dllab-train resume=<run dir>`` continues from ``last.ckpt`` (the end of the last
    full epoch), so a resumed run ends with the same metrics as one never stopped;
    ``interrupted.ckpt`` keeps the weights of the moment for inspection.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # Lightning chains its own handler

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
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


class LastCheckpoint(L.Callback):
    """``checkpoints/last.ckpt``: the latest state, saved at the end of an epoch when
    ``every_seconds`` have passed since the last save, and always when training ends.

    A save costs about 1.4 ms on 2 CPU cores while a whole small epoch takes 3 to 10 ms, so
    saving every epoch would be the largest cost of a short run. With a time interval a
    crash loses at most that much training (``resume=`` continues from here); Ctrl-C or
    SIGTERM saves ``interrupted.ckpt`` anyway. ``every_seconds: 0`` saves every epoch.
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
