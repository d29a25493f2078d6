"""Fit one built run, then test its best checkpoint; :func:`train` is the whole run as a
library call (build, fit and test, record), returning the fields of metrics.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dllab.results import COMPLETED, run_fields, to_float
from dllab.runs import exits
from dllab.runs.build import Run, build
from dllab.runs.record import record

details = logging.getLogger("dllab.details")  # train.log only (conf/hydra/job_logging/dllab.yaml)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one model, record it (:func:`~dllab.runs.record.record`), and return the
    fields of its metrics.json."""
    started = time.perf_counter()
    exits.enter_phase("set-up")  # from here: imports of torch and Lightning, data, model
    run = build(cfg)
    result = fit_and_test(run)
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    record(run, result)
    return result


def fit_and_test(run: Run) -> dict[str, Any]:
    """Fit, then test the best checkpoint (the last weights when there is none); the fields of
    metrics.json but ``wall_seconds``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    cfg, trainer, module, datamodule = run.cfg, run.trainer, run.module, run.datamodule
    run_dir = Path(cfg.paths.output_dir)
    details.info("run dir: %s", run_dir)
    fit_started = time.perf_counter()
    exits.enter_phase("training")
    with exits.signal_exit():
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - fit_started
    logged = {k: to_float(v) for k, v in trainer.callback_metrics.items()}

    best_checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = best_checkpoint.best_model_path if best_checkpoint else ""
    if best_path and run_dir.resolve() not in Path(best_path).resolve().parents:
        # a resumed run dir that was moved: its checkpoint remembers the old location
        moved = run_dir / "checkpoints" / Path(best_path).name
        best_path = str(moved) if moved.is_file() else best_path
    # which model is tested, read before trainer.test restores the callbacks' state from it
    tested = {
        key: getattr(best_checkpoint, key, None)
        for key in ("best_epoch", "best_step", "tie_breaker", "best_tie_value", "best_first_epoch")
    }
    exits.enter_phase("testing")
    with exits.signal_exit():
        test_results = trainer.test(
            module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True
        )
    test_metrics = {k: to_float(v) for k, v in (test_results[0] if test_results else {}).items()}
    best_val = {k: v for k, v in logged.items() if k.startswith("val/") and k.endswith("_best")}
    score = best_checkpoint.best_model_score if best_checkpoint else None
    result = run_fields(
        metric=cfg.optimized_metric,
        last_value=logged.get(cfg.optimized_metric, float("nan")),
        best_score=to_float(score) if score is not None else None,
        test=test_metrics,
        best_val=best_val,
        epochs=trainer.current_epoch,
        global_step=trainer.global_step,
        fit_seconds=fit_seconds,
        best_checkpoint=best_path or None,
        run_dir=str(run_dir),
        tested=tested if best_path else None,
        plotters=run.plotters,
    )
    if not best_path and trainer.fast_dev_run:
        result["tested_reason"] = "debug=fast_dev_run (nothing written)"
    elif not best_path and best_checkpoint is not None:
        result["tested_reason"] = f"{best_checkpoint.monitor} was never logged, so no best checkpoint was kept"
    # a callback may end a run early with its own status (the Optuna pruner: "pruned")
    statuses = [getattr(c, "run_status", None) for c in run.callbacks]
    result["status"] = next((s for s in statuses if s), COMPLETED)
    return result | run.tuned
