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

from dllab.checkpoints import check_checkpoint_fits, error_line, read_checkpoint
from dllab.checks import check_threads
from dllab.errors import ConfigError
from dllab.field_checks import BOOL, TEXT, apply, one_of
from dllab.hydra_help import install as install_help
from dllab.results import to_float, upgrade_config, write_json
from dllab.runs.build import quiet_library_logs
from dllab.runs.config import config_dir, verbose_errors
from dllab.training.trainer_checks import check_accelerator_present

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
    scaling, same test slice), set up and checked to fit the checkpoint (the data may have
    changed since). Returns (module, datamodule, run dir). ``checkpoint``: its contents,
    when the caller has read them already."""
    from dllab.data.datamodule import build_datamodule
    from dllab.runs.config import split_trainer_config
    from dllab.training.module import module_from_checkpoint

    path = Path(ckpt_path)
    if checkpoint is None:
        checkpoint = read_checkpoint(path)  # a clear error for a missing or corrupt file, first
    run_dir = run_dir_of(path)
    run_cfg = read_run_config(path, run_dir / "config.yaml")
    _, _, data_kwargs = split_trainer_config(run_cfg.trainer)
    datamodule = build_datamodule(run_cfg.data, **data_kwargs)
    datamodule.setup()
    data = f"data={datamodule.data_name} (from {run_dir / 'config.yaml'})"
    check_checkpoint_fits(path, checkpoint, datamodule, data=data)
    try:
        module = module_from_checkpoint(checkpoint)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # hyperparameters or weights not dllab's
        raise ConfigError(
            f"ckpt_path={path}: its hyperparameters and weights do not make a dllab module ({error_line(err)})"
        ) from err
    return module, datamodule, run_dir


def read_run_config(ckpt_path: Path, path: Path) -> DictConfig:
    """A run's resolved config.yaml, upgraded to today's form; ConfigError naming both files
    when it is not YAML or lacks the data and trainer sections dllab-eval rebuilds the data from."""
    try:
        run_cfg = OmegaConf.load(path)
    except Exception as err:  # yaml's errors span several lines: the first one says enough
        raise ConfigError(f"ckpt_path={ckpt_path}: its run's {path} is not readable YAML ({error_line(err)})") from err
    missing = [k for k in ("data", "trainer") if not isinstance(run_cfg, DictConfig) or not run_cfg.get(k)]
    if missing:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: its run's {path} has no {' or '.join(missing)} section; "
            "give a checkpoint of a run dir that dllab-train wrote"
        )
    assert isinstance(run_cfg, DictConfig)
    return upgrade_config(run_cfg)


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
    path = run_dir / "eval_metrics.json"
    try:
        write_json(path, payload)
    except OSError as err:  # a read-only or full run dir: the metrics are still printed
        payload["not_written"] = f"{path}: not written ({err.strerror or err})"
    return payload


OPTIONS = ("ckpt_path", "accelerator", "threads", "verbose")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
RULES = {"accelerator": one_of(*ACCELERATORS), "verbose": BOOL, "ckpt_path": TEXT}


def check_options(cfg: DictConfig) -> None:
    """ckpt_path given, no key beyond dllab-eval's own (``+data=digits`` would otherwise be
    composed and silently ignored: the data is always the run's own), and each option's value."""
    extra = [str(k) for k in cfg if k not in OPTIONS]
    if extra:
        raise ConfigError(
            f"{extra[0]}: not an option of dllab-eval, which tests on the run's own data (from its config.yaml); "
            f"options: {', '.join(OPTIONS)}"
        )
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError("ckpt_path: required; give ckpt_path=<run dir>/checkpoints/best.ckpt")
    for key, rule in RULES.items():
        apply(key, cfg.get(key), rule)
    check_threads(cfg.get("threads"))
    try:
        check_accelerator_present(str(cfg.accelerator))
    except ConfigError as err:  # its message names dllab-train's trainer.accelerator
        why = str(err).split(": ", 1)[-1].split(";")[0]
        raise ConfigError(f"accelerator={cfg.accelerator}: {why}; use accelerator=cpu") from None


def verbose(cfg: DictConfig) -> bool:
    """The traceback wanted: HYDRA_FULL_ERROR=1 or verbose=true (a bad verbose is not a yes)."""
    return verbose_errors() or cfg.get("verbose") is True


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        check_options(cfg)
        payload = evaluate(str(cfg.ckpt_path), cfg.accelerator, cfg.get("threads"), bool(cfg.get("verbose")))
    except ConfigError as err:
        if verbose(cfg):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    where = (
        f"{Path(payload['checkpoint']).name} from epoch {payload['epoch']} (optimizer step {payload['global_step']})"
    )
    print(f"tested: {where}")
    for name, value in payload["test"].items():
        print(f"{name}: {value:.4f}")
    if "not_written" in payload:
        print(f"error: {payload['not_written']}", file=sys.stderr)
    else:
        print(f"written: {Path(payload['run_dir']) / 'eval_metrics.json'}")


def main() -> None:
    """Console entry point of ``dllab-eval``."""
    install_help()
    _hydra_main()


if __name__ == "__main__":
    main()
