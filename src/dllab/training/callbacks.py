"""Lightning callbacks for cross-cutting work: the epoch progress bar, the data summary and
graceful interrupts (checkpoints: :mod:`dllab.training.checkpointing`)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from tqdm import tqdm

log = logging.getLogger(__name__)


class EpochProgressBar(ProgressBar):
    """One bar over epochs with the latest losses and main metric.

    The bar redraws at most every ``refresh_seconds`` (the callback decides, tqdm only
    counts), and the values are formatted only for a redraw, so the bar costs next to nothing
    however short the epochs are (Lightning's per-batch bars cost a large share of a
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
