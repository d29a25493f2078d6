"""``resume=<run dir>``: the saved config of a run, set to continue from its checkpoint, and
the command that carries a stopped run on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from dllab.checkpoints import read_checkpoint
from dllab.errors import ConfigError
from dllab.results import upgrade_config

log = logging.getLogger("dllab.train")


def resume_config(cfg: DictConfig, requeued: bool = False) -> DictConfig:
    """The saved config of the run dir ``resume`` names, set to continue from its last.ckpt.

    A resumed run is the same run: other overrides are refused (a changed run is a new run,
    ``ckpt_path=<dir>/checkpoints/last.ckpt``), and a run dir that was moved or copied has
    its saved absolute paths pointed at where it is now. A ``requeued`` SLURM job carries its
    sweep's overrides, which made that config."""
    run_dir = Path(cfg.resume)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={cfg.resume}: not a dllab run dir (no config.yaml); give a dir under logs/*/runs/")
    others = (
        [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
        if HydraConfig.initialized() and not requeued
        else []
    )
    if others:
        raise ConfigError(
            f"resume={cfg.resume}: continues the run with its own config, so {' '.join(others)} cannot apply; "
            f"to change it, start a new run with ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
        )
    checkpoint = resume_checkpoint(run_dir)
    loaded = OmegaConf.load(saved)
    assert isinstance(loaded, DictConfig)
    missing = [key for key in ("data", "model", "trainer", "paths") if key not in loaded]
    if missing:
        raise ConfigError(f"resume={cfg.resume}: {saved} is not a dllab run's config (no {', '.join(missing)})")
    loaded = upgrade_config(loaded)
    old_dir, new_dir = str(loaded.paths.output_dir), str(run_dir.resolve())
    if old_dir != new_dir:
        container = OmegaConf.to_container(loaded)
        loaded = OmegaConf.create(_repoint(container, old_dir, new_dir))
    with open_dict(loaded):
        loaded.resume = str(run_dir)
        loaded.ckpt_path = str(checkpoint) if checkpoint else None
        loaded.paths.output_dir = new_dir
    if checkpoint is None:
        log.info("resuming %s: no checkpoint was written yet, so the run starts over in its dir", run_dir)
    elif checkpoint.name == "last.ckpt":
        log.info("resuming %s from %s", run_dir, checkpoint)
    else:
        log.info(
            "resuming %s from %s (the weights at the interrupt, newer than any last.ckpt; "
            "the interrupted epoch runs again from its start)",
            run_dir,
            checkpoint,
        )
    return loaded


def resume_checkpoint(run_dir: Path) -> Path | None:
    """What ``resume=`` continues from: ``last.ckpt`` (the end of a whole epoch, so the resumed
    run ends as one never stopped) unless ``interrupted.ckpt`` is at least one whole epoch
    further (last.ckpt is written on a time budget, or not yet); None when neither exists."""
    last = run_dir / "checkpoints" / "last.ckpt"
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    if not interrupted.is_file() or (last.is_file() and last.stat().st_mtime >= interrupted.stat().st_mtime):
        return last if last.is_file() else None
    if not last.is_file():
        return interrupted
    last_epoch = read_checkpoint(last, "resume").get("epoch", 0)
    interrupted_epoch = read_checkpoint(interrupted, "resume").get("epoch", 0)
    return interrupted if interrupted_epoch > last_epoch + 1 else last


def _repoint(node: Any, old: str, new: str) -> Any:
    """Every string under ``node`` that starts with the path ``old`` now starts with ``new``."""
    if isinstance(node, dict):
        return {k: _repoint(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_repoint(v, old, new) for v in node]
    if isinstance(node, str) and (node == old or node.startswith(old + "/")):
        return new + node[len(old) :]
    return node


def continue_command(run_dir: Path) -> str:
    """``resume=`` once the run dir holds its config (a resume without a checkpoint starts the
    run over in its dir), else the command line that started it."""
    if (run_dir / "config.yaml").is_file():
        return f"dllab-train resume={run_dir}"
    return start_again_command()


def start_again_command() -> str:
    import shlex

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return " ".join(["dllab-train", *(shlex.quote(o) for o in overrides)])
