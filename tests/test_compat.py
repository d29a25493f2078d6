"""Compatibility: the private Lightning, torch, Hydra and Optuna APIs dllab relies on exist in
the installed versions, the pinned range is the tested one, and run dirs of earlier dllab
versions still load in dllab-eval and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from dllab import compat
from dllab.training.module import load_module
from tests.conftest import bare_trainer, run_cli

OLD_RUN = Path(__file__).parent / "data" / "run_v0_1"


def test_the_installed_lightning_is_the_tested_one_and_pinned() -> None:
    major, minor = (int(part) for part in lightning.__version__.split(".")[:2])
    assert (major, minor) == compat.TESTED_LIGHTNING
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"lightning>={major}.{minor},<{major}.{minor + 1}"' in pyproject


def test_every_private_api_dllab_uses_exists(tmp_path: Path) -> None:
    for name in compat.MODEL_CHECKPOINT_OVERRIDES:
        assert callable(getattr(ModelCheckpoint, name)), name
    checkpoint = ModelCheckpoint(dirpath=tmp_path)
    assert compat.save_on_train_epoch_end_setting(checkpoint) is None
    trainer = bare_trainer(callbacks=[checkpoint], enable_checkpointing=True)
    assert compat.should_save_on_exception(checkpoint, trainer) is False
    compat.mark_checkpoint_saved(checkpoint, trainer, "x.ckpt")
    assert checkpoint._last_checkpoint_saved == "x.ckpt"
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.total
    compat.add_optimizer_steps(trainer, 3)  # trainer.global_step under manual optimization: test_module.py
    assert progress.completed == 3
    assert callable(compat.ddp_worker_command())
    logger = TensorBoardLogger(tmp_path, name="tb")
    assert compat.logger_prefix(logger) == ""
    assert hasattr(compat.tensorboard_file_writer(logger), "add_event")
    trainer._signal_connector.received_sigterm = True
    compat.forget_sigterm(trainer)
    assert trainer.received_sigterm is False
    stopping = EarlyStopping(monitor="val/acc", mode="max", patience=2)
    decisions = [compat.early_stopping_decision(stopping, torch.tensor(v))[0] for v in (0.5, 0.6, 0.6, 0.6)]
    assert decisions == [False, False, False, True] and stopping.wait_count == 2
    monitor = LearningRateMonitor()
    assert compat.lr_monitor_name(monitor, torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])) == "lr-Adam"
    assert compat.lr_monitor_name(monitor, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)) == "lr-SGD"


def test_the_private_torch_apis_dllab_uses_behave_as_it_expects() -> None:
    """torch 2.13.0: ``_get_scalar_dtype`` is the dtype of an optimizer's ``step`` tensors
    (the stacked optimizer's must match), ``_foreach_copy_`` copies list into list."""
    param = torch.nn.Parameter(torch.zeros(2))
    param.grad = torch.ones(2)
    adam = torch.optim.Adam([param], foreach=False)
    adam.step()
    assert adam.state[param]["step"].dtype == compat.scalar_dtype() == torch.float32
    assert compat.scalar_dtype(is_fused=True) == torch.float32
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert compat.scalar_dtype() == torch.float64 and compat.scalar_dtype(is_fused=True) == torch.float32
    finally:
        torch.set_default_dtype(default)
    targets, sources = [torch.zeros(3), torch.zeros(2, 2)], [torch.arange(3.0), torch.ones(2, 2)]
    compat.foreach_copy_(targets, sources)
    assert all(torch.equal(t, s) for t, s in zip(targets, sources, strict=True))
    # a state_dict's _metadata (per-module versions) survives the checkpoint snapshot's copy
    state = torch.nn.BatchNorm1d(2).state_dict()
    copied = type(state)(state)
    assert not hasattr(copied, "_metadata")
    compat.copy_state_dict_metadata(state, copied)
    assert copied._metadata[""]["version"] == 2  # type: ignore[attr-defined]


def test_the_private_hydra_apis_dllab_uses_behave_as_it_expects() -> None:
    """hydra-core 1.3.8: ``Hydra.format_config_groups`` (which dllab.hydra_help replaces),
    ``BasicSweeper.split_arguments`` (a sweep's planned jobs) and the config singleton that
    the stacked launcher sets per job and restores."""
    import inspect

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from dllab.runs.config import config_dir

    listing = compat.hydra_group_listing()
    assert list(inspect.signature(listing).parameters)[:3] == ["self", "predicate", "compact"]
    compat.set_hydra_group_listing(listing)
    assert compat.hydra_group_listing() is listing

    grid = compat.basic_sweeper_grid(["a=1,2", "b=x", "c=3,4"])
    assert grid == [["a=1", "b=x", "c=3"], ["a=1", "b=x", "c=4"], ["a=2", "b=x", "c=3"], ["a=2", "b=x", "c=4"]]

    before = compat.hydra_config_state()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        config = compose("train", overrides=["hydra.job.name=compat"], return_hydra_config=True)
    try:
        compat.set_hydra_config(config)
        assert HydraConfig.initialized() and HydraConfig.get().job.name == "compat"
        assert compat.hydra_config_state() is HydraConfig.instance().cfg
    finally:
        compat.restore_hydra_config(before)
    assert compat.hydra_config_state() is before


def test_the_private_optuna_apis_dllab_uses_behave_as_it_expects(tmp_path: Path) -> None:
    """optuna 5.0.0: a study's storage and a trial's id there, the heartbeat interface
    (None for an in-memory storage) and the stale trials a stopped heartbeat leaves."""
    import time
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    memory = optuna.create_study()
    asked = memory.ask()
    assert compat.optuna_storage(memory).get_trial(compat.optuna_trial_id(asked)).number == asked.number
    assert compat.optuna_heartbeat_interval(compat.optuna_storage(memory)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats outside Study.optimize
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=60, grace_period=1
        )
        study = optuna.create_study(storage=storage)
        trial = study.ask()
        trial_id = compat.optuna_trial_id(trial)
        assert compat.optuna_trial_id(study.get_trials(deepcopy=False)[0]) == trial_id
        assert compat.optuna_heartbeat_interval(compat.optuna_storage(study)) == 60
        compat.optuna_storage(study).record_heartbeat(trial_id)
        assert compat.optuna_stale_trial_ids(study) == []
        time.sleep(2.1)  # sqlite keeps heartbeats to the second: 2 s apart is past a grace period of 1 s
        assert compat.optuna_stale_trial_ids(study) == [trial_id]


def test_dllab_compat_imports_neither_torch_nor_lightning_nor_hydra() -> None:
    """hydra_help imports compat before Hydra starts: its --help must stay fast."""
    import subprocess
    import sys

    code = (
        "import sys, dllab.compat, dllab.hydra_help; print(sorted({'torch', 'lightning', 'hydra'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "old_run"
    shutil.copytree(OLD_RUN, run_dir)
    return run_dir


def test_a_checkpoint_of_an_earlier_version_rebuilds_its_mlp(old_run: Path) -> None:
    saved = torch.load(old_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert "net" not in saved["hyper_parameters"]  # written before networks were chosen by _target_
    module = load_module(str(old_run / "checkpoints" / "best.ckpt"))
    assert [p.shape[0] for p in module.net.parameters()][:2] == [8, 8]  # model.hidden_sizes=[8]


def test_dllab_eval_and_resume_work_on_a_run_dir_of_an_earlier_version(old_run: Path, tmp_path: Path) -> None:
    recorded = json.loads((old_run / "metrics.json").read_text())
    evaluated = run_cli("dllab-eval", f"ckpt_path={old_run / 'checkpoints' / 'best.ckpt'}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    again = json.loads((old_run / "eval_metrics.json").read_text())["test"]
    assert again == pytest.approx(recorded["test"], abs=1e-6)

    resumed = run_cli("dllab-train", f"resume={old_run}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((old_run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 3  # one more epoch than it had
    assert metrics["global_step"] == recorded["global_step"] * 3 // 2
    assert "test/acc" in metrics["test"]
