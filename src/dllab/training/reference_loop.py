"""The textbook PyTorch training loop: what :class:`~dllab.training.epoch_loop.EpochLoop`
must equal (same seed, same batches), and what the lab teaches before Lightning.

For each epoch's order of sample indices, for each batch: forward, loss, ``zero_grad``,
``backward``, ``step``. With ``accumulate`` > 1 the gradients of that many batches add up
(each loss weighted by its batch's share of the group) before one step, which equals one
batch of the whole group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def train_reference(
    net: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    orders: Sequence[Tensor],
    batch_size: int,
    accumulate: int = 1,
) -> list[float]:
    """Train ``net`` in place; return the mean training loss of each epoch."""
    means = []
    group = batch_size * accumulate
    for order in orders:
        total = 0.0
        for start in range(0, len(order), group):
            members = order[start : start + group]
            optimizer.zero_grad()
            for first in range(0, len(members), batch_size):
                index = members[first : first + batch_size]
                loss = loss_fn(net(x[index]), y[index])
                (loss * (len(index) / len(members))).backward()
                total += loss.item() * len(index)
            optimizer.step()
        means.append(total / len(order))
    return means
