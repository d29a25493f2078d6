"""One training epoch over tensors in memory, in plain PyTorch.

:class:`EpochLoop` is what :meth:`dllab.training.module.TaskModule.training_step` runs: the
samples of the epoch in a given order, micro-batches of ``batch_size``, one optimizer step
per ``accumulate`` micro-batches, and for each micro-batch the module's ``step(x, y) ->
(loss, output)``. It does what Lightning's loop would do per step, and does it exactly:

- gradient accumulation weighs each micro-batch by its share of the group, so the last,
  smaller group of an epoch makes the same update as one batch of those samples;
- AMP loss scaling, gradient clipping (by norm or value), DDP gradient averaging;
- a step limit (``max_steps``) that may end the epoch early;
- per-step hooks at the points where Lightning calls its own (:class:`StepHooks`).

Samples are gathered in the epoch's order a span of whole groups at a time (one indexing op
per span), and micro-batches are views of the span. Nothing in the loop waits for the
device: losses and outputs stay tensors until the caller reads them once per epoch.
:func:`dllab.training.reference_loop.train_reference` is the textbook loop it must equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dllab.training.rules import micro_batches

StepFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (x, y) -> (loss, output)
Batch = tuple[Tensor, Tensor]


@dataclass
class StepHooks:
    """Functions called at Lightning's per-step hook points, in Lightning's order. Each list may
    be empty (the default), and then costs nothing.

    - ``batch_start(batch, batch_idx)``: before a micro-batch; returning -1 ends the epoch there
    - ``before_backward(loss)`` / ``after_backward()``: around each backward pass (``loss`` is
      the micro-batch's share of its group's loss)
    - ``before_optimizer_step(optimizer)``: gradients complete (averaged, unscaled), before clipping
    - ``before_zero_grad(optimizer)``: after the step
    - ``batch_end(outputs, batch, batch_idx)``: after a micro-batch (and its group's step);
      ``outputs`` is ``{"loss": loss}`` as Lightning's ``training_step`` result
    """

    batch_start: list[Callable[[Batch, int], Any]] = field(default_factory=list)
    before_backward: list[Callable[[Tensor], None]] = field(default_factory=list)
    after_backward: list[Callable[[], None]] = field(default_factory=list)
    before_optimizer_step: list[Callable[[torch.optim.Optimizer], None]] = field(default_factory=list)
    before_zero_grad: list[Callable[[torch.optim.Optimizer], None]] = field(default_factory=list)
    batch_end: list[Callable[[dict[str, Tensor], Batch, int], None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass
class EpochResult:
    """What an epoch leaves for its metrics: per micro-batch the (unweighted) loss and size, the
    outputs and targets of every sample trained on (in visiting order), and the step count."""

    losses: list[Tensor]
    sizes: list[int]
    outputs: Tensor
    targets: Tensor
    steps: int


class EpochLoop:
    """Runs epochs of ``step`` over in-memory tensors with ``optimizer`` (see the module doc).

    ``parameters`` returns what to clip and average; ``count_steps(n)`` is told of every
    optimizer step taken (after each step when there are hooks, so they see the current
    count; else once per epoch, also when the epoch is interrupted)."""

    gather_samples = 4096  # samples gathered per indexing op (rounded to whole groups)

    def __init__(
        self,
        step: StepFn,
        optimizer: torch.optim.Optimizer,
        parameters: Callable[[], Iterable[nn.Parameter]],
        accumulate: int = 1,
        clip_val: float | None = None,
        clip_algorithm: str = "norm",
        scaler: Any = None,
        average_gradients: Callable[[], None] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        hooks: StepHooks | None = None,
        count_steps: Callable[[int], None] | None = None,
    ) -> None:
        self.step = step
        self.optimizer = optimizer
        self.parameters = parameters
        self.accumulate = accumulate
        self.clip_val = clip_val
        self.clip_algorithm = clip_algorithm
        self.scaler = scaler
        self.average_gradients = average_gradients
        self.transform = transform
        self.hooks = hooks or StepHooks()
        self.count_steps = count_steps

    def run(self, x: Tensor, y: Tensor, order: Tensor, batch_size: int, max_steps: int | None = None) -> EpochResult:
        """Train on ``x[order]``, ``y[order]``; at most ``max_steps`` optimizer steps."""
        group = batch_size * self.accumulate
        n_groups = -(-order.numel() // group)
        if max_steps is not None and max_steps < n_groups:
            n_groups = max(max_steps, 0)
        done = min(n_groups * group, order.numel())
        step, transform, hooks, optimizer = self.step, self.transform, self.hooks, self.optimizer
        scaler = self.scaler
        plain = scaler is None and self.average_gradients is None and not self.clip_val
        plain = plain and not hooks.before_optimizer_step and not hooks.before_zero_grad
        count_each_step = bool(hooks) and self.count_steps is not None
        losses: list[Tensor] = []
        sizes: list[int] = []
        outputs: list[Tensor] = []
        steps = counted = 0
        try:
            for batch_idx, (features, target, weight, ends_group) in enumerate(
                self._micro_batches(x, y, order[:done], batch_size, group)
            ):
                if hooks.batch_start and any(h((features, target), batch_idx) == -1 for h in hooks.batch_start):
                    optimizer.zero_grad(set_to_none=True)  # a group cut short leaves no gradients behind
                    break
                loss, output = step(features if transform is None else transform(features), target)
                scaled = loss if weight is None else loss * weight  # exact accumulation, last group too
                for before_backward in hooks.before_backward:
                    before_backward(scaled)
                (scaled if scaler is None else scaler.scale(scaled)).backward()
                for after_backward in hooks.after_backward:
                    after_backward()
                detached = loss.detach()
                losses.append(detached)
                sizes.append(target.shape[0])
                outputs.append(output.detach())
                if ends_group:
                    if plain:
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    else:
                        self._optimizer_step()
                    steps += 1
                    if count_each_step:
                        self._count(1)
                        counted += 1
                if hooks.batch_end:
                    for batch_end in hooks.batch_end:
                        batch_end({"loss": detached}, (features, target), batch_idx)
        finally:  # the step count is right also when interrupted
            if steps > counted:
                self._count(steps - counted)
        visited = order[: sum(sizes)]
        return EpochResult(losses, sizes, _cat(outputs), y[visited], steps)

    def _micro_batches(
        self, x: Tensor, y: Tensor, order: Tensor, batch_size: int, group: int
    ) -> Iterator[tuple[Tensor, Tensor, float | None, bool]]:
        """(features, target, weight in its group or None for a full group's 1, ends its group)."""
        span = group * max(1, self.gather_samples // group)
        for span_start in range(0, order.numel(), span):
            index = order[span_start : span_start + span]
            xs, ys = x[index], y[index]
            for first, last, weight, ends_group in micro_batches(index.numel(), batch_size, self.accumulate):
                yield xs[first:last], ys[first:last], weight, ends_group

    def _optimizer_step(self) -> None:
        optimizer, scaler, hooks = self.optimizer, self.scaler, self.hooks
        if self.average_gradients is not None:
            self.average_gradients()
        if scaler is not None and (self.clip_val or hooks.before_optimizer_step):
            scaler.unscale_(optimizer)  # clipping and hooks see the true gradients
        for before_optimizer_step in hooks.before_optimizer_step:
            before_optimizer_step(optimizer)
        if self.clip_val:
            if self.clip_algorithm == "value":
                nn.utils.clip_grad_value_(self.parameters(), self.clip_val)
            else:
                nn.utils.clip_grad_norm_(self.parameters(), self.clip_val)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        for before_zero_grad in hooks.before_zero_grad:
            before_zero_grad(optimizer)
        optimizer.zero_grad(set_to_none=True)

    def _count(self, steps: int) -> None:
        if self.count_steps is not None:
            self.count_steps(steps)


def _cat(tensors: list[Tensor]) -> Tensor:
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors) if tensors else torch.empty(0)
