"""The loss group, torch-free: dllab's loss names and the task they fit, their options."""

from __future__ import annotations

from omegaconf import DictConfig

from dllab.catalog import ALL_LOSSES, AUTO, LOSSES
from dllab.data.source import source_of
from dllab.errors import ConfigError
from dllab.field_checks import (
    check_number,
    fail,
)


def check_loss(cfg: DictConfig) -> None:
    """dllab's loss names must fit the task; any other name needs a ``loss._target_``."""
    loss = cfg.loss.get("name", AUTO)  # as dllab's module reads it
    target = cfg.loss.get("_target_")
    if not (isinstance(loss, str) and loss):
        raise fail("loss.name", loss, "must be a loss name (auto, cross_entropy, ...) or, with loss._target_, a label")
    if target is not None and (not isinstance(target, str) or "." not in target):
        raise fail("loss._target_", target, "must be a class path, e.g. torch.nn.CrossEntropyLoss")
    if loss not in (AUTO, *ALL_LOSSES) and target is None:
        raise fail(
            "loss.name", loss, f"unknown loss; choose one of {', '.join((AUTO, *ALL_LOSSES))}, or give loss._target_"
        )
    task = source_of(cfg.data).task
    if task != AUTO:  # else known once the data is read
        check_loss_fits(loss, task, f"data={cfg.data.name}")
    if loss not in ALL_LOSSES:
        return  # a loss of one's own: its class checks its arguments
    for field, ok, allowed in (
        ("label_smoothing", lambda v: 0 <= v < 1, "must be a number in [0, 1)"),
        ("margin", lambda v: v > 0, "must be a positive number"),
        ("delta", lambda v: v > 0, "must be a positive number"),
    ):
        if field in cfg.loss:
            check_number(cfg, f"loss.{field}", ok, allowed)


def check_loss_fits(loss: str, task: str, data: str) -> None:
    if loss in ALL_LOSSES and loss not in LOSSES[task]:
        raise ConfigError(
            f"loss={loss} does not fit {data}, a {task} task; valid for {task}: {', '.join(LOSSES[task])}"
        )
