"""Loggers: Lightning's TensorBoard logger with an epoch's scalars in one event and flushes
rationed in time."""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, cheaper per epoch.

    ``log_metrics`` writes all scalars of a call as one event (one ``Summary`` with a value
    per tag, as TensorBoard's merged summaries are) instead of one event per scalar: about
    25 µs a scalar less, with 7 scalars an epoch.

    ``save()`` (flush the event file to disk) is asked for after every epoch's values
    (``MLPModule.log_epoch``, and Lightning after its own logging); with epochs of a few
    milliseconds flushing each time is a measurable share of a run. This logger flushes at
    most every ``flush_seconds``, so TensorBoard still sees a run live; ``finalize`` (end of
    fit/test, also after an exception) always flushes and closes."""

    def __init__(self, *args: Any, flush_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._last_flush = float("-inf")

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._prefix or not all(isinstance(v, (numbers.Number, Tensor)) for v in metrics.values()):
            super().log_metrics(metrics, step)  # prefixes and dicts of scalars: Lightning's way
            return
        values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
        self.experiment._get_file_writer().add_summary(Summary(value=values), step)

    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds:
            super().save()
            self._last_flush = now
