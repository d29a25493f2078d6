"""Every option of every config group composes, passes the checks and instantiates."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning
import pytest
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from dllab.catalog import BUILTIN_SOURCES, LOSSES, MAIN_METRIC, METRICS
from dllab.checks import (
    PATHS_KEYS,
    TOP_LEVEL_KEYS,
    check_batch_norm_batches,
    check_config,
    check_monitors_logged,
    check_targets,
)
from dllab.data.datamodule import build_datamodule
from dllab.data.source import source_of
from dllab.errors import ConfigError
from dllab.models.mlp import MLP
from dllab.models.network import DATA_SIZES
from dllab.runs.config import config_dir, instantiate_enabled, plain, split_trainer_config
from dllab.targets import check_keys, class_keys
from dllab.training.callback_checks import CALLBACK_RULES, CALLBACKS
from dllab.training.logger_checks import LOGGER_RULES, LOGGERS
from dllab.training.losses import build_loss
from dllab.training.module import MODULES
from dllab.training.optim import build_optimizer, build_scheduler
from dllab.training.optim_checks import (
    OPTIMIZER_OWN_KEYS,
    OPTIMIZER_PASSED,
    OPTIMIZER_RULES,
    SCHEDULER_PASSED,
    SCHEDULER_RULES,
    SCHEDULERS,
)
from dllab.training.trainer_checks import TRAINER_NOT_HONOURED, TUNER_KEYS
from tests.conftest import compose_train, run_cli
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
    # fused where torch has a kernel (RMSprop and NAdam have none)
    assert optimizer.defaults.get("fused") is (None if name in ("rmsprop", "nadam") else True)


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


# --- key names: bound to the classes' signatures, one function for every group ------------------


def node(**keys: object) -> DictConfig:
    return OmegaConf.create(keys)


class TakesAnything:
    def __init__(self, width: int = 1, **options: object) -> None: ...


class Wrapper(ModelCheckpoint):
    """Hands *args and **kwargs on to ModelCheckpoint, so it takes ModelCheckpoint's keys too."""

    def __init__(self, *args: object, extra: int = 0, **kwargs: object) -> None: ...


def test_an_unknown_key_of_a_known_class_names_the_field_and_lists_its_keys() -> None:
    with pytest.raises(ConfigError) as err:
        check_keys("optimizer", node(lrr=0.1), torch.optim.SGD, OPTIMIZER_PASSED, OPTIMIZER_OWN_KEYS)
    assert str(err.value).startswith("optimizer.lrr=0.1: unknown key of SGD; its keys: lr, momentum, dampening")
    assert "params" not in str(err.value) and str(err.value).endswith(", fused")  # passed by dllab; its own
    assert str(err.value).count("fused") == 1  # a key of the class and dllab's own: listed once
    with pytest.raises(
        ConfigError, match=re.escape("scheduler.last_epoch=3: unknown key of StepLR; its keys: step_size")
    ):
        check_keys("scheduler", node(step_size=1, last_epoch=3), torch.optim.lr_scheduler.StepLR, SCHEDULER_PASSED)


def test_dllabs_own_keys_and_hydras_are_taken() -> None:
    check_keys("optimizer", node(lr=0.1, fused="auto", _partial_=True), torch.optim.Adam, OPTIMIZER_PASSED, ("fused",))
    check_keys("callbacks.x", node(enabled=False, patience=2, monitor="val/loss"), EarlyStopping, own=("enabled",))
    with pytest.raises(ConfigError, match=r"callbacks\.x\.enabled=False: unknown key of EarlyStopping"):
        check_keys("callbacks.x", node(enabled=False, monitor="val/loss"), EarlyStopping)  # not declared: refused


def test_a_class_taking_kwargs_checks_its_own_keys_and_a_wrapper_its_bases() -> None:
    check_keys("model", node(width=3, anything=1), TakesAnything)
    check_keys("callbacks.x", node(extra=1, monitor="val/loss", save_top_k=2), Wrapper)
    with pytest.raises(ConfigError, match=r"callbacks\.x\.nope=1: unknown key of Wrapper; its keys: extra, dirpath"):
        check_keys("callbacks.x", node(nope=1), Wrapper)


