"""Losses: any ``nn.Module`` loss by ``_target_``, and one registry of dllab's named ones.

A loss config (``conf/loss/*.yaml``) is ``_target_`` plus the class's arguments and a
``name``: the label shown in TensorBoard, which :func:`dllab.training.loss_checks.check_loss_fits` checks
against the task for dllab's names. ``loss=auto`` names no class: the task's standard loss
comes from the registry. Every loss takes (model output, target).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dllab.catalog import ALL_LOSSES, AUTO, LOSSES, default_loss
from dllab.errors import ConfigError
from dllab.targets import import_class


class MSELoss(nn.Module):
    """Mean squared error. Class-index targets (integers) are one-hot encoded and compared with
    the softmax of the logits: the loss the TensorFlow Playground trains its classifiers with."""

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        if target.dtype.is_floating_point:
            return F.mse_loss(output, target)
        probs = output.softmax(dim=-1)
        return F.mse_loss(probs, F.one_hot(target, probs.shape[-1]).to(probs.dtype))


# The class of each of dllab's loss names (dllab.catalog.LOSSES says which task each fits):
# the one place a name meets its implementation. A test builds every catalog name from here
# and checks each conf/loss file names the same class.
LOSS_CLASSES: dict[str, str] = {
    "cross_entropy": "torch.nn.CrossEntropyLoss",
    "hinge": "torch.nn.MultiMarginLoss",
    "mse": "dllab.training.losses.MSELoss",
    "l1": "torch.nn.L1Loss",
    "huber": "torch.nn.HuberLoss",
}


def resolved_loss_name(task: str, name: str) -> str:
    return default_loss(task) if name == AUTO else name


def build_loss(task: str, config: Mapping[str, Any] | None = None) -> nn.Module:
    """The loss module of a loss config for ``task``.

    One of dllab's names must fit the task, and its ``_target_`` (optional) must be the
    registry's class, so the label never lies; any other name needs a ``_target_``. Unknown
    names and arguments the class does not take are ConfigErrors naming the ``loss.`` field."""
    options = dict(config or {})
    name = resolved_loss_name(task, str(options.pop("name", AUTO)))
    target = options.pop("_target_", None)
    known = LOSS_CLASSES.get(name)
    if known is not None:
        if name not in LOSSES[task]:
            raise ConfigError(f"loss={name} does not fit the {task} task; valid for {task}: {', '.join(LOSSES[task])}")
        if target is not None and import_class(target, "loss._target_") is not import_class(known, "loss"):
            raise ConfigError(f"loss._target_={target}: loss.name={name} is {known}; change one of them")
    elif target is None:
        raise ConfigError(
            f"loss.name={name}: unknown; choose one of {', '.join((AUTO, *ALL_LOSSES))}, "
            "or give loss._target_ (a torch.nn.Module loss class)"
        )
    cls = import_class(known or target, "loss._target_", example="torch.nn.CrossEntropyLoss")
    try:
        loss = cls(**options)
    except TypeError as err:
        raise ConfigError(f"loss={name}: {cls.__name__} does not take {', '.join(options)} ({err})") from err
    if not isinstance(loss, nn.Module):
        raise ConfigError(f"loss._target_={target}: not a torch.nn.Module")
    return loss
