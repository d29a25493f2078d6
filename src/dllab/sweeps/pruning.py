"""Median pruning from inside a job: a Lightning callback reporting the per-epoch
validation value to its Optuna trial through the study's storage (the job may run in
another process than the sweeper) and stopping the run when the pruner says so.

The Optuna sweeper adds ``callbacks.optuna_pruning.storage``, ``.study_name`` and ``.trial_id`` to each
trial's overrides; with ``trial_id: null`` (a plain run) the callback does nothing. The
storage is opened as the sweeper opens it (:func:`dllab.sweeps.storage.make_storage`), so
every kind the sweeper takes works here too.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from dllab.results import PRUNED

log = logging.getLogger("dllab.sweeps")


class OptunaPruning(Callback):
    def __init__(
        self,
        storage: str | None = None,
        study_name: str | None = None,
        trial_id: int | None = None,
        monitor: str | None = None,
    ) -> None:
        self.storage, self.study_name, self.trial_id, self.monitor = storage, study_name, trial_id, monitor
        self.run_status: str | None = None  # "pruned" once stopped; dllab-train records it
        self._trial: Any = None
        self._finished = False  # the trial was finished elsewhere: nothing more to report

    def _open(self) -> Any:
        import optuna

        from dllab.sweeps.optuna_search import PRUNER_ATTR, make_pruner
        from dllab.sweeps.storage import make_storage

        assert self.storage is not None and self.study_name is not None and self.trial_id is not None
        storage = make_storage(self.storage)
        study_id = storage.get_study_id_from_name(self.study_name)
        settings = storage.get_study_user_attrs(study_id).get(PRUNER_ATTR, {})
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=make_pruner(settings))
        return optuna.trial.Trial(study, int(self.trial_id))

    def reports(self) -> bool:
        """Whether this run is an Optuna trial (a plain run's callback does nothing)."""
        return self.trial_id is not None and self.storage is not None and self.study_name is not None

    def report(self, value: float | None, epoch: int, monitor: str | None) -> bool:
        """Report one epoch's monitored value to the trial and return whether the pruner stops
        the run now (``run_status`` is then ``pruned``). Trainer-free: the solo run's hook below
        and each model of a stack (:mod:`dllab.stacked`) call it."""
        if not self.reports() or value is None or not math.isfinite(value) or self._finished:
            return False
        from optuna.exceptions import UpdateFinishedTrialError

        if self._trial is None:
            self._trial = self._open()
        try:
            self._trial.report(value, step=epoch)
            prune = bool(self._trial.should_prune())
        except UpdateFinishedTrialError:  # failed as stale by another sweeper: train on, unreported
            log.warning("the Optuna trial is finished already; epoch %d not reported", epoch)
            self._finished = True
            return False
        if prune:
            log.info("pruned by Optuna at epoch %d: %s=%.4f", epoch, monitor, value)
            self.run_status = PRUNED
        return prune

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.reports() or trainer.sanity_checking:
            return
        monitor = self.monitor or getattr(trainer.checkpoint_callback, "monitor", None)
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(monitor) if monitor else None
            prune = self.report(None if value is None else float(value), trainer.current_epoch, monitor)
        if bool(trainer.strategy.broadcast(prune, src=0)):
            self.run_status = PRUNED
            trainer.should_stop = True