def test_a_key_without_a_default_is_required() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("scheduler.step_size: required by StepLR; set scheduler.step_size=")
    ):
        check_keys("scheduler", node(gamma=0.5), torch.optim.lr_scheduler.StepLR, SCHEDULER_PASSED)
    check_keys("model", node(), MLP, passed=DATA_SIZES)  # input_size and output_size: from the data


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+optimizer.lrr=0.1"], "optimizer.lrr=0.1: unknown key of Adam; its keys: lr, betas"),
        (["+trainer.foo=1"], "trainer.foo=1: unknown key of Lightning's Trainer; its keys: accelerator, strategy"),
        (["+callbacks.early_stopping.foo=1"], "callbacks.early_stopping.foo=1: unknown key of EarlyStopping; its keys"),
        (["+callbacks.model_checkpoint.foo=1"], "callbacks.model_checkpoint.foo=1: unknown key of BestCheckpoint"),
        (["~callbacks.early_stopping.monitor"], "callbacks.early_stopping.monitor: required by EarlyStopping"),
        # TensorBoardLogger hands its other keys to torch's SummaryWriter: bound to that one's
        (["+logger.tensorboard.foo=1"], "logger.tensorboard.foo=1: unknown key of TensorBoardLogger; its keys"),
        (["+logger.tensorboard.flush_secs=5"], None),
        (["model=cnn", "+model.width=3"], "model.width=3: unknown key of CNN; its keys: channels, kernel_size"),
        (["scheduler=plateau", "scheduler.monitor=val/loss"], None),  # monitor: dllab's own, for a plateau
    ],
)
def test_check_targets_binds_every_groups_keys(overrides: list[str], message: str | None, tmp_path: Path) -> None:
    cfg = compose_train(overrides, tmp_path)
    check_config(cfg)  # key names are not checked before torch is imported
    if message is None:
        check_targets(cfg)
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_targets(cfg)


def test_the_stacked_optimizer_refuses_an_unknown_key_through_the_same_function() -> None:
    from dllab.stacked.optim import StackedOptimizer

    configs = [{"_target_": "torch.optim.SGD", "lr": 0.1, "lrr": 0.1}] * 2
    with pytest.raises(ConfigError, match=re.escape("optimizer.lrr=0.1: unknown key of SGD; its keys: lr, momentum")):
        StackedOptimizer([torch.zeros(2, 3, requires_grad=True)], configs)


def test_the_trainer_keys_dllab_sets_are_lightnings_and_the_shipped_ones_are_taken() -> None:
    taken = set(inspect.signature(lightning.pytorch.Trainer).parameters)
    assert set(TRAINER_NOT_HONOURED) <= taken
    composed = set()
    for name in options("trainer"):
        composed |= set(compose_train([f"trainer={name}"], Path("unused")).trainer)
    assert composed - {"_target_"} <= taken - set(TRAINER_NOT_HONOURED)


def test_the_value_rules_cover_the_classes_conf_ships_and_name_their_keys(tmp_path: Path) -> None:
    """The value rules of the optimizer, scheduler, callbacks and loggers are for the classes conf/
    ships: each class conf/ names has its rules, and each rule names a key of some such class."""
    ruled: dict[str, set[str]] = {}
    for name in options("optimizer"):
        ruled.setdefault("optimizer", set()).add(compose_train([f"optimizer={name}"], tmp_path).optimizer._target_)
    for name in options("scheduler"):
        target = compose_train([f"scheduler={name}"], tmp_path).scheduler._target_
        assert target is None or target in SCHEDULERS
    for overrides in (["callbacks=default"], *([f"hparams_search={n}"] for n in options("hparams_search"))):
        for entry in compose_train(overrides, tmp_path).callbacks.values():
            assert entry._target_ in CALLBACKS
    for name in options("logger"):
        for entry in compose_train([f"logger={name}"], tmp_path).logger.values():
            assert entry._target_ in LOGGERS
    for targets, rules in (
        (ruled["optimizer"], OPTIMIZER_RULES),
        (SCHEDULERS, SCHEDULER_RULES),
        (CALLBACKS, CALLBACK_RULES),
        (LOGGERS, LOGGER_RULES),
    ):
        keys = set().union(*(class_keys(get_class(t))[0] for t in targets)) | {"fused", "monitor"}
        assert set(rules) <= keys, set(rules) - keys
    assert set(compose_train([], tmp_path).tuner) == set(TUNER_KEYS)


