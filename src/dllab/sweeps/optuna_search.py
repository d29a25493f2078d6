"""The Optuna search behind ``hydra/sweeper=dllab_optuna`` (current Optuna, ask/tell).

Each trial is one Hydra job, launched by whatever launcher is configured (in batches of
``n_jobs``), so the job number is the trial number and the job dir is
``<sweep dir>/<trial number>/``. The study lives in ``<sweep dir>/optuna.db`` by default;
conf/hparams_search/ fixes the sweep dir per study (no timestamp), so running the same
command again continues the study up to ``n_trials`` finished trials.

A job that fails (exception, divergence, bad config) is told to Optuna as FAIL, so the
sampler never learns from it, and the search goes on. A job stopped by the pruner
(``dllab.sweeps.pruning.OptunaPruning``, reporting per-epoch validation values to its
trial through the same storage) is told as PRUNED.

Copies of one sweep may run at once on one machine (the same command started twice): they
take turns on a lock file beside the SQLite file to create the storage, to ask each batch of
trials (so a batch's trial numbers, its job dirs, are consecutive) and to write the results,
and together they stop when the study holds ``n_trials`` trials. A sweep marks as
interrupted only the running trials of sweeps that are gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import groupby
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from dllab.errors import ConfigError
from dllab.sweeps.jobs import process_alive
from dllab.sweeps.search_space import override_value, search_space

log = logging.getLogger("dllab.sweeps")

DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random")
PRUNER_ATTR = "dllab_pruner"  # study user attribute: the pruner's settings, for the jobs
PRUNING_KEY = "callbacks.optuna_pruning"
RESULTS_FILE = "optimization_results.yaml"
OWNER_ATTR = "sweeper"  # trial user attribute: host:pid of the sweep process that asked the trial


class OptunaSearch:
    def __init__(
        self,
        direction: str = "maximize",
        study_name: str = "dllab",
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: dict[str, Any] | None = None,
        pruner: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ConfigError(f"hydra.sweeper.direction={direction}: choose one of {', '.join(DIRECTIONS)}")
        sampler = dict(sampler or {})
        if sampler.get("name", "tpe") not in SAMPLERS:
            raise ConfigError(f"hydra.sweeper.sampler.name={sampler.get('name')}: choose one of {', '.join(SAMPLERS)}")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if int(value) < 1:
                raise ConfigError(f"hydra.sweeper.{key}={value}: must be a positive integer")
        if storage:
            check_storage(storage)
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.sampler_cfg, self.pruner_cfg = sampler, dict(pruner or {})
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.storage_url = ""  # the storage given, or the sweep dir's optuna.db

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # --- the study ----------------------------------------------------------------------
    def make_sampler(self, number: int = 0) -> Any:
        """The sampler that proposes trial ``number``, seeded with ``seed + number``: a trial's
        proposal depends on the seed, its number and the trials before it, not on which process
        asks, so a resumed sweep or a second copy does not propose the first copy's trials again."""
        import optuna

        seed = self.sampler_cfg.get("seed")
        seed = None if seed is None else int(seed) + number
        if self.sampler_cfg.get("name", "tpe") == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(self.sampler_cfg.get("n_startup_trials", 5)))

    def pruning(self) -> bool:
        return bool(self.pruner_cfg.get("enabled", True))

    def open_study(self) -> Any:
        """Create or load the study. Called under :func:`storage_lock`: Optuna's first set-up
        of a storage's tables is not safe against another process doing it at the same moment."""
        import optuna
        from sqlalchemy.exc import SQLAlchemyError

        storage = self.storage_url
        try:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                sampler=self.make_sampler(),
                pruner=make_pruner(self.pruner_cfg),
                direction=optuna.study.StudyDirection[self.direction.upper()],
                load_if_exists=True,
            )
        except (ImportError, SQLAlchemyError) as err:  # no driver for the URL, server not there, not a database
            reason = str(getattr(err, "orig", None) or err).splitlines()[0]
            raise ConfigError(f"hydra.sweeper.storage={storage}: cannot open it ({reason})") from err
        existing = study.direction.name.lower()
        if existing != self.direction:
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction}: the study {self.study_name} in {storage} "
                f"was made to {existing}; use another study_name or storage"
            )
        study.set_user_attr(PRUNER_ATTR, self.pruner_cfg)
        return study

    def fail_orphaned_trials(self, study: Any) -> None:
        """Tell FAIL the running trials that no sweep will tell: those of an interrupted sweep.
        A trial of a copy of this sweep still running (same host, its process alive) is left
        alone, and so is one asked on another host, whose process cannot be checked from here."""
        from optuna.trial import TrialState

        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            owner_host, _, pid = str(trial.user_attrs.get(OWNER_ATTR, "")).rpartition(":")
            if owner_host and owner_host != host:
                log.warning("trial %d: asked by %s, on another host; left running", trial.number, owner_host)
                continue
            if owner_host and pid.isdigit() and process_alive(int(pid)):
                continue
            # set before the tell: a told trial is final
            study._storage.set_trial_user_attr(trial._trial_id, "status", "interrupted")
            study.tell(trial.number, state=TrialState.FAIL)

    def ask_batch(self, study: Any, space: dict[str, Any]) -> list[Any]:
        """The next batch of trials (at most ``n_jobs``, none once the study holds ``n_trials``,
        counting those of other copies of this sweep). Called under :func:`storage_lock`, so
        that the batch's trial numbers are consecutive."""
        done = len(study.get_trials(deepcopy=False))
        trials = []
        for number in range(done, max(done, min(done + self.n_jobs, self.n_trials))):
            study.sampler = self.make_sampler(number)
            trials.append(study.ask(space))
        owner = f"{socket.gethostname()}:{os.getpid()}"
        for trial in trials:
            study._storage.set_trial_user_attr(trial._trial_id, OWNER_ATTR, owner)
        return trials

    # --- the sweep ----------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        assert self.config is not None and self.launcher is not None
        space, fixed = search_space(self.params, arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        # the first folder this sweep makes (the sweep dir or one above it)
        made = next((d for d in [*reversed(sweep_dir.parents), sweep_dir] if not d.exists()), None)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.storage_url = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').absolute()}"
        try:
            with storage_lock(self.storage_url, sweep_dir):
                OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
                study = self.open_study()
                self.fail_orphaned_trials(study)
                done = len(study.get_trials(deepcopy=False))
        except ConfigError:
            remove_unswept(sweep_dir, made)
            raise
        if done:
            log.info("study %s: %d trials already, continuing to %d", self.study_name, done, self.n_trials)
        pruning = self.pruning() and OmegaConf.select(self.config, PRUNING_KEY) is not None
        returns: list[Any] = []
        while True:
            with storage_lock(self.storage_url, sweep_dir):
                asked = self.ask_batch(study, space)
            if not asked:
                break
            # consecutive numbers: one launch (trial i runs in job dir i); a trial asked by hand in
            # between would split the batch
            for _, run in groupby(enumerate(asked), key=lambda pair: pair[1].number - pair[0]):
                trials = [trial for _, trial in run]
                batch = []
                for trial in trials:
                    overrides = [*fixed, *(f"{k}={override_value(v)}" for k, v in trial.params.items())]
                    if pruning:
                        overrides += [
                            f"{PRUNING_KEY}.storage='{self.storage_url}'",
                            f"{PRUNING_KEY}.study_name='{self.study_name}'",
                            f"{PRUNING_KEY}.trial_id={trial._trial_id}",
                        ]
                    batch.append(overrides)
                results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
                for trial, result in zip(trials, results, strict=True):
                    self.tell(study, trial, result)
                returns.append(results)
        with storage_lock(self.storage_url, sweep_dir):  # the last copy to finish writes the whole study
            self.write_results(study, sweep_dir)
        return returns

    def tell(self, study: Any, trial: Any, result: JobReturn) -> None:
        from optuna.trial import TrialState

        metrics = job_metrics(result)
        status = metrics.get("status", "failed" if result.status == JobStatus.FAILED else "completed")
        value = result._return_value if result.status == JobStatus.COMPLETED else None
        study._storage.set_trial_user_attr(trial._trial_id, "status", status)
        if metrics.get("error"):
            study._storage.set_trial_user_attr(trial._trial_id, "error", str(metrics["error"])[:500])
        if status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif status == "completed" and isinstance(value, int | float) and math.isfinite(value):
            study.tell(trial, float(value))
        else:
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d (job %d) %s: %s", trial.number, trial.number, status, metrics.get("error", ""))

    def write_results(self, study: Any, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState if s.is_finished()}
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {
            "name": self.study_name,
            "storage": self.storage_url,
            "direction": self.direction,
            "n_trials": len(trials),
            "trials": counts,
        }
        if completed:
            best = study.best_trial
            results |= {
                "best_value": float(best.value),
                "best_params": dict(best.params),
                "best_trial": best.number,
                "best_job_dir": str(sweep_dir / str(best.number)),
            }
        else:
            results |= {"best_value": None, "best_params": None}
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        log.info("best of %d trials: %s", len(trials), results.get("best_value"))
        print(
            f"\noptuna: {counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed; best {results['best_value']} with {results['best_params']}"
        )
        print(f"results: {sweep_dir / RESULTS_FILE}")


def remove_unswept(sweep_dir: Path, made: Path | None) -> None:
    """A sweep dir that holds only this sweep's multirun.yaml and lock file (no study, no job of
    a copy of this sweep), and the then-empty folders above it up to ``made``: removed."""
    if made is None or {p.name for p in sweep_dir.iterdir()} - {"multirun.yaml", "optuna.lock"}:
        return
    for name in ("multirun.yaml", "optuna.lock"):
        (sweep_dir / name).unlink(missing_ok=True)
    for folder in (sweep_dir, *sweep_dir.parents):
        with suppress(OSError):
            folder.rmdir()  # only if empty
        if folder == made:
            break


@contextmanager
def one_line_errors(config: DictConfig | None = None) -> Iterator[None]:
    """A bad sweeper setting ends dllab-train as a bad config ends a run: one line on stderr,
    exit status 2 (the traceback with HYDRA_FULL_ERROR=1 or verbose=true)."""
    try:
        yield
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or (config is not None and config.get("verbose")):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def check_storage(storage: str) -> None:
    """A database URL that SQLAlchemy can read; a SQLite file's folder must exist."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(storage)
    except ArgumentError:
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: not a database URL; give sqlite:///<file> "
            "(or a server's, e.g. postgresql://<user>@<host>/<db>), or null for <sweep dir>/optuna.db"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        folder = Path(url.database).absolute().parent
        if not folder.is_dir():
            raise ConfigError(f"hydra.sweeper.storage={storage}: no such folder {folder}; make it first")


@contextmanager
def storage_lock(storage: str, sweep_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock shared by every sweep on this storage: ``<file>.lock`` beside a
    SQLite file, else ``optuna.lock`` in the sweep dir (which copies of one command share)."""
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    database = url.database if url.get_backend_name() == "sqlite" else None
    path = Path(f"{database}.lock") if database and database != ":memory:" else sweep_dir / "optuna.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if the process dies
        yield


def make_pruner(settings: dict[str, Any]) -> Any:
    import optuna

    if not settings.get("enabled", True):
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(settings.get("n_startup_trials", 3)),
        n_warmup_steps=int(settings.get("n_warmup_steps", 3)),
        interval_steps=int(settings.get("interval_steps", 1)),
    )


def job_metrics(result: JobReturn) -> dict[str, Any]:
    """The job's metrics.json (empty when the job wrote none)."""
    if result.hydra_cfg is None:
        return {}
    path = Path(str(result.hydra_cfg.hydra.runtime.output_dir)) / "metrics.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        return {}
