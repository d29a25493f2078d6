"""What a run leaves behind: metrics.json, the resolved config, TensorBoard's HParams."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Statuses in metrics.json. A sweep counts "completed" and "pruned" (stopped early by the
# Optuna pruner: its trial is told so) as done; anything else is a failed job.
COMPLETED, PRUNED, FAILED, DIVERGED, CONFIG_ERROR, INTERRUPTED = (
    "completed",
    "pruned",
    "failed",
    "diverged",
    "config_error",
    "interrupted",
)


def to_float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically (write a temporary file, then rename), so a reader never
    sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def write_metrics(directory: Path, status: str, **fields: Any) -> Path:
    path = directory / "metrics.json"
    write_json(path, {"status": status, **fields})
    return path


def save_config(cfg: DictConfig, run_dir: Path, show: bool = False) -> Path:
    """Write the fully resolved config of the run (Hydra's .hydra/config.yaml keeps
    interpolations) to the run dir; ``show`` also prints it as a compact tree."""
    path = run_dir / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if show:
        print(f"config ({path}):\n" + "\n".join(config_tree(cfg)), flush=True)
    return path


def config_tree(cfg: DictConfig) -> list[str]:
    """The resolved config as one line per config group (``  data: {name: digits, ...}``),
    nested groups (``callbacks``) one level deeper, the top-level keys in one line first: the
    whole config at a glance."""
    import yaml

    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)

    def flow(value: Any) -> str:
        return str(yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)).strip()

    scalars = {k: v for k, v in container.items() if not isinstance(v, (dict, list))}
    lines = ["  " + flow(scalars)[1:-1]] if scalars else []  # the top-level keys in one line
    for name, value in container.items():
        key = str(name)
        nested = isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())
        if nested:
            lines.append(f"  {key}:")
            lines += [f"    {k!s}: {flow(v)}" for k, v in value.items()]
        elif key not in scalars:
            lines.append(f"  {key}: {flow(value)}")
    return lines


def result_lines(result: Mapping[str, Any], tensorboard: bool = True) -> list[str]:
    """What a finished run says last (terminal and train.log): the tested model's test metrics,
    where that model came from and why, the time, and where to look."""
    test = result.get("test") or {}
    shown = " · ".join(f"{k} {_number(v)}" for k, v in test.items()) or "no test metrics"
    lines = [f"result: {shown}"]
    epochs, steps = result.get("epochs"), result.get("global_step")
    best_epoch, metric = result.get("best_epoch"), result.get("optimized_metric")
    if result.get("best_checkpoint"):
        best_epoch = "?" if best_epoch is None else best_epoch  # a checkpoint callback that did not record it
        why = f"best {metric} {_number(result.get('objective'))}"
        first = result.get("best_first_epoch")
        if result.get("tie_breaker") and first is not None and first != best_epoch:
            why += (
                f", first reached at epoch {first}; of the epochs tied on it, "
                f"the lowest {result['tie_breaker']} ({_number(result.get('best_tie_value'))})"
            )
        lines.append(
            f"tested: {Path(result['best_checkpoint']).name} from epoch {best_epoch} of {epochs} "
            f"(optimizer step {'?' if result.get('best_step') is None else result['best_step']} of {steps}): {why}"
        )
    else:
        reason = result.get("tested_reason") or "no best checkpoint (callbacks.model_checkpoint is off)"
        lines.append(f"tested: the last weights, after epoch {epochs} (optimizer step {steps}): {reason}")
    others = {k: v for k, v in (result.get("best_val") or {}).items() if k != f"{metric}_best"}
    if others:
        lines.append("best over epochs: " + " · ".join(f"{k} {_number(v)}" for k, v in others.items()))
    fit = result.get("fit_seconds")
    lines.append(f"time: {result.get('wall_seconds', 0):.1f} s" + (f" (training {fit:.1f} s)" if fit else ""))
    if result.get("written", True):
        run_dir = result.get("run_dir")
        lines.append(f"run dir: {run_dir}")
        if tensorboard:
            lines.append(f"look at it: tensorboard --logdir {run_dir}  (curves: http://localhost:6006/#custom_scalars)")
    return lines


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


# Class paths that configs saved by earlier versions of dllab name (config.yaml of a run dir).
MOVED_TARGETS = {
    "dllab.callbacks.BestCheckpoint": "dllab.training.checkpointing.BestCheckpoint",
    "dllab.callbacks.LastCheckpoint": "dllab.training.checkpointing.LastCheckpoint",
    "dllab.callbacks.EpochProgressBar": "dllab.training.callbacks.EpochProgressBar",
    "dllab.callbacks.DataSummary": "dllab.training.callbacks.DataSummary",
    "dllab.augmentation.AugmentationPreview": "dllab.data.augmentation.AugmentationPreview",
    "dllab.loggers.TensorBoardLogger": "dllab.training.loggers.TensorBoardLogger",
}  # data configs of earlier versions: dllab.data.source.upgrade_data_config


def upgrade_config(cfg: DictConfig) -> DictConfig:
    """A run's saved config in today's form: moved class paths renamed, and a model without
    ``_target_`` (saved before networks were chosen by class) is the MLP it was. (Its data
    config is upgraded wherever data configs are read, by ``upgrade_data_config``.)"""
    container = OmegaConf.to_container(cfg)
    assert isinstance(container, dict)
    upgraded = _rename_targets(container)
    if "model" in upgraded and "_target_" not in upgraded["model"]:
        upgraded["model"] = {"_target_": "dllab.models.mlp.MLP", **upgraded["model"]}
    if isinstance(upgraded.get("paths"), dict):  # saved before the free-space check existed
        upgraded["paths"].setdefault("min_free_mb", 0)
    return OmegaConf.create(upgraded)


def _rename_targets(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: MOVED_TARGETS.get(v, v) if k == "_target_" else _rename_targets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rename_targets(v) for v in node]
    return node


def short_hparams(cfg: DictConfig, loss: str) -> dict[str, Any]:
    """The readable handful of hyperparameters shown in TensorBoard's HParams tab: the data, the
    model's class and options, the loss, optimizer, learning rate, batch size and seed."""
    optimizer = str(cfg.optimizer._target_).rsplit(".", 1)[-1].lower()
    model = {k: v for k, v in cfg.model.items() if k != "_target_"}
    return {
        "data": cfg.data.name,
        "model": str(cfg.model.get("_target_", "mlp")).rsplit(".", 1)[-1].lower(),
        **{k: v if isinstance(v, (bool, int, float, str)) else str(OmegaConf.to_object(v)) for k, v in model.items()},
        "loss": loss,
        "optimizer": optimizer,
        "lr": float(cfg.optimizer.lr),
        "batch_size": int(cfg.data.batch_size),
        "accumulate_grad_batches": int(cfg.trainer.accumulate_grad_batches),
        "seed": int(cfg.seed),
    }


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run_fields(
    *,
    metric: str,
    last_value: float,
    best_score: float | None,
    test: dict[str, float],
    best_val: dict[str, float],
    epochs: int,
    global_step: int,
    fit_seconds: float,
    best_checkpoint: str | None,
    run_dir: str,
    tested: Mapping[str, Any] | None,
    plotters: Sequence[Any],
) -> dict[str, Any]:
    """metrics.json's fields of a run that trained to its end (all but ``status`` and
    ``wall_seconds``), for the solo run and each model of a stack alike. The objective of a
    per-epoch validation metric is its value at the best checkpoint (``best_score``), not at
    the last epoch; ``tested`` is what the best checkpoint knows of its epoch (None: no best
    checkpoint was tested)."""
    objective = last_value
    if metric.startswith("val/") and not metric.endswith("_best") and best_score is not None:
        objective = best_score
    fields: dict[str, Any] = {
        "optimized_metric": metric,
        "objective": finite_or_none(objective),
        "test": test,
        "best_val": best_val,
        "epochs": epochs,
        "global_step": global_step,
        "fit_seconds": round(fit_seconds, 3),
        "best_checkpoint": best_checkpoint,
        "run_dir": run_dir,
    }
    if tested is not None:
        fields |= {k: v for k, v in tested.items() if v is not None or k in ("best_epoch", "best_step")}
    if plotters:
        fields["plot_seconds"] = round(sum(p.seconds for p in plotters), 3)
        if any(p.error for p in plotters):
            fields["warnings"] = [f"picture not drawn: {p.error}" for p in plotters if p.error]
    return fields


def interrupted_fields(run_dir: Path, epochs: int, global_step: int) -> dict[str, Any]:
    """What metrics.json records of a run stopped during fit (its ``interrupted.ckpt`` saved):
    how far it got and the command that carries it on from its last whole epoch."""
    return {
        "epochs": epochs,
        "global_step": global_step,
        "resume_command": f"dllab-train resume={run_dir}",
        "run_dir": str(run_dir),
    }
