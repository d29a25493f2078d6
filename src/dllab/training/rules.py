"""Rules of a run that need no Trainer, so the solo run (:mod:`dllab.training.module`) and
each model of a stack (:mod:`dllab.stacked.group`) apply the same ones."""

from __future__ import annotations

import math
from collections.abc import Sequence


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
