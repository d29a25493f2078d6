"""Lightning's per-step hooks for dllab's epoch loop.

The Trainer sees one batch per epoch (:class:`dllab.data.datamodule.EpochBatch`), and
:class:`~dllab.training.epoch_loop.EpochLoop` takes the optimizer steps itself, so Lightning
would call ``on_train_batch_start/end`` once per epoch and ``on_before_backward``,
``on_after_backward``, ``on_before_optimizer_step`` and ``on_before_zero_grad`` never.
:func:`lightning_step_hooks` gives the loop the callbacks' and the module's overrides of
these hooks, called per micro-batch and per optimizer step with Lightning's arguments, and
silences Lightning's own once-per-epoch call of ``on_train_batch_start/end``. Hooks nobody
overrides are not called at all, nor are those of Lightning's own callbacks that do nothing as
configured (:data:`IDLE`), so a default run pays nothing per step.

What the loop does itself cannot be overridden: a module that overrides one of
:data:`LOOP_METHODS` is refused when training starts (Lightning itself refuses a
``GradientAccumulationScheduler`` under manual optimization).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

from dllab import compat
from dllab.data.datamodule import EpochBatch
from dllab.errors import ConfigError
from dllab.training.epoch_loop import StepHooks

PER_STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
)

# Per-step hooks of Lightning's callbacks that do nothing in the configuration at hand.
IDLE: dict[tuple[type, str], Callable[[Any], bool]] = {
    (LearningRateMonitor, "on_train_batch_start"): lambda callback: callback.logging_interval == "epoch",
    (ModelCheckpoint, "on_train_batch_end"): lambda callback: not compat.checkpoints_within_epochs(callback),
}

# LightningModule methods through which Lightning steps the optimizer; the epoch loop does it.
LOOP_METHODS = (
    "optimizer_step",
    "optimizer_zero_grad",
    "backward",
    "configure_gradient_clipping",
    "lr_scheduler_step",
)


def lightning_step_hooks(trainer: L.Trainer, module: L.LightningModule, base: type[L.LightningModule]) -> StepHooks:
    """The overrides of :data:`PER_STEP_HOOKS` among ``trainer.callbacks`` (in their order)
    and then ``module`` (where its class overrides ``base``'s hook), as Lightning orders them.
    ConfigError for what the loop cannot honour (see the module doc)."""
    refuse_loop_overrides(trainer, module, base)
    hooks = StepHooks()
    owners: list[tuple[Any, bool]] = [(c, True) for c in trainer.callbacks]  # type: ignore[attr-defined]
    owners.append((module, False))
    for owner, is_callback in owners:
        parent = L.Callback if is_callback else base
        for name in PER_STEP_HOOKS:
            if not compat.is_overridden(name, owner, parent) or _idle(owner, name):
                continue
            method = getattr(type(owner), name).__get__(owner)  # the class's, not a silenced one
            if name in ("on_train_batch_start", "on_train_batch_end"):
                setattr(owner, name, _skipping_epoch_batches(method))
            call = functools.partial(method, trainer, module) if is_callback else method
            getattr(hooks, _FIELDS[name]).append(call)
    return hooks


def refuse_loop_overrides(trainer: L.Trainer, module: L.LightningModule, base: type[L.LightningModule]) -> None:
    for name in LOOP_METHODS:
        if compat.is_overridden(name, module, base):
            raise ConfigError(
                f"{type(module).__name__}.{name}: not called, since dllab's epoch loop steps the optimizer "
                "itself; override step(x, y) or a per-step hook (on_before_optimizer_step, ...) instead"
            )


def _idle(callback: Any, name: str) -> bool:
    return any(isinstance(callback, cls) and hook == name and idle(callback) for (cls, hook), idle in IDLE.items())


_FIELDS = {
    "on_train_batch_start": "batch_start",
    "on_before_backward": "before_backward",
    "on_after_backward": "after_backward",
    "on_before_optimizer_step": "before_optimizer_step",
    "on_before_zero_grad": "before_zero_grad",
    "on_train_batch_end": "batch_end",
}


def _skipping_epoch_batches(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` for every batch but the Trainer's whole-epoch one (the loop calls it per micro-batch)."""

    @functools.wraps(method)
    def hook(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, EpochBatch) for a in (*args, *kwargs.values())):
            return None
        return method(*args, **kwargs)

    return hook
