"""End-to-end: dllab-train and dllab-eval as a user runs them (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import run_cli, run_dirs

pytestmark = pytest.mark.slow


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_fast_dev_run(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "debug=fast_dev_run", "data=circle", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # a smoke test: it says what it tested, and leaves nothing behind (no run dir, no command for one)
    assert "result: test/acc " in result.stdout and "debug=fast_dev_run (nothing written)" in result.stdout
    assert "tensorboard" not in result.stdout and "run dir" not in result.stdout
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*")), list(
        (tmp_path / "logs").rglob("*")
    )


def test_short_real_run_then_eval(tmp_path: Path) -> None:
    result = run_cli(
        "dllab-train",
        "data=circle",
        "model.hidden_sizes=[8]",
        "model.activation=tanh",
        "optimizer=sgd",
        "optimizer.lr=0.03",
        "data.batch_size=10",
        "trainer.max_epochs=30",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.parent.parent.name == "circle"  # logs/<task_name>/runs/<timestamp>_<id>
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 30
    assert metrics["optimized_metric"] == "val/acc" and metrics["objective"] >= 0.9
    assert metrics["test"]["test/acc"] >= 0.9
    assert metrics["best_val"]["val/acc_best"] == pytest.approx(metrics["objective"])
    assert metrics["global_step"] == 30 * 35  # 350 training samples / batch 10
    assert "config (" not in result.stdout  # saved, printed only with print_config=true (tests/test_console.py)
    assert torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] + 1 == metrics["best_epoch"]
    config = (run_dir / "config.yaml").read_text()
    assert "activation: tanh" in config and "seed: 42" in config and "${" not in config
    best = run_dir / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(best, weights_only=True)["hyper_parameters"]["net"]["hidden_sizes"] == [8]

    # TensorBoard: per-epoch scalars, and an HParams session with the final metrics
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/acc"} <= scalars
    assert len(events.Scalars("train/loss")) == 30
    assert "hp_metric" not in scalars
    hparams = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info.hparams
    assert hparams["activation"].string_value == "tanh" and hparams["lr"].number_value == 0.03
    assert set(hparams) == {
        "data", "model", "activation", "hidden_sizes", "dropout", "batch_norm", "loss", "optimizer", "lr", "batch_size",
        "accumulate_grad_batches", "seed",
    }  # fmt: skip

    evaluated = run_cli("dllab-eval", f"ckpt_path={best}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    again = json.loads((run_dir / "eval_metrics.json").read_text())["test"]
    for name, value in metrics["test"].items():
        assert again[name] == pytest.approx(value, abs=1e-6)
    assert f"test/acc: {metrics['test']['test/acc']:.4f}" in evaluated.stdout
    # which model it is: the epoch and step the run's result named
    assert f"tested: best.ckpt from epoch {metrics['best_epoch']} (optimizer step {metrics['best_step']})" in (
        evaluated.stdout
    )


def test_regression_follows_from_the_data(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "data=diabetes", "trainer.max_epochs=20", "callbacks=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = read_metrics(run_dirs(tmp_path)[0])
    assert metrics["optimized_metric"] == "val/mse"
    assert set(metrics["test"]) == {"test/mse", "test/mae", "test/r2", "test/loss"}
    assert metrics["test"]["test/r2"] > 0.3  # diabetes is hard; a linear model gets about 0.45


def test_python_module_entry_and_help(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "dllab.train", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0
    assert "data: breast_cancer, cifar10, circle, csv, diabetes, digits, fashion_mnist, function" in result.stdout
    assert "augmentation: light, none, strong" in result.stdout


def test_batch_size_finder_picks_a_larger_batch_that_fits(tmp_path: Path) -> None:
    result = run_cli(
        "dllab-train",
        "data=iris",
        "data.batch_size=4",
        "tuner.batch_size_find=true",
        "trainer.max_epochs=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    found = read_metrics(run_dir)["batch_size_find"]
    assert found["configured"] == 4 and 4 < found["used"] <= 105  # never above the training split
    assert f"batch_size: {found['used']}" in (run_dir / "config.yaml").read_text()


def test_eval_uses_the_runs_own_test_slice(tmp_path: Path) -> None:
    """dllab-eval rebuilds the data with the run's limits: a run tested on half the test split
    is re-evaluated on that same half."""
    args = ("data=iris", "trainer.max_epochs=3", "trainer.limit_test_batches=0.5", "plots=none")
    assert run_cli("dllab-train", *args, cwd=tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    evaluated = run_cli("dllab-eval", f"ckpt_path={run_dir}/checkpoints/best.ckpt", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    again = json.loads((run_dir / "eval_metrics.json").read_text())["test"]
    assert again == pytest.approx(read_metrics(run_dir)["test"], abs=1e-6)


def test_eval_and_landscape_take_threads(tmp_path: Path) -> None:
    """threads=N sets torch's threads in dllab-eval and dllab-landscape as in dllab-train."""
    args = ("data=circle", "model.hidden_sizes=[8]", "trainer.max_epochs=2", "plots=none", "threads=1")
    assert run_cli("dllab-train", *args, cwd=tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    best = run_dir / "checkpoints" / "best.ckpt"

    evaluated = run_cli("dllab-eval", f"ckpt_path={best}", "threads=1", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "torch threads: 1" in evaluated.stdout
    assert (run_dir / "eval_metrics.json").is_file()

    out = tmp_path / "landscape"
    drawn = run_cli("dllab-landscape", f"ckpt_path={best}", "resolution=5", "threads=1", f"out={out}", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    assert (out / "landscape_contour.png").is_file() and (out / "landscape_surface.png").is_file()

    for command in ("dllab-eval", "dllab-landscape"):
        refused = run_cli(command, f"ckpt_path={best}", "threads=0", cwd=tmp_path)
        assert refused.returncode == 2
        assert "threads=0: must be null (torch's default) or a positive integer" in refused.stderr


def test_landscape_sets_torch_threads(tmp_path: Path) -> None:
    from dllab import landscape

    try:
        (written,) = landscape.run(["activations", "threads=2", f"out={tmp_path}"])
        assert torch.get_num_threads() == 2 and written.is_file()
    finally:
        torch.set_num_threads(1)  # as conftest set it


def test_help_lists_the_groups_to_choose_from(tmp_path: Path) -> None:
    """--help lists the groups one chooses from (data, model, optimizer, ...), not conf/_base,
    whose base configs the data configs use through their defaults."""
    result = run_cli("dllab-train", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    groups = {line.split(":")[0] for line in result.stdout.splitlines() if ": " in line and " " not in line[:1]}
    assert {"data", "model", "optimizer", "loss", "trainer", "experiment"} <= groups
    assert "_base" not in result.stdout
    assert "model: cnn, mlp" in result.stdout
    assert "optimizer: adagrad, adam, adamw, nadam, rmsprop, sgd" in result.stdout

    evaluated = run_cli("dllab-eval", "--help", cwd=tmp_path)  # its own keys, not dllab-train's groups
    assert evaluated.returncode == 0, evaluated.stderr
    assert "threads: null" in evaluated.stdout and "data:" not in evaluated.stdout


def test_help_listing_is_hydras_without_internal_groups() -> None:
    """dllab.hydra_help lists exactly the groups and options Hydra's own listing finds (it asks
    the config loader, which copies the whole repository per question), but those under _base."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    from dllab import hydra_help
    from dllab.runs.config import config_dir

    hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=create_config_search_path(config_dir()))
    try:
        loader = hydra.config_loader
        groups = hydra.list_all_config_groups()
        expected = "".join(
            f"{g}: {', '.join(sorted(loader.get_group_options(g)))}\n" for g in sorted(groups) if g != "_base"
        )
    finally:
        GlobalHydra.instance().clear()  # the tests after this one compose their own configs
    assert "_base" in groups  # Hydra's own listing has it
    assert hydra_help.format_config_groups(loader.repository, lambda g: True) == expected
    assert hydra_help.is_internal("_base") and hydra_help.is_internal("a/_b") and not hydra_help.is_internal("data")
