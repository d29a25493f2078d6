"""This process's Hydra job: its run mode and its command-line overrides, readable.

Torch-free and at the bottom of dllab's imports: the loggers (TensorBoard run names, the
HParams tab), the pictures' titles, the sweep's summary and the launchers all name a job by
its overrides, one way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig

# Overrides a sweeper adds for its own bookkeeping; not hyperparameters, never shown.
INTERNAL_PREFIXES = ("callbacks.optuna_pruning.", "hydra.", "hydra/")


def is_multirun() -> bool:
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def split_override(override: str) -> tuple[str, str]:
    """``key=value`` (also ``+key=``, ``++key=``, ``group=option``) as (key, value)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def shown_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that are hyperparameters (a sweeper's bookkeeping left out)."""
    return [o for o in overrides if not split_override(o)[0].startswith(INTERNAL_PREFIXES)]


def job_overrides() -> list[str]:
    """This job's task overrides in a multirun; empty in a single run."""
    if not is_multirun():
        return []
    return shown_overrides(list(HydraConfig.get().overrides.task))


def short_key(key: str) -> str:
    """``model.activation`` -> ``activation``: the last part of a dotted key."""
    return key.rsplit(".", 1)[-1].rsplit("/", 1)[-1]


def run_label(overrides: Sequence[str], limit: int = 120) -> str:
    """A readable, file-name-safe label from overrides: ``data=xor,activation=tanh``."""
    parts = []
    for override in overrides:
        key, value = split_override(override)
        parts.append(f"{short_key(key)}={value}")
    label = re.sub(r"[^\w=,.+\-\[\]]", "_", ",".join(parts))
    return label[:limit] or "defaults"


SWEPT_KEYS_ENV = "DLLAB_SWEPT_KEYS"
