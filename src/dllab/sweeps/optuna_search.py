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

Several sweepers may work on one study at once (the same command started twice, or on
several nodes with a PostgreSQL or journal storage, :mod:`dllab.sweeps.storage`): they take
turns on the storage's lock to create the study, to ask each batch of trials (so a batch's
trial numbers, its job dirs, are consecutive) and to write the results, and together they
stop when the study holds ``n_trials`` trials that were not interrupted. A trial whose
sweeper stopped (killed, node lost) is marked interrupted, failed, and not counted, so
running the command again continues the study: with a database storage, when the heartbeat
its sweeper records stops (a live trial of a sweeper on another host is never failed);
without heartbeats (journal), when its sweeper's process on this host is gone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import groupby
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from dllab import compat
from dllab.errors import ConfigError
from dllab.results import COMPLETED, FAILED, INTERRUPTED, PRUNED
from dllab.sweeps.jobs import process_alive
from dllab.sweeps.search_space import override_value, search_space
from dllab.sweeps.settings import check_sweeper
from dllab.sweeps.storage import kind, make_storage, storage_lock

log = logging.getLogger("dllab.sweeps")

PRUNER_ATTR = "dllab_pruner"  # study user attribute: the pruner's settings, for the jobs
PRUNING_KEY = "callbacks.optuna_pruning"
RESULTS_FILE = "optimization_results.yaml"
OWNER_ATTR = "sweeper"  # trial user attribute: host:pid of the sweep process that asked the trial
HEARTBEAT_ATTR = "heartbeat"  # trial user attribute: its sweeper records heartbeats (stale: by them)
STUDY_HEARTBEAT_ATTR = "dllab_heartbeat"  # study user attribute: [interval, grace period] of its sweepers
SETUP_LOCK = "storage set-up"  # lock name while a storage's tables may be created


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
        heartbeat_interval: int = 60,
        grace_period: int | None = None,
    ) -> None:
        sampler, pruner = dict(sampler or {}), dict(pruner or {})
        check_sweeper(  # also checked at the sweep's start, before Hydra makes anything
            {"direction": direction, "study_name": study_name, "storage": storage, "n_trials": n_trials,
             "n_jobs": n_jobs, "sampler": sampler, "pruner": pruner, "heartbeat_interval": heartbeat_interval,
             "grace_period": grace_period}
        )  # fmt: skip
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.storage_url = ""  # the storage given, or the sweep dir's optuna.db
        self.owner = ""  # host:pid of this sweeper
        self.left_running: set[int] = set()  # trials of other hosts without heartbeat, as logged

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

        database = kind(self.storage_url) != "journal"
        storage = make_storage(
            self.storage_url,
            heartbeat_interval=self.heartbeat_interval if database else None,
            grace_period=self.grace_period if database else None,
        )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.make_sampler(),
            pruner=make_pruner(self.pruner_cfg),
            direction=optuna.study.StudyDirection[self.direction.upper()],
            load_if_exists=True,
        )
        existing = study.direction.name.lower()
        if existing != self.direction:
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction}: the study {self.study_name} in {self.storage_url} "
                f"was made to {existing}; use another study_name or storage"
            )
        if database:
            # one study, one heartbeat: a sweeper with a shorter grace period would fail the live
            # trials of one with a longer one
            heartbeat = [self.heartbeat_interval, self.grace_period]
            recorded = study.user_attrs.get(STUDY_HEARTBEAT_ATTR)
            if recorded is None:
                study.set_user_attr(STUDY_HEARTBEAT_ATTR, heartbeat)
            elif list(recorded) != heartbeat:
                raise ConfigError(
                    f"hydra.sweeper.heartbeat_interval={self.heartbeat_interval}, grace_period={self.grace_period}: "
                    f"the study {self.study_name} in {self.storage_url} has its sweepers use {recorded[0]} and "
                    f"{recorded[1]}; use those, or another study_name"
                )
        study.set_user_attr(PRUNER_ATTR, self.pruner_cfg)
        return study

    def fail_orphaned_trials(self, study: Any) -> None:
        """Mark interrupted and tell FAIL the running trials that no sweeper will tell. A trial
        whose sweeper records heartbeats: once they stopped for the grace period (a live trial of a
        sweeper on another host is never failed). Any other (journal storage, older trials): when
        its sweeper ran on this host and its process is gone; one asked on another host, whose
        process cannot be checked from here, is left alone."""
        from optuna.trial import TrialState

        stale = set(stale_trial_ids(study))
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if compat.optuna_trial_id(trial) not in stale:
                if trial.user_attrs.get(HEARTBEAT_ATTR):
                    continue
                owner_host, _, pid = str(trial.user_attrs.get(OWNER_ATTR, "")).rpartition(":")
                if owner_host and owner_host != host:
                    if trial.number not in self.left_running:  # said once, not before every batch
                        log.warning("trial %d: asked by %s, on another host; left running", trial.number, owner_host)
                        self.left_running.add(trial.number)
                    continue
                if owner_host and pid.isdigit() and process_alive(int(pid)):
                    continue
            log.warning("trial %d: its sweeper %s stopped; failed as interrupted", trial.number,
                        trial.user_attrs.get(OWNER_ATTR, "(unknown)"))  # fmt: skip
            # marked before it is failed: a finished trial takes no attribute
            finish(study, trial, INTERRUPTED, state=TrialState.FAIL)

    def ask_batch(self, study: Any, space: dict[str, Any]) -> list[Any]:
        """The next batch of trials: at most ``n_jobs``, none once the study holds ``n_trials``
        trials that were not interrupted (running ones of other sweepers included, so that
        sweepers together stop at ``n_trials``). Called under :func:`storage_lock`, so that the
        batch's trial numbers are consecutive."""
        trials = study.get_trials(deepcopy=False)
        counted = sum(not interrupted(t) for t in trials)
        asked = []
        with warnings.catch_warnings():  # heartbeats are recorded by heartbeats(), not Study.optimize
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
            for number in range(len(trials), len(trials) + max(0, min(self.n_jobs, self.n_trials - counted))):
                study.sampler = self.make_sampler(number)
                asked.append(study.ask(space))
        beats = heartbeat_interval(study) is not None
        storage = compat.optuna_storage(study)
        for trial in asked:
            trial_id = compat.optuna_trial_id(trial)
            storage.set_trial_user_attr(trial_id, OWNER_ATTR, self.owner)
            if beats:
                storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, True)
                storage.record_heartbeat(trial_id)  # before another sweeper can see it
        return asked

    def others_running(self, study: Any) -> int:
        """Running trials of other sweepers that heartbeats will either keep or fail."""
        from optuna.trial import TrialState

        return sum(
            bool(t.user_attrs.get(HEARTBEAT_ATTR)) and t.user_attrs.get(OWNER_ATTR) != self.owner
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        )

    # --- the sweep ----------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        assert self.config is not None and self.launcher is not None
        space, fixed = search_space(self.params, arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        # the first folder this sweep makes (the sweep dir or one above it)
        made = next((d for d in [*reversed(sweep_dir.parents), sweep_dir] if not d.exists()), None)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.storage_url = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').absolute()}"
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        try:
            with storage_lock(self.storage_url, sweep_dir, SETUP_LOCK, self.study_name):
                OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
                study = self.open_study()
                self.fail_orphaned_trials(study)
                done = sum(not interrupted(t) for t in study.get_trials(deepcopy=False))
        except ConfigError:
            remove_unswept(sweep_dir, made)
            raise
        if done:
            log.info("study %s: %d trials already, continuing to %d", self.study_name, done, self.n_trials)
        pruning = self.pruning() and OmegaConf.select(self.config, PRUNING_KEY) is not None
        returns: list[Any] = []
        waiting = False
        while True:
            with storage_lock(self.storage_url, sweep_dir, self.study_name):
                self.fail_orphaned_trials(study)
                asked = self.ask_batch(study, space)
                others = 0 if asked else self.others_running(study)
            if not asked and not others:
                break
            if not asked:
                # a trial of another sweeper may still fail as stale: then this one runs it again
                if not waiting:
                    log.info(
                        "study %s: trials still running in other sweepers: %d; waiting for them",
                        self.study_name,
                        others,
                    )
                waiting = True
                time.sleep(min(self.heartbeat_interval, 10))
                continue
            waiting = False
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
                            f"{PRUNING_KEY}.trial_id={compat.optuna_trial_id(trial)}",
                        ]
                    batch.append(overrides)
                with heartbeats(study, [compat.optuna_trial_id(trial) for trial in trials]):
                    results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
                for trial, result in zip(trials, results, strict=True):
                    self.tell(study, trial, result)
                returns.append(results)
        with storage_lock(
            self.storage_url, sweep_dir, self.study_name
        ):  # the last one to finish writes the whole study
            self.write_results(study, sweep_dir)
        return returns

    def tell(self, study: Any, trial: Any, result: JobReturn) -> None:
        from optuna.trial import TrialState

        metrics = job_metrics(result)
        status = metrics.get("status", FAILED if result.status == JobStatus.FAILED else COMPLETED)
        value = result.return_value if result.status == JobStatus.COMPLETED else None
        error = str(metrics["error"])[:500] if metrics.get("error") else None
        if status == PRUNED:
            told = finish(study, trial, status, error, state=TrialState.PRUNED)
        elif status == COMPLETED and isinstance(value, int | float) and math.isfinite(value):
            told = finish(study, trial, status, error, values=float(value))
        else:
            told = finish(study, trial, status, error, state=TrialState.FAIL)
            if told:
                log.warning("trial %d (job %d) %s: %s", trial.number, trial.number, status, metrics.get("error", ""))
        if not told:
            log.warning("trial %d (job %d) %s, but another sweeper had failed it as stale; not counted",
                        trial.number, trial.number, status)  # fmt: skip

    def write_results(self, study: Any, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        counted = [t for t in trials if not interrupted(t)]
        counts = {s.name.lower(): sum(t.state == s for t in counted) for s in TrialState if s.is_finished()}
        counts[INTERRUPTED] = len(trials) - len(counted)
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {
            "name": self.study_name,
            "storage": self.storage_url,
            "direction": self.direction,
            "n_trials": len(counted),
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
        log.info("best of %d trials: %s", len(counted), results.get("best_value"))
        print(
            f"\noptuna: {counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed, {counts[INTERRUPTED]} interrupted; "
            f"best {results['best_value']} with {results['best_params']}"
        )
        print(f"results: {sweep_dir / RESULTS_FILE}")


def interrupted(trial: Any) -> bool:
    """A trial whose sweeper stopped, failed by another: not one of the study's ``n_trials``."""
    from optuna.trial import TrialState

    return bool(trial.state == TrialState.FAIL and trial.user_attrs.get("status") == INTERRUPTED)


def finish(study: Any, trial: Any, status: str, error: str | None = None, **told: Any) -> bool:
    """Record ``status`` (and the error) on the trial, then tell it; False when another process
    finished it first (a sweeper failing it as stale, or its own sweeper telling it)."""
    from optuna.exceptions import UpdateFinishedTrialError

    storage = compat.optuna_storage(study)
    try:
        storage.set_trial_user_attr(compat.optuna_trial_id(trial), "status", status)
        if error:
            storage.set_trial_user_attr(compat.optuna_trial_id(trial), "error", error)
        study.tell(trial.number, **told)
    except (UpdateFinishedTrialError, ValueError) as err:  # ValueError: tell of a finished trial
        if not storage.get_trial(compat.optuna_trial_id(trial)).state.is_finished():
            raise
        log.debug("trial %d finished elsewhere: %s", trial.number, err)
        return False
    return True


def heartbeat_interval(study: Any) -> int | None:
    """The storage's heartbeat interval; None: it records none (journal, in-memory)."""
    return compat.optuna_heartbeat_interval(compat.optuna_storage(study))


def stale_trial_ids(study: Any) -> list[int]:
    """The running trials whose heartbeat stopped for the storage's grace period."""
    if heartbeat_interval(study) is None:
        return []
    return list(compat.optuna_stale_trial_ids(study))


@contextmanager
def heartbeats(study: Any, trial_ids: list[int]) -> Iterator[None]:
    """Record the trials' heartbeats every interval while they run: Optuna does so only inside
    ``study.optimize``, and without them another sweeper would fail these trials as stale."""
    interval = heartbeat_interval(study)
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in trial_ids:
                try:
                    compat.optuna_storage(study).record_heartbeat(trial_id)
                except Exception as err:  # a server gone for a moment: the next beat may reach it
                    log.warning("trial heartbeat not recorded: %s", err)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
