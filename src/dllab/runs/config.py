"""How a run reads its config: where ``conf/`` is, plain values, which trainer keys go to the
module and the data, which groups are instantiated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# conf/ interpolates resolvers these modules register on import (run dirs; a sweep job's
# TensorBoard version, devices and cores): whoever composes conf/ asks config_dir() here first
import dllab.run_dirs
import dllab.sweeps.jobs  # noqa: F401
from dllab.catalog import metric_mode


def config_dir() -> str:
    """conf/ shipped inside the wheel, else the repository's conf/ (editable install)."""
    package = Path(__file__).resolve().parents[1]  # src/dllab
    packaged = package / "conf"
    return str(packaged if packaged.is_dir() else package.parents[1] / "conf")


# Trainer keys that the in-memory step loop honours itself (see dllab.training.module and
# dllab.data.datamodule); the Lightning Trainer gets its neutral values for them.
MODULE_TRAINER_KEYS = ("accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm")


DATA_TRAINER_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches")


OmegaConf.register_new_resolver("dllab.metric_mode", metric_mode, replace=True)


def verbose_errors(cfg: DictConfig | None = None) -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or bool(cfg is not None and cfg.get("verbose"))


def plain(node: DictConfig) -> dict[str, Any]:
    """A resolved config node as a plain dict (primitive hyperparameters for checkpoints)."""
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def split_trainer_config(trainer_cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Trainer kwargs, module kwargs and datamodule kwargs from the trainer config."""
    trainer = plain(trainer_cfg)
    module = {k: trainer.pop(k) for k in MODULE_TRAINER_KEYS if k in trainer}
    data = {k: trainer.pop(k) for k in DATA_TRAINER_KEYS if k in trainer}
    limit_val = data.get("limit_val_batches", 1.0)
    if limit_val == 0:  # validation off: the Trainer must skip it
        trainer["limit_val_batches"] = 0
    return trainer, module, data


def validates(cfg: DictConfig) -> bool:
    """Whether the run has a validation pass (trainer.limit_val_batches is not 0)."""
    return cfg.trainer.get("limit_val_batches", 1.0) != 0


def enabled(node: Any) -> bool:
    """Whether an entry of the callbacks, logger or plots group is on (``enabled: false`` is off)."""
    return node is not None and bool(node.get("enabled", True))


def instantiate_enabled(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a callbacks/logger group; ``enabled: false`` skips one."""
    from hydra.utils import instantiate

    objects = []
    for node in (group or {}).values():
        if node is None or "_target_" not in node:
            continue
        if enabled(node):
            objects.append(instantiate({k: v for k, v in plain(node).items() if k != "enabled"}))
    return objects
