"""A sweep's own settings, checked before it makes anything: its launcher's (``hydra.launcher.*``
of the stacked, joblib, SLURM and submitit-local launchers), its Optuna sweeper's (direction,
trials, heartbeats, sampler, pruner, storage) and the training config of its jobs. Torch-free;
called by :class:`dllab.sweeps.summary.SweepSummaryCallback` at the start of every multirun, by
the launchers and by the sweeper itself. Each bad setting is one line naming its field
(:func:`one_line_errors`: exit 2, no traceback)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dllab.errors import ConfigError
from dllab.field_checks import (
    BOOL,
    TEXT,
    TEXT_OR_NULL,
    Rule,
    apply,
    check_seed,
    fail,
    integer,
    is_int,
    one_of,
    real,
)

LAUNCHER = "hydra.launcher"
SWEEPER = "hydra.sweeper"

# joblib's pre_dispatch: all, a number, or an expression of n_jobs (joblib evaluates it)
PRE_DISPATCH = re.compile(r"^(all|\d+|(\d+\s*\*\s*)?n_jobs)$")
MAX_NBYTES = re.compile(r"^\d+[KMG]?$")
PRE_DISPATCH_RULE: Rule = (
    lambda v: (is_int(v) and v >= 1) or (isinstance(v, str) and bool(PRE_DISPATCH.match(v.strip()))),
    "must be all, an integer >= 1 or an expression of n_jobs such as 2*n_jobs",
)
JOBLIB: dict[str, Rule] = {
    "n_jobs": ((lambda v: is_int(v) and v != 0), "must be an integer other than 0 (-1: one job per core)"),
    "backend": one_of("loky", "multiprocessing", "threading", "sequential", null=True),
    "prefer": one_of("processes", "threads", null=True),
    "require": one_of("sharedmem", null=True),
    "verbose": integer(0),
    "timeout": real(lambda v: v > 0, "must be null or a number of seconds > 0", null=True),
    "pre_dispatch": PRE_DISPATCH_RULE,
    "batch_size": ((lambda v: v == "auto" or (is_int(v) and v >= 1)), "must be auto or an integer >= 1"),
    "temp_folder": TEXT_OR_NULL,
    "max_nbytes": (
        lambda v: v is None or (is_int(v) and v >= 0) or (isinstance(v, str) and bool(MAX_NBYTES.match(v))),
        "must be null, an integer >= 0 or a size such as 1M",
    ),
    "mmap_mode": one_of("r+", "r", "w+", "c", null=True),
}
# submitit's keys that dllab's launchers set (conf/hydra/launcher/slurm.yaml, submitit_local.yaml)
SUBMITIT: dict[str, Rule] = {
    "timeout_min": integer(1, what="minutes"),
    "nodes": integer(1),
    "tasks_per_node": integer(1),
    "gpus_per_node": integer(0, null=True),
    "cpus_per_task": integer(1, null=True),
    "mem_gb": real(lambda v: v > 0, "must be null or a number of GB > 0", null=True),
    "name": TEXT,
    "stderr_to_stdout": BOOL,
    "submitit_folder": TEXT,
}
SLURM: dict[str, Rule] = {
    **SUBMITIT,
    "partition": TEXT_OR_NULL,
    "signal_delay_s": integer(0, what="seconds"),
    "max_num_timeout": integer(0),
    "array_parallelism": integer(1),
}
STACKED: dict[str, Rule] = {"max_stack": integer(1, what="models in one stack")}
# the launchers by the end of their _target_
LAUNCHERS: dict[str, dict[str, Rule]] = {
    "StackedLauncher": STACKED,
    "JoblibLauncher": JOBLIB,
    "SlurmLauncher": SLURM,
    "LocalLauncher": SUBMITIT,
}

POSITIVE: Rule = ((lambda v: is_int(v) and v >= 1), "must be a positive integer")
SAMPLER: dict[str, Rule] = {
    "name": ((lambda v: v in ("tpe", "random")), "choose one of tpe, random"),
    "n_startup_trials": integer(0, what="trials sampled at random before TPE"),
}
PRUNER: dict[str, Rule] = {
    "enabled": BOOL,
    "n_startup_trials": integer(0, what="trials finished before any is pruned"),
    "n_warmup_steps": integer(0, what="epochs before a trial can be pruned"),
    "interval_steps": integer(1, what="epochs between pruning checks"),
}
OPTUNA: dict[str, Rule] = {
    "direction": ((lambda v: v in ("maximize", "minimize")), "choose one of maximize, minimize"),
    "study_name": TEXT,
    "n_trials": POSITIVE,
    "n_jobs": POSITIVE,
    "heartbeat_interval": POSITIVE,
    "grace_period": ((lambda v: v is None or POSITIVE[0](v)), "must be a positive integer, or null"),
    "storage": TEXT_OR_NULL,
}


def select(node: Any, key: str) -> Any:
    """A setting's value, interpolations resolved; one line when one cannot be."""
    try:
        return node.get(key) if isinstance(node, DictConfig) else (node or {}).get(key)
    except Exception as err:  # an interpolation of a missing key or an unknown resolver
        raise ConfigError(f"{key}: cannot be resolved ({str(err).splitlines()[0]})") from err


