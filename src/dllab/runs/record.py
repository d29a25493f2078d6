"""What a finished run leaves: TensorBoard's HParams session and ``metrics.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dllab.overrides import is_multirun
from dllab.results import write_metrics
from dllab.runs import exits, requeue
from dllab.runs.build import Run
from dllab.sweeps import jobs as sweep_jobs


def record(run: Run, result: dict[str, Any]) -> None:
    """TensorBoard's HParams session (the run's short hyperparameters and its final metrics),
    then ``metrics.json`` from rank 0 (a DDP worker leaves it to rank 0). A smoke test
    (``debug=fast_dev_run`` outside a multirun) writes no record and leaves no run dir behind:
    ``result["written"]`` says whether one was left."""
    from dllab.training.loggers import log_run_hparams  # Lightning: imported only once a run trains

    log_run_hparams(run.trainer, run.hparams, {**result["test"], **result["best_val"]})
    if sweep_jobs.global_rank() != 0:
        return
    if requeue.restarts():
        result["restarts"] = requeue.restarts()  # SLURM requeued the job (pre-emption, time-out)
    run_dir = Path(run.cfg.paths.output_dir)
    if run.cfg.trainer.get("fast_dev_run") and not is_multirun():
        result["written"] = not exits.remove_written_by_hydra(run_dir, run.cfg)
    else:
        write_metrics(run_dir, result["status"], **{k: v for k, v in result.items() if k != "status"})
