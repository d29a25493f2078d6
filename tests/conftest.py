"""Shared fixtures: composed configs and a runner for the command-line entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from dllab.runs.config import config_dir

BIN = Path(sys.executable).parent

# One torch thread per test process: the suite may run beside other jobs on 2 cores.
torch.set_num_threads(1)


def bare_trainer(**kwargs: object) -> L.Trainer:
    """A Lightning Trainer for unit tests: CPU, one epoch, no logger, checkpoints, bar or summary."""
    options: dict[str, object] = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**(options | kwargs))  # type: ignore[arg-type]


def mlp(hidden_sizes: list[int] | None = None, **options: object) -> dict[str, object]:
    """The ``net`` config of dllab's MLP (a TaskModule's network), as conf/model/mlp.yaml writes it."""
    sizes = [64, 64] if hidden_sizes is None else hidden_sizes
    return {"_target_": "dllab.models.mlp.MLP", "hidden_sizes": sizes, **options}


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The training config as dllab-train would compose it, writing into output_dir."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir.parent)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_train(list(overrides), tmp_path / "run")

    return make


def run_cli(
    command: str, *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a console script of this venv (dllab-train, dllab-eval) in ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env |= {"DLLAB_LOG_DIR": str(cwd / "logs"), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / command), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dirs(root: Path) -> list[Path]:
    """Run dirs under root/logs, oldest first."""
    return sorted(p.parent for p in (root / "logs").glob("*/runs/*/.hydra"))
