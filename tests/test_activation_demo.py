"""The lecture's activation demo (conf/experiment/activations.yaml): the lecture's SGD settings,
a sweep over the three activations, and the lesson itself: with plain SGD and the demo's short
budget ReLU learns the circle clearly further than tanh, and sigmoid stays near chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from dllab.checks import check_config
from dllab.runs.config import config_dir
from tests.conftest import compose_train, run_cli


def test_activations_experiment_is_the_lecture_setting(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=activations"], tmp_path)
    check_config(cfg)
    assert (cfg.task_name, cfg.data.name, cfg.seed) == ("activations", "circle", 2)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.momentum == 0.0
    assert (cfg.optimizer.lr, cfg.data.batch_size) == (0.03, 10)
    assert list(cfg.model.hidden_sizes) == [8, 8] and cfg.model.activation == "relu"  # a plain run: one job
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra_cfg = compose("train", overrides=["experiment=activations"], return_hydra_config=True).hydra
    assert hydra_cfg.sweeper._target_.endswith("BasicSweeper")
    assert dict(hydra_cfg.sweeper.params) == {"model.activation": "relu,tanh,sigmoid"}


@pytest.mark.slow
def test_activations_sweep_runs_three_jobs_and_relu_learns_faster_than_tanh(tmp_path: Path) -> None:
    """The experiment's own seed (a typical one of those scripts/measure_activations.py measured);
    the runs are deterministic on the CPU with one thread."""
    result = run_cli(
        "dllab-train", "-m", "experiment=activations", "threads=1", "plots=none",
        "+callbacks.progress_bar.enabled=false", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sorted(p.parent for p in (tmp_path / "logs" / "activations" / "multiruns").glob("*/multirun.yaml"))
    acc: dict[str, float] = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        (activation,) = [o.split("=", 1)[1] for o in overrides if o.startswith("model.activation=")]
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["epochs"] == 5
        acc[activation] = metrics["test"]["test/acc"]
    assert sorted(acc) == ["relu", "sigmoid", "tanh"]  # -m experiment=activations: three jobs
    assert acc["relu"] >= 0.95 and acc["relu"] >= acc["tanh"] + 0.1, acc
    assert acc["sigmoid"] <= 0.75, acc
