"""What a run leaves behind: metrics.json, the resolved config, TensorBoard's HParams."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Statuses in metrics.json. Anything but "completed" is a failed job in a sweep.
COMPLETED, FAILED, DIVERGED, CONFIG_ERROR, INTERRUPTED = (
    "completed",
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
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_metrics(directory: Path, status: str, **fields: Any) -> Path:
    path = directory / "metrics.json"
    write_json(path, {"status": status, **fields})
    return path


def save_config(cfg: DictConfig, run_dir: Path, show: bool = True) -> Path:
    """Write the fully resolved config of the run (Hydra's .hydra/config.yaml keeps
    interpolations) to the run dir and print it as a tree, one block per config group."""
    path = run_dir / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    path.write_text(text)
    if show:
        print(f"config ({path}):\n" + "\n".join(f"  {line}" for line in text.splitlines()), flush=True)
    return path


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
