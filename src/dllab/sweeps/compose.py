"""A multirun's job configs composed once each, and their defaults lists once per sweep.

Hydra composes every job's config from scratch (the defaults list, every file it names, then
the job's overrides), and its BasicSweeper does it twice per job: once to check the batch,
once more in the launcher. A grid's jobs mostly differ in values (``seed=0,1,2``,
``optimizer.lr=...``), not in the files that make them up. While a multirun runs,
:class:`SweepCompositions` takes the place of Hydra's ``load_sweep_config``: a job composed
before is handed out again (a copy), and a job whose group choices an earlier job had is that
job's composed base with its own value overrides applied by Hydra's own code, so its config,
``.hydra/`` files and run dir are the ones Hydra would make (``tests/test_compose.py``
compares them on many override lists).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dllab import compat


class SweepCompositions:
    """Hydra's ``load_sweep_config(loader, master_config, overrides)``, remembered per job
    and per distinct defaults list. ``load`` is Hydra's own method, used for each new base."""

    def __init__(self, load: Callable[..., DictConfig]) -> None:
        self.load = load
        self.jobs: dict[tuple[Any, ...], DictConfig] = {}
        self.bases: dict[tuple[Any, ...], DictConfig] = {}
        self.composed = 0  # how many times Hydra composed a config from its files

    def __call__(self, loader: Any, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        hydra_overrides = [str(o) for o in master_config.hydra.overrides.hydra]
        config_name = master_config.hydra.job.config_name
        key = (id(loader), config_name, tuple(hydra_overrides), tuple(sweep_overrides))
        if key not in self.jobs:
            self.jobs[key] = self._compose(loader, master_config, hydra_overrides, list(sweep_overrides))
        config = copy.deepcopy(self.jobs[key])
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config

    def _compose(
        self, loader: Any, master_config: DictConfig, hydra_overrides: list[str], sweep_overrides: list[str]
    ) -> DictConfig:
        config_name = master_config.hydra.job.config_name
        parsed, config_overrides = compat.hydra_job_overrides(loader, config_name, hydra_overrides + sweep_overrides)
        is_value = [any(o is c for c in config_overrides) and not o.is_hydra_override() for o in parsed]
        values = [o for o, value in zip(parsed, is_value, strict=True) if value]
        offset = len(hydra_overrides)
        groups = [line for i, line in enumerate(sweep_overrides) if not is_value[offset + i]]
        base_key = (id(loader), config_name, tuple(hydra_overrides), tuple(groups))
        if base_key not in self.bases:
            self.bases[base_key] = self.load(loader, master_config, groups)
            self.composed += 1
        config = copy.deepcopy(self.bases[base_key])
        compat.hydra_apply_overrides(values, config)
        task = [o for o in parsed if not o.is_hydra_override()]
        config.hydra.overrides.task = [o.input_line for o in task]
        config.hydra.job.override_dirname = compat.hydra_overrides_dirname(task, config)
        return config


ACTIVE: list[SweepCompositions] = []  # the one in Hydra's place, while a multirun runs


def compose_once() -> SweepCompositions:
    """Put a :class:`SweepCompositions` in the place of Hydra's ``load_sweep_config`` (until
    :func:`compose_as_hydra`); a second call keeps the first."""
    if not ACTIVE:
        compositions = SweepCompositions(compat.hydra_sweep_config_loader())

        def load_sweep_config(loader: Any, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
            return compositions(loader, master_config, sweep_overrides)

        compat.set_hydra_sweep_config_loader(load_sweep_config)
        ACTIVE.append(compositions)
    return ACTIVE[0]


def compose_as_hydra() -> None:
    """Give Hydra its own ``load_sweep_config`` back and forget the compositions."""
    if ACTIVE:
        compat.set_hydra_sweep_config_loader(ACTIVE.pop().load)