def check_rules(prefix: str, node: Any, rules: Mapping[str, Rule], plain: bool = False) -> None:
    """Each key of ``rules`` that ``node`` sets, against its rule (``plain``: the value shown
    as written, not as its Python repr, as the sweeper's messages always were)."""
    if node is not None and not isinstance(node, Mapping | DictConfig):
        raise fail(prefix, node, f"must be a mapping of {', '.join(rules)}")
    for key, rule in rules.items():
        if key in (node or {}):
            try:
                value = select(node, key)
            except ConfigError as err:
                raise ConfigError(f"{prefix}.{err}") from None
            if plain and not rule[0](value):
                raise ConfigError(f"{prefix}.{key}={value}: {rule[1]}")
            apply(f"{prefix}.{key}", value, rule)


def launcher_rules(target: str) -> dict[str, Rule]:
    """The rules of the launcher ``target`` names (none for Hydra's basic launcher)."""
    name = target.rsplit(".", 1)[-1]
    return next((rules for end, rules in LAUNCHERS.items() if name.endswith(end)), {})


def check_launcher(launcher: Any) -> None:
    """``hydra.launcher.*`` of the configured launcher."""
    if not launcher:
        return
    check_rules(LAUNCHER, launcher, launcher_rules(str(select(launcher, "_target_") or "")))


def max_stack(launcher: Any) -> int:
    """The stacked launcher's ``max_stack``, checked (one line and exit 2 when bad)."""
    with one_line_errors():
        check_rules(LAUNCHER, launcher, STACKED)
    return int(select(launcher, "max_stack"))


def check_sweeper(settings: Any) -> None:
    """The Optuna sweeper's settings (``hydra.sweeper.*``), the storage included; the search
    space (``params``) is checked by :func:`dllab.sweeps.search_space.search_space`."""
    from dllab.sweeps.storage import check_storage

    check_rules(SWEEPER, settings, OPTUNA, plain=True)
    check_rules(f"{SWEEPER}.sampler", select(settings, "sampler"), SAMPLER, plain=True)
    seed = select(select(settings, "sampler"), "seed")
    if seed is not None:
        check_seed(f"{SWEEPER}.sampler.seed", seed)
    check_rules(f"{SWEEPER}.pruner", select(settings, "pruner"), PRUNER)
    grace, interval = select(settings, "grace_period"), select(settings, "heartbeat_interval")
    if grace is not None and is_int(interval) and grace <= interval:
        raise fail(
            f"{SWEEPER}.grace_period", grace, f"must be more than heartbeat_interval ({interval}), or null for twice it"
        )
    storage = select(settings, "storage")
    if storage:
        check_storage(storage)


def is_optuna(sweeper: Any) -> bool:
    return str(select(sweeper, "_target_") or "").endswith("DllabOptunaSweeper")


def job_overrides(config: DictConfig) -> list[list[str]]:
    """The overrides of the jobs whose configs can be known before the sweep starts: every job of
    Hydra's basic sweeper; the fixed overrides of an Optuna sweep (its first trial's values come
    from the search space, whose defaults are the config's own); none for other sweepers."""
    from dllab import compat

    task = [str(o) for o in (OmegaConf.select(config, "hydra.overrides.task") or [])]
    sweeper = OmegaConf.select(config, SWEEPER)
    target = str(select(sweeper, "_target_") or "")
    if target.endswith(".BasicSweeper"):
        params = [f"{k}={v}" for k, v in (select(sweeper, "params") or {}).items()]
        return compat.basic_sweeper_grid([*params, *task])
    if is_optuna(sweeper):
        from dllab.sweeps.search_space import parse

        return [[o.input_line for o in parse(task) if not o.is_sweep_override() and o.input_line]]
    return []


