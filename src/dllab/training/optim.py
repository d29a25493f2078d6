"""Optimizers and schedulers from their configs.

Configs hold plain dicts (``_target_`` plus arguments, ``_partial_: true``), so that
checkpoints keep primitive hyperparameters only; the module finishes them here with
its parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from dllab.training.optim_checks import SCHEDULER_OWN_KEYS


def build_optimizer(config: Mapping[str, Any], params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Instantiate the optimizer partial with ``params``.

    ``fused: auto`` (the default in conf/optimizer) uses torch's fused kernel where the
    optimizer and the parameters' device support it (faster than the default per-tensor
    loop, docs/performance.md), else torch's default implementation.
    """
    config = dict(config)
    fused = config.pop("fused", "auto")
    params = list(params)
    # plain lists, not ListConfig: torch keeps some arguments as given (NAdam's betas) in the
    # param groups, which a checkpoint must load with torch.load(weights_only=True)
    factory = instantiate(config, _partial_=True, _convert_="all")
    if fused != "auto":
        return factory(params, fused=bool(fused)) if fused is not None else factory(params)
    accepts_fused = "fused" in inspect.signature(factory.func).parameters
    if accepts_fused:
        try:
            return factory(params, fused=True)
        except (RuntimeError, ValueError):  # device or dtype without a fused kernel
            pass
    return factory(params)


def build_scheduler(config: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer) -> Any:
    """The learning-rate scheduler for ``optimizer``, or None for ``scheduler=none``."""
    if not config or not config.get("_target_"):
        return None
    args = {k: v for k, v in config.items() if k not in SCHEDULER_OWN_KEYS}
    return instantiate(args, _partial_=True, _convert_="all")(optimizer)
