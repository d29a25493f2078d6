"""``hydra/sweeper=dllab_optuna``: a thin Hydra sweeper on Optuna's ask/tell API.

The search itself lives in :mod:`dllab.sweeps.optuna_search`; this module only registers
the config schema and the plugin class (and imports nothing heavy: Hydra scans its plugins
at every start).
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class SamplerConf:
    # tpe (Bayesian, the default) or random
    name: str = "tpe"
    seed: int | None = 42
    # TPE samples at random for its first n_startup_trials trials
    n_startup_trials: int = 5


@dataclass
class PrunerConf:
    # median pruning of hopeless trials from their per-epoch validation metric
    enabled: bool = True
    # trials that finish before pruning starts, and epochs before a trial can be pruned
    n_startup_trials: int = 3
    n_warmup_steps: int = 3
    interval_steps: int = 1


@dataclass
class DllabOptunaSweeperConf:
    _target_: str = "hydra_plugins.dllab_optuna_sweeper.dllab_optuna_sweeper.DllabOptunaSweeper"
    # maximize or minimize the value the job returns (optimized_metric)
    direction: str = "maximize"
    study_name: str = "dllab"
    # null: sqlite:///<sweep dir>/optuna.db, so re-running the same command resumes the study;
    # sqlite:///<file> (one machine's disk), postgresql://<user>@<host>[:<port>]/<db> (many nodes;
    # the password in ~/.pgpass or PGPASSWORD, not here: the URL is saved in multirun.yaml),
    # journal://<file> (a shared file system such as NFS)
    storage: str | None = None
    # database storages: seconds between the heartbeats a sweeper records for its running trials;
    # a trial without one for grace_period seconds (null: twice the interval) has lost its sweeper
    # and is failed as interrupted by any sweeper of the study (all must use the same two values)
    heartbeat_interval: int = 60
    grace_period: int | None = None
    # trials of the study in all (finished ones, also those of earlier runs, count)
    n_trials: int = 20
    # trials launched together (run in parallel by a parallel launcher)
    n_jobs: int = 1
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # key: search space, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1))
    params: dict[str, str] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="dllab_optuna", node=DllabOptunaSweeperConf, provider="dllab_optuna_sweeper"
)


class DllabOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from dllab.sweeps.optuna_search import OptunaSearch
        from dllab.sweeps.settings import one_line_errors

        with one_line_errors():
            self.search = OptunaSearch(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from dllab.sweeps.settings import one_line_errors

        with one_line_errors(self.search.config):
            return self.search.sweep(arguments)
