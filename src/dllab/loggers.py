"""Loggers: Lightning's TensorBoard logger with flushes rationed in time."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    """``save()`` (flush the event file to disk) is asked for after every epoch's values
    (``MLPModule.log_epoch``, and Lightning after its own logging); with epochs of a few
    milliseconds flushing each time is a measurable share of a run. This logger flushes at
    most every ``flush_seconds``, so TensorBoard still sees a run live; ``finalize`` (end of
    fit/test, also after an exception) always flushes and closes."""

    def __init__(self, *args: Any, flush_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._last_flush = float("-inf")

    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds:
            super().save()
            self._last_flush = now
