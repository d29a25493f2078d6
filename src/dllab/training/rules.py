"""Rules of a run that need no Trainer, so the solo run (:mod:`dllab.training.module`) and
each model of a stack (:mod:`dllab.stacked.group`) apply the same ones."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def diverged_message(
    epoch_loss: float, micro_losses: Sequence[float], first_step: int, accumulate: int, epoch: int, lr: float
) -> str:
    """The error of a non-finite epoch loss: the first optimizer step whose loss was not finite
    in ``micro_losses`` (this process's, from optimizer step ``first_step`` on) or, when all of
    them were finite, that it happened on another process (DDP); and the learning rate to cut."""
    bad = next((i for i, loss in enumerate(micro_losses) if not math.isfinite(loss)), None)
    if bad is None:
        last_step = first_step - (-len(micro_losses) // accumulate)
        where = f"loss is {epoch_loss} on another process by optimizer step {last_step}"
    else:
        where = f"loss is {micro_losses[bad]} at optimizer step {first_step + bad // accumulate + 1}"
    return f"training diverged: {where} (epoch {epoch}); try a smaller optimizer.lr than {lr:g}"


def micro_batches(samples: int, batch_size: int, accumulate: int) -> Iterator[tuple[int, int, float | None, bool]]:
    """The micro-batches of an epoch of ``samples`` in visiting order: ``(first, last, weight,
    ends_group)``, one optimizer step per group of ``accumulate`` micro-batches. Exact
    accumulation: ``weight`` is a micro-batch's share of its group's samples (None where it is
    the whole group, and the loss needs no scaling), so the last, smaller group of an epoch makes the same
    update as one batch of its samples."""
    group = batch_size * accumulate
    for start in range(0, samples, group):
        stop = min(start + group, samples)
        for first in range(start, stop, batch_size):
            last = min(first + batch_size, stop)
            yield first, last, None if last - first == stop - start else (last - first) / (stop - start), last == stop


def epoch_loss(micro_losses: Sequence[float], sizes: Sequence[int]) -> tuple[float, float]:
    """The loss sum and sample count of a training epoch from its micro-batches' mean losses."""
    return sum(loss * size for loss, size in zip(micro_losses, sizes, strict=True)), float(sum(sizes))


@dataclass(frozen=True)
class BestRule:
    """Which epoch a best checkpoint keeps, as BestCheckpoint decides it (Lightning's
    ModelCheckpoint with ties broken): a strictly better monitored value, or an equal one with
    a strictly lower ``tie_breaker`` value. A NaN score counts as the worst; a missing or
    non-finite tie-breaker value as infinite. A running best (``val/acc_best``) breaks no ties:
    it never changes after its best epoch, so every later epoch would tie with it."""

    monitor: str
    mode: str  # "min" or "max"
    tie_breaker: str | None

    @classmethod
    def of(cls, monitor: str, mode: str, tie_breaker: str | None) -> BestRule:
        running_best = monitor.endswith("_best")
        return cls(monitor, mode, tie_breaker if tie_breaker != monitor and not running_best else None)

    def score(self, value: float) -> float:
        if math.isnan(value):
            return math.inf if self.mode == "min" else -math.inf
        return value

    def tie_value(self, values: Mapping[str, Any]) -> float:
        value = values.get(self.tie_breaker) if self.tie_breaker else None
        number = float(value) if value is not None else math.inf
        return number if math.isfinite(number) else math.inf

    def better(self, score: float, kept: float) -> bool:
        return score > kept if self.mode == "max" else score < kept

    def wins_tie(self, score: float, tie: float, kept_score: float, kept_tie: float) -> bool:
        return bool(self.tie_breaker) and score == kept_score and tie < kept_tie
