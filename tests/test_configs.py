"""Every option of every config group composes, passes the checks and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from dllab.catalog import BUILTIN_SOURCES, LOSSES
from dllab.checks import check_config
from dllab.data.datamodule import build_datamodule
from dllab.data.source import source_of
from dllab.errors import ConfigError
from dllab.train import config_dir, instantiate_enabled, plain, split_trainer_config
from dllab.training.losses import build_loss
from dllab.training.optim import build_optimizer, build_scheduler
from tests.conftest import compose_train
from tests.makedata import local_data_overrides

CONF = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_dataset_has_a_config() -> None:
    assert options("data") == sorted(BUILTIN_SOURCES)


@pytest.mark.parametrize("name", options("data"))
def test_data_options(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_train([f"data={name}", *local_data_overrides(name, tmp_path, monkeypatch)], tmp_path)
    check_config(cfg)
    assert cfg.data._target_ == BUILTIN_SOURCES[name] and cfg.data.name == name
    _, _, data_kwargs = split_trainer_config(cfg.trainer)
    dm = build_datamodule(cfg.data, **data_kwargs)
    dm.setup()
    task = source_of(cfg.data).task
    assert dm.task == (task if task != "auto" else "classification")
    assert dm.image_shape == dm.source.image_shape
    batch = next(iter(dm.train_dataloader()))
    assert batch.x[0].numel() == dm.input_size and batch.batch_size == cfg.data.batch_size
    assert batch.x.shape[1:] == (dm.image_shape or (dm.input_size,))  # images as (N, C, H, W)


@pytest.mark.parametrize("name", options("loss"))
def test_loss_options(name: str, tmp_path: Path) -> None:
    data = "digits" if name in ("auto", *LOSSES["classification"]) else "diabetes"
    cfg = compose_train([f"loss={name}", f"data={data}"], tmp_path)
    check_config(cfg)
    loss = build_loss(source_of(cfg.data).task, plain(cfg.loss))
    assert isinstance(loss, torch.nn.Module)


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"optimizer={name}"], tmp_path)
    check_config(cfg)
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = build_optimizer(plain(cfg.optimizer), params)
    assert type(optimizer).__name__.lower() == name
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    if name != "rmsprop":  # the one without a fused kernel
        assert optimizer.defaults.get("fused") is True


@pytest.mark.parametrize("name", options("scheduler"))
def test_scheduler_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"scheduler={name}"], tmp_path)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(plain(cfg.scheduler), optimizer)
    assert (scheduler is None) == (name == "none")


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"trainer={name}"], tmp_path)
    if name in ("gpu", "mps") and not (torch.cuda.is_available() if name == "gpu" else False):
        with pytest.raises(ConfigError, match=f"trainer.accelerator={name}: "):
            check_config(cfg)
        return
    check_config(cfg)
    trainer_kwargs, module_kwargs, _ = split_trainer_config(cfg.trainer)
    assert set(module_kwargs) == {"accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm"}
    trainer = instantiate(trainer_kwargs, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("name", options("logger"))
def test_logger_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"logger={name}"], tmp_path)
    loggers = instantiate_enabled(cfg.logger)
    assert len(loggers) == (2 if name == "many" else 1)


@pytest.mark.parametrize("name", options("callbacks"))
def test_callback_options(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"callbacks={name}", "optimized_metric=val/acc"], tmp_path)
    callbacks = instantiate_enabled(cfg.callbacks)
    names = {type(c).__name__ for c in callbacks}
    if name == "default":
        assert names == {
            "BestCheckpoint",
            "LastCheckpoint",
            "LearningRateMonitor",
            "EpochProgressBar",
            "DataSummary",
            "AugmentationPreview",
        }
        on = instantiate_enabled(compose_train(["callbacks.early_stopping.enabled=true"], tmp_path).callbacks)
        assert "EarlyStopping" in {type(c).__name__ for c in on}
        verbose = instantiate_enabled(compose_train(["verbose=true"], tmp_path).callbacks)
        assert "ModelSummary" in {type(c).__name__ for c in verbose}  # the layer table: on request
    else:
        assert callbacks == []


@pytest.mark.parametrize("group", ["experiment", "debug"])
def test_experiment_and_debug_options(group: str, tmp_path: Path) -> None:
    for name in options(group):
        cfg = compose_train([f"{group}={name}"], tmp_path)
        check_config(cfg)
        instantiate(split_trainer_config(cfg.trainer)[0], logger=False, enable_checkpointing=False)


def test_experiments_state_only_what_differs(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=playground_circle"], tmp_path)
    assert cfg.data.name == "circle" and cfg.model.activation == "sigmoid"
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.data.batch_size == 10
    assert compose_train(["experiment=diabetes_regression"], tmp_path).loss.name == "huber"
