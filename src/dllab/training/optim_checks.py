"""The optimizer and scheduler groups, torch-free: the values of their keys (``lr > 0``, betas,
momentum, decay factors, ...), the options dllab's loop does not fit, and the keys dllab itself
reads (``fused``, ``monitor``). Their key names are bound to the classes' signatures once torch
is imported: :func:`check_optimizer_keys` for the solo run and the stacked optimizer alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from dllab.catalog import AUTO
from dllab.errors import ConfigError
from dllab.field_checks import (
    BOOL,
    BOOL_OR_NULL,
    NON_NEGATIVE,
    Rule,
    apply,
    check_number,
    fail,
    integer,
    is_list,
    is_number,
    one_of,
    real,
)
from dllab.targets import check_keys, class_keys

# The optimizer's parameters that dllab passes itself, and the keys it reads itself: ``fused:
# auto`` (dllab.training.optim.build_optimizer passes ``fused`` on where the class takes it).
OPTIMIZER_PASSED = ("params",)
OPTIMIZER_OWN_KEYS = ("fused",)
# Options of torch's optimizers that dllab's training loop does not fit, refused when set true.
OPTIMIZER_REFUSED = {
    "maximize": "dllab minimizes the loss (true would climb it); leave it false",
    "capturable": "for CUDA graphs, which dllab's loop does not capture; leave it false",
    "differentiable": "for differentiating through the optimizer step, which dllab's loop does not do; leave it false",
}
OPTIMIZER_RULES: dict[str, Rule] = {
    "lr": real(lambda v: v > 0, "must be a positive number"),
    "betas": (
        lambda v: is_list(v) and len(v) == 2 and all(is_number(b) and 0 <= b < 1 for b in v),
        "must be a list of two numbers in [0, 1), e.g. [0.9,0.999]",
    ),
    "eps": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "lr_decay": NON_NEGATIVE,
    "momentum_decay": NON_NEGATIVE,
    "initial_accumulator_value": NON_NEGATIVE,
    "momentum": real(lambda v: 0 <= v < 1, "must be a number in [0, 1)"),
    "dampening": real(lambda v: 0 <= v <= 1, "must be a number in [0, 1]"),
    "alpha": real(lambda v: 0 <= v < 1, "must be a number in [0, 1)"),
    "amsgrad": BOOL,
    "nesterov": BOOL,
    "centered": BOOL,
    "decoupled_weight_decay": BOOL,
    "maximize": BOOL,
    "capturable": BOOL,
    "differentiable": BOOL,
    "foreach": BOOL_OR_NULL,
    "fused": (lambda v: v is None or v == AUTO or isinstance(v, bool), "must be auto, true, false or null"),
}


def check_optimizer(cfg: DictConfig) -> None:
    """The values of the optimizer's keys (lr, weight_decay, betas, ...), for any
    ``optimizer._target_``; its key names: :func:`check_optimizer_keys`."""
    optimizer = cfg.optimizer
    target = optimizer.get("_target_")
    if not isinstance(target, str) or "." not in target:
        raise fail("optimizer._target_", target, "must be a class path, e.g. torch.optim.Adam")
    check_number(cfg, "optimizer.lr", lambda v: v > 0, "must be a positive number")
    for key, value in optimizer.items():
        if key in OPTIMIZER_RULES:
            apply(f"optimizer.{key}", value, OPTIMIZER_RULES[key])
        if key in OPTIMIZER_REFUSED and value:
            raise fail(f"optimizer.{key}", value, OPTIMIZER_REFUSED[key])
    if optimizer.get("nesterov") and (not optimizer.get("momentum") or optimizer.get("dampening")):
        raise ConfigError("optimizer.nesterov=true: needs optimizer.momentum > 0 and optimizer.dampening=0")
    fused = optimizer.get("fused", AUTO)
    if fused is True and optimizer.get("foreach"):
        raise fail("optimizer.foreach", True, "not with optimizer.fused=true (torch takes one of them); use null")


def check_optimizer_keys(config: Mapping[str, Any], cls: type) -> None:
    """Bind an optimizer config's keys to its class ``cls`` (imported): no key it does not take
    but dllab's own, and ``fused`` other than auto or null only where the class has a fused
    kernel. The solo run (:func:`dllab.checks.check_targets`) and the stacked optimizer both
    call this."""
    check_keys("optimizer", config, cls, OPTIMIZER_PASSED, OPTIMIZER_OWN_KEYS)
    fused = config.get("fused", AUTO)
    if fused not in (AUTO, None) and "fused" not in class_keys(cls)[0]:
        raise fail("optimizer.fused", fused, f"{cls.__name__} has no fused kernel; use auto")


# The scheduler's parameters that dllab passes itself: ``optimizer``, and ``last_epoch`` (a
# resumed run restores the scheduler's state). ``monitor`` is dllab's own: the metric a
# ReduceLROnPlateau reads (dllab.training.module.TaskModule), taken by no other scheduler.
SCHEDULER_PASSED = ("optimizer", "last_epoch")
SCHEDULER_OWN_KEYS = ("monitor",)
# The schedulers conf/scheduler ships, whose values these rules describe.
SCHEDULERS = (
    "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
)
SCHEDULER_RULES: dict[str, Rule] = {
    "step_size": integer(1, what="epochs between two decays"),
    "gamma": real(
        lambda v: 0 < v <= 1,
        "must be a number in (0, 1] (the learning rate is multiplied by it every step_size epochs)",
    ),
    "T_max": integer(
        1,
        what="epochs from optimizer.lr down to eta_min; it follows trainer.max_epochs unless set, so set it "
        "when trainer.max_epochs=-1",
    ),
    "eta_min": NON_NEGATIVE,
    "mode": one_of("min", "max"),
    "factor": real(lambda v: 0 < v < 1, "must be a number in (0, 1) (the learning rate is multiplied by it)"),
    "patience": integer(0, what="epochs without improvement before the learning rate drops"),
    "threshold": NON_NEGATIVE,
    "threshold_mode": one_of("rel", "abs"),
    "cooldown": integer(0, what="epochs to wait after a drop"),
    "min_lr": NON_NEGATIVE,
    "eps": NON_NEGATIVE,
    "monitor": (lambda v: isinstance(v, str) and bool(v), "must be a logged metric, e.g. val/loss"),
}


def check_scheduler(cfg: DictConfig) -> None:
    """scheduler=none has no keys; the values of the shipped schedulers' keys; another
    ``scheduler._target_`` checks its own values when it is built. The key names are bound to
    the class once torch is imported (:func:`dllab.checks.check_targets`)."""
    scheduler = cfg.scheduler
    target = scheduler.get("_target_")
    if target is None:
        extra = [k for k in scheduler if k != "_target_"]
        if extra:
            raise fail(
                f"scheduler.{extra[0]}",
                scheduler.get(extra[0]),
                "no scheduler is set (scheduler._target_ is null); choose scheduler=step, cosine or plateau",
            )
        return
    if not isinstance(target, str) or "." not in target:
        raise fail("scheduler._target_", target, "must be null or a class path, e.g. torch.optim.lr_scheduler.StepLR")
    if target not in SCHEDULERS:
        return
    for key in scheduler:
        if key in SCHEDULER_RULES:
            apply(f"scheduler.{key}", scheduler.get(key), SCHEDULER_RULES[str(key)])
