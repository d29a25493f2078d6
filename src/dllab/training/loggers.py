"""Loggers: Lightning's TensorBoard logger with scalars kept in memory and written in batches."""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

from dllab.training import compat


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger, cheaper per epoch.

    Why: torch's ``SummaryWriter`` hands every event to a writer thread, which checksums it in
    pure Python while holding the GIL that the training loop needs between its torch calls; with
    a few events an epoch that is a noticeable share of a small epoch (docs/performance.md).

    So ``log_metrics`` only records the values (a number per tag, the step and the time).
    They become events when the logger saves: Lightning and ``TaskModule.log_epoch`` ask for
    that after every epoch, and this logger does it at most every ``flush_seconds`` and
    always in ``finalize`` (end of fit or test, also after an exception), then flushes the
    file, so TensorBoard sees a run live, ``flush_seconds`` or one epoch behind. Values of one step logged
    one after another (an epoch's train and val values) share one event, as TensorBoard's
    merged summaries do. Prefixed names and dicts of scalars take Lightning's own path."""

    MAX_PENDING = 1000  # values of this many calls are written even before flush_seconds

    def __init__(self, *args: Any, flush_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_seconds = flush_seconds
        self._last_flush = float("-inf")
        self._pending: list[tuple[int | None, float, dict[str, float]]] = []  # step, wall time, values

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if compat.logger_prefix(self) or not all(isinstance(v, (numbers.Number, Tensor)) for v in metrics.values()):
            self._write_pending()  # the plain scalars of a call with dicts must not pass older values
            super().log_metrics(metrics, step)  # prefixes and dicts of scalars: Lightning's way
            return
        values = {k: float(v) for k, v in metrics.items()}
        last = self._pending[-1] if self._pending else None
        if last is not None and last[0] == step and last[2].keys().isdisjoint(values):
            last[2].update(values)  # the same step: one event
        else:
            self._pending.append((step, time.time(), values))
        if len(self._pending) > self.MAX_PENDING:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        writer = compat.tensorboard_file_writer(self)
        for step, wall_time, values in self._pending:
            summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
            writer.add_event(Event(summary=summary), step, wall_time)
        self._pending.clear()

    @rank_zero_only
    def save(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds:
            self._write_pending()
            super().save()
            self._last_flush = now

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._write_pending()
        super().finalize(status)
