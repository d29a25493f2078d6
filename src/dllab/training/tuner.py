"""``tuner.lr_find=true``: a learning-rate range test before training (Smith, 2017, as
Lightning's ``Tuner.lr_find``), whose suggestion the run then trains with.

Why not Lightning's ``Tuner.lr_find`` itself: it measures one loss per *Trainer batch* and
raises the learning rate with a per-step scheduler that the automatic-optimization loop
steps. dllab's Trainer batch is a whole epoch (one :class:`~dllab.data.datamodule.EpochBatch`,
see :mod:`dllab.training.module`) stepped by manual optimization: ``training_step`` returns no loss,
so the finder records NaN, and its scheduler is never stepped inside the epoch, so all of
the epoch's optimizer steps run at ``min_lr``. (Tried with Lightning 2.6: two points, both
NaN, no suggestion.) So the same test is done the dllab way: a copy of the network and the
run's own optimizer and loss take ``num_training`` optimizer steps on shuffled training
batches (``data.batch_size`` × ``accumulate_grad_batches`` samples, as one training step),
the learning rate growing exponentially from ``min_lr`` to ``max_lr``; the loss is smoothed
and the test stops when it exceeds ``early_stop_threshold`` × its best; the suggestion is
Lightning's rule, the learning rate where the smoothed loss falls fastest (below the
loss minimum, see :func:`suggest`). The model the
run trains is untouched.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dllab.training.optim import build_optimizer

log = logging.getLogger(__name__)


@dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray  # smoothed
    suggestion: float | None


def suggest(lrs: np.ndarray, losses: np.ndarray, skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """Lightning's rule, the lr where the smoothed loss falls fastest (per step on the log-lr
    scale, ignoring the first ``skip_begin`` and last ``skip_end`` points), searched only
    below the lr of the lowest loss: past it the loss is blowing up, and the rule alone
    would pick a rebound after a spike. None with too few points."""
    lrs, losses = lrs[skip_begin:-skip_end], losses[skip_begin:-skip_end]
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(losses) < 3:
        return None
    lowest = int(losses.argmin())
    if lowest < 2:
        return float(lrs[lowest]) / 10
    return float(lrs[int(np.gradient(losses[: lowest + 1]).argmin())])


def lr_range_test(
    module: Any,
    datamodule: Any,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    num_training: int = 200,
    early_stop_threshold: float | None = 4.0,
    beta: float = 0.7,
    eval_samples: int = 2048,
    seed: int = 0,
) -> LRFinderResult:
    """Run the range test on a copy of ``module`` (its ``step``: network and loss) with the
    module's optimizer config on ``datamodule``'s training split. After each step the loss is
    measured on a fixed sample of up to ``eval_samples`` training samples (smoother than the
    batch's own loss, which with batches of 10 is mostly noise) and smoothed with ``beta``."""
    trial = copy.deepcopy(module).train()
    options = dict(module.hparams["optimizer"] or {"_target_": "torch.optim.Adam"})
    optimizer = build_optimizer({**options, "lr": min_lr}, trial.parameters())
    device = next(trial.parameters()).device
    x_all, y_all = (t.to(device) for t in datamodule.tensors("train"))
    n = x_all.shape[0]
    batch = min(n, int(datamodule.batch_size) * int(module.hparams.get("accumulate_grad_batches", 1)))
    generator = torch.Generator().manual_seed(seed)
    x_eval, y_eval = x_all[:eval_samples], y_all[:eval_samples]
    order = torch.randperm(n, generator=generator)
    position = 0
    factor = (max_lr / min_lr) ** (1 / max(num_training - 1, 1))
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    for step in range(num_training):
        lr = min_lr * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        if position + batch > n:
            order, position = torch.randperm(n, generator=generator), 0
        index = order[position : position + batch].to(device)
        position += batch
        loss, _ = trial.step(x_all[index], y_all[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trial.eval()
        with torch.no_grad():
            value = float(trial.step(x_eval, y_eval)[0])
        trial.train()
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        if not math.isfinite(smoothed) or (
            early_stop_threshold is not None and step > 1 and smoothed > early_stop_threshold * best
        ):
            break
        best = min(best, smoothed)
    lr_array, loss_array = np.asarray(lrs), np.asarray(losses)
    return LRFinderResult(lr_array, loss_array, suggest(lr_array, loss_array))


def find_and_use_batch_size(cfg: Any, trainer: Any, module: Any, datamodule: Any) -> dict[str, Any]:
    """Lightning's batch-size finder (power mode) from ``data.batch_size`` up: the largest
    batch whose optimizer steps fit in the device's memory, never above the training split.
    It works with dllab's epoch-per-step loop because ``max_steps`` (its steps per trial)
    counts optimizer steps, and the DataModule's ``batch_size`` is what it scales."""
    from lightning.pytorch.tuner import Tuner
    from omegaconf import open_dict

    configured = int(datamodule.batch_size)
    n_train = len(datamodule.arrays["train"][0])
    doublings = math.floor(math.log2(n_train / configured)) if n_train >= configured else 0
    max_trials = min(doublings, int(cfg.tuner.batch_size_max_trials))
    found: int | None = configured
    if max_trials > 0:
        found = Tuner(trainer).scale_batch_size(
            module,
            datamodule=datamodule,
            mode="power",
            init_val=configured,
            max_trials=max_trials,
            steps_per_trial=int(cfg.tuner.batch_size_steps_per_trial),
        )
    found = int(found or configured)
    module.zero_grad(set_to_none=True)  # a trial that ran out of memory mid-backward leaves gradients
    datamodule.batch_size = found
    with open_dict(cfg):
        cfg.data.batch_size = found
    log.info("batch_size_find: training with batch size %d (configured %d)", found, configured)
    return {"configured": configured, "used": found}