MAX_JOBS_CHECKED = 64  # a larger grid: its first jobs (each job checks its own config again)


def check_jobs(config: DictConfig, jobs: list[list[str]] | None = None) -> None:
    """The jobs' training configs, as each run would check its own before training: when every
    job fails on a field the sweep does not vary (``optimized_metric=val/foo``: each would fail
    the same way), the sweep is refused before any job runs, naming the field and the first job.
    A job whose own swept values are bad is left to fail as its run does (a ``config_error``
    in the summary), while the others train. Each job's Hydra config is the current one while
    it is checked, as in its run."""
    from hydra.core.global_hydra import GlobalHydra

    from dllab import compat
    from dllab.sweeps.jobs import swept_keys

    if not GlobalHydra.instance().is_initialized():
        return
    loader = GlobalHydra.instance().config_loader()
    state = compat.hydra_config_state()
    errors: list[ConfigError] = []
    try:
        for number, overrides in enumerate((job_overrides(config) if jobs is None else jobs)[:MAX_JOBS_CHECKED]):
            try:
                job = loader.load_sweep_config(config, list(overrides))
            except Exception:  # Hydra's own error, which its sweep reports as it does
                return
            try:
                check_job(job, number, overrides)
            except ConfigError as err:
                errors.append(err)
            else:
                return  # a job that trains: the sweep goes on, a bad job fails alone
    finally:
        compat.restore_hydra_config(state)
    if errors and not varied(field_of(str(errors[0])), swept_keys(config)):
        raise errors[0]


FIELD = re.compile(r"^([\w.+~/\-]+?)(=|: )")


def field_of(message: str) -> str:
    """The dotted field a one-line error starts with (``optimizer.lr=nan: ...`` -> optimizer.lr)."""
    found = FIELD.match(message)
    return found.group(1) if found else message


def varied(field: str, swept: list[str]) -> bool:
    """Whether the sweep varies ``field``: the key itself, a group it is in, or a key inside it."""
    return any(field == k or field.startswith(f"{k}.") or k.startswith(f"{field}.") for k in swept)


def check_job(job: DictConfig, number: int, overrides: list[str]) -> None:
    """One job's config (Hydra's part included) checked as its run checks it."""
    from pathlib import Path

    from omegaconf import open_dict, read_write

    from dllab import compat
    from dllab.checks import check_config
    from dllab.overrides import shown_overrides

    with read_write(job.hydra), open_dict(job.hydra):
        job.hydra.job.num = number
        job.hydra.job.id = number
        job.hydra.runtime.output_dir = str(Path(str(job.hydra.sweep.dir)).absolute() / str(job.hydra.sweep.subdir))
    compat.set_hydra_config(job)
    task = OmegaConf.masked_copy(job, [str(k) for k in job if k != "hydra"])
    try:
        check_config(task)
    except ConfigError as err:
        shown = " ".join(shown_overrides(list(overrides))) or "no overrides"
        raise ConfigError(f"{err} (job {number} of the sweep: {shown})") from None


def check_sweep(config: DictConfig) -> None:
    """Everything a multirun can be refused for before it starts: its launcher's and sweeper's
    settings, then its jobs' configs."""
    launcher = OmegaConf.select(config, LAUNCHER)
    check_launcher(launcher)
    sweeper = OmegaConf.select(config, SWEEPER)
    if is_optuna(sweeper):
        check_sweeper(sweeper)
    if "slurm" not in str((launcher or {}).get("_target_", "")).lower():
        # (a SLURM job runs on a cluster node, whose devices this machine cannot check: the
        # launcher checks the partition's GPUs itself, and each job its own config there)
        check_jobs(config)


def refuse_bad_sweep(config: DictConfig) -> None:
    """:func:`check_sweep`, a bad setting ending the command with one line and exit 2: at the start
    of every multirun, before the sweeper, the launcher or a job makes anything."""
    with one_line_errors(config):
        check_sweep(config)


@contextmanager
def one_line_errors(config: DictConfig | None = None) -> Iterator[None]:
    """A bad sweep setting ends dllab-train as a bad config ends a run: one line on stderr,
    exit status 2 (the traceback with HYDRA_FULL_ERROR=1 or verbose=true)."""
    try:
        yield
    except ConfigError as err:
        verbose = config is not None and OmegaConf.select(config, "verbose", default=False) is True
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
