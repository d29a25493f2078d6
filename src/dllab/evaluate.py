"""``dllab-eval ckpt_path=...``: re-evaluate a finished run on its test split.

Needs nothing but the run directory: the module is rebuilt from the checkpoint's
primitive hyperparameters (``torch.load(weights_only=True)``) and the data from the
run's resolved ``config.yaml``, so the split is the one the run was tested on.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from dllab.checkpoints import read_checkpoint
from dllab.checks import check_accelerator_present, check_threads
from dllab.errors import ConfigError
from dllab.hydra_help import install as install_help
from dllab.results import to_float, upgrade_config, write_json
from dllab.train import config_dir, quiet_library_logs, verbose_errors

log = logging.getLogger("dllab.evaluate")


def run_dir_of(ckpt_path: Path) -> Path:
    """<run dir>/checkpoints/<name>.ckpt -> <run dir>, checked to hold the run's config."""
    run_dir = ckpt_path.resolve().parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no config.yaml in {run_dir}; "
            "give a checkpoint inside a dllab run dir (<run dir>/checkpoints/*.ckpt)"
        )
    return run_dir


def load_run(ckpt_path: str | Path, checkpoint: dict[str, Any] | None = None) -> tuple[Any, Any, Path]:
    """The module of a checkpoint and the data of its run, as the run had them: the module
    from the checkpoint's primitive hyperparameters (read once, ``weights_only=True``), the
    DataModule from the run's resolved config.yaml with its trainer limits (same splits, same
    scaling, same test slice). Returns (module, datamodule, run dir). ``checkpoint``: its
    contents, when the caller has read them already."""
    from dllab.data.datamodule import build_datamodule
    from dllab.train import split_trainer_config
    from dllab.training.module import module_from_checkpoint

    path = Path(ckpt_path)
    if checkpoint is None:
        checkpoint = read_checkpoint(path)  # a clear error for a missing or corrupt file, first
    run_dir = run_dir_of(path)
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    assert isinstance(run_cfg, DictConfig)
    run_cfg = upgrade_config(run_cfg)
    _, _, data_kwargs = split_trainer_config(run_cfg.trainer)
    return module_from_checkpoint(checkpoint), build_datamodule(run_cfg.data, **data_kwargs), run_dir


def evaluate(
    ckpt_path: str, accelerator: str = "cpu", threads: int | None = None, verbose: bool = False
) -> dict[str, Any]:
    """Test metrics of the checkpoint on its run's test split; also written to eval_metrics.json.
    ``threads``: torch threads for this process (None: torch's default)."""
    threads = check_threads(threads)
    check_accelerator_present(accelerator, torch_checked=True)
    quiet_library_logs(verbose)
    import lightning as L
    import torch

    if threads:
        torch.set_num_threads(threads)
    log.info("torch threads: %d", torch.get_num_threads())

    checkpoint = read_checkpoint(ckpt_path)
    module, datamodule, run_dir = load_run(ckpt_path, checkpoint)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {k: to_float(v) for k, v in results[0].items()}
    payload = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        # which model this is: the epochs (from 1) and optimizer steps it was trained for
        "epoch": int(checkpoint.get("epoch", -1)) + 1,
        "global_step": checkpoint.get("global_step"),
        "run_dir": str(run_dir),
        "test": metrics,
    }
    write_json(run_dir / "eval_metrics.json", payload)
    return payload


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        payload = evaluate(cfg.ckpt_path, cfg.accelerator, cfg.get("threads"), bool(cfg.get("verbose")))
    except ConfigError as err:
        if verbose_errors(cfg):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    where = (
        f"{Path(payload['checkpoint']).name} from epoch {payload['epoch']} (optimizer step {payload['global_step']})"
    )
    print(f"tested: {where}")
    for name, value in payload["test"].items():
        print(f"{name}: {value:.4f}")
    print(f"written: {Path(payload['run_dir']) / 'eval_metrics.json'}")


def main() -> None:
    """Console entry point of ``dllab-eval``."""
    install_help()
    _hydra_main()


if __name__ == "__main__":
    main()