def test_the_top_level_keys_are_train_yamls(tmp_path: Path) -> None:
    assert tuple(compose_train([], tmp_path)) == TOP_LEVEL_KEYS
    assert tuple(compose_train([], tmp_path).paths) == PATHS_KEYS
    for group in ("experiment", "hparams_search", "debug"):
        for name in options(group):
            assert set(compose_train([f"{group}={name}"], tmp_path)) == set(TOP_LEVEL_KEYS)


def test_the_catalog_names_the_metrics_each_module_logs() -> None:
    for task, module in MODULES.items():
        assert (module.metrics, module.main_metric) == (METRICS[task], MAIN_METRIC[task])


# --- what only the loaded data or the built module tells ----------------------------------------


def test_monitors_of_a_table_are_checked_once_its_task_is_known(tmp_path: Path) -> None:
    """A CSV's task is ``auto`` until it is read: check_config leaves its monitors to
    check_monitors_logged, which dllab-train calls with the module's metrics."""
    (tmp_path / "t.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    table = ["data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=y"]
    cfg = compose_train([*table, "callbacks.early_stopping.monitor=val/mse"], tmp_path)
    check_config(cfg)
    with open_dict(cfg):
        cfg.optimized_metric = "val/acc"  # what build() makes of auto for a classification table
    refused = r"^callbacks\.early_stopping\.monitor=val/mse: not logged; choose one of val/acc, val/f1, val/loss"
    with pytest.raises(ConfigError, match=refused):
        check_monitors_logged(cfg, METRICS["classification"], MAIN_METRIC["classification"])
    with open_dict(cfg):
        cfg.optimized_metric = "val/mse"  # a regression table
    check_monitors_logged(cfg, METRICS["regression"], MAIN_METRIC["regression"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.limit_val_batches=0"], None),  # train/loss is optimized; the tie-breaker is never read
        (
            ["trainer.limit_val_batches=0", "scheduler=plateau"],
            "scheduler.monitor=val/loss: not logged (validation is off: trainer.limit_val_batches=0); "
            "choose one of train/acc, train/f1, train/loss",
        ),
        (["scheduler=plateau", "scheduler.monitor=val/acc", "scheduler.mode=max"], None),
        (["scheduler=plateau", "scheduler.monitor=val/acc"], "scheduler.mode=min: val/acc is maximized; use"),
        (["optimized_metric=val/loss"], None),  # the checkpoint's mode follows the metric
        (["data=diabetes", "callbacks.early_stopping.mode=max"], "callbacks.early_stopping.mode=max: val/mse is"),
        (["callbacks.model_checkpoint.tie_breaker=val/los"], "callbacks.model_checkpoint.tie_breaker=val/los: not"),
        (["hparams_search=circle_optuna", "callbacks.optuna_pruning.monitor=loss"], "optuna_pruning.monitor=loss:"),
    ],
)
def test_monitored_names_and_modes(overrides: list[str], message: str | None, tmp_path: Path) -> None:
    cfg = compose_train(overrides, tmp_path)
    if message is None:
        check_config(cfg)
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_config(cfg)


@pytest.mark.parametrize(
    ("batch_size", "samples", "world", "refused"),
    [(3, 1258, 1, "data.batch_size=3: with model.batch_norm=true the last batch of each epoch holds 1 of the 1258"),
     (4, 1258, 1, None), (4, 1258, 2, "1 of the 629 training samples per process (2 processes)"), (32, 1258, 1, None)],
)  # fmt: skip
def test_batch_norm_refuses_a_last_batch_of_one(
    batch_size: int, samples: int, world: int, refused: str | None, tmp_path: Path
) -> None:
    cfg = compose_train(["model.batch_norm=true", f"data.batch_size={batch_size}"], tmp_path)
    if refused is None:
        check_batch_norm_batches(cfg, samples, world)
        return
    with pytest.raises(ConfigError, match=re.escape(refused)) as err:
        check_batch_norm_batches(cfg, samples, world)
    suggested = int(str(err.value).rsplit("data.batch_size=", 1)[1])
    assert ((samples + world - 1) // world) % suggested != 1
    check_batch_norm_batches(
        compose_train(["model.batch_norm=false", f"data.batch_size={batch_size}"], tmp_path), samples
    )


def test_batch_norm_under_ddp_counts_the_processes_from_the_config(tmp_path: Path) -> None:
    ddp = ["trainer=ddp", "trainer.accelerator=cpu"]
    cfg = compose_train(["model.batch_norm=true", "data.batch_size=4", *ddp], tmp_path)
    with pytest.raises(ConfigError, match=re.escape("1 of the 629 training samples per process (2 processes)")):
        check_batch_norm_batches(cfg, 1258)


def test_batch_norm_off_and_a_partial_batch_are_fine_together(tmp_path: Path) -> None:
    cfg = compose_train(["data.batch_size=3", "trainer.limit_train_batches=2"], tmp_path)
    check_batch_norm_batches(cfg, 1258)  # batch norm off: a batch of one trains
    cfg = compose_train(["model.batch_norm=true", "data.batch_size=3", "trainer.limit_train_batches=2"], tmp_path)
    check_batch_norm_batches(cfg, 1258)  # two whole batches of 3 per epoch


# --- a task_name that would leave paths.log_dir ---------------------------------------------------


def test_an_escaping_task_name_leaves_nothing_behind(tmp_path: Path) -> None:
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    result = run_cli("dllab-train", "task_name=../../escaped", cwd=cwd)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: task_name='../../escaped': must be a plain folder name under paths.log_dir "
        "(not empty, no / or \\, not starting with .)"
    )
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left in (["a", "a/b"], ["a", "a/b", "a/b/logs"]), left  # logs/ itself may stay, empty


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], None),
        (["logger=many", "scheduler=plateau", "hparams_search=digits_optuna"], None),
        (["optimizer._target_=torch.optim.Adamm"], "optimizer._target_=torch.optim.Adamm: cannot import torch.optim"),
        (["optimizer._target_=torch.nn.Linear"], "optimizer._target_=torch.nn.Linear: not a subclass of torch.optim"),
        (["optimizer._target_=torch.optim.NAdam"], None),  # Adam's keys fit NAdam; fused: auto is dllab's
        (
            ["scheduler=step", "scheduler._target_=torch.optim.lr_scheduler.ExponentialLR"],
            "scheduler.step_size=10: unknown key of ExponentialLR; its keys: gamma",
        ),
        (["scheduler=step", "scheduler._target_=torch.optim.SGD"], "not a learning-rate scheduler of torch.optim"),
        (
            ["+callbacks.x._target_=torch.nn.Linear"],
            "callbacks.x._target_=torch.nn.Linear: not a subclass",
        ),
        (["model._target_=torch.nn.Linearr"], "model._target_=torch.nn.Linearr: cannot import"),
    ],
)
def test_the_classes_named_by_target_are_checked_once_torch_is_there(
    overrides: list[str], message: str | None, tmp_path: Path
) -> None:
    """check_config cannot import torch.optim to tell Adamm from Adam; check_targets can."""
    cfg = compose_train(overrides, tmp_path)
    check_config(cfg)
    if message is None:
        check_targets(cfg)
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_targets(cfg)
