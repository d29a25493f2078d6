"""What a run and a sweep say in the terminal: a quiet start, the data summary, and the result
last (also in train.log); the config and Lightning's chatter only on request."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_dirs

pytestmark = pytest.mark.slow


def test_the_default_run_is_quiet_and_ends_with_its_result(tmp_path: Path) -> None:
    result = run_cli("dllab-train", cwd=tmp_path)  # exactly `make train`
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 40, result.stdout
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    acc = metrics["test"]["test/acc"]
    assert lines[-5].startswith(f"result: test/acc {acc:.4g}")
    tested = re.fullmatch(r"tested: best\.ckpt from epoch (\d+) of 30 \(optimizer step (\d+) of 1200\): .*", lines[-4])
    assert tested, lines[-4]
    assert (int(tested[1]), int(tested[2])) == (metrics["best_epoch"], metrics["best_step"])
    assert metrics["best_step"] == 40 * metrics["best_epoch"]  # 1258 samples in batches of 32
    assert lines[-3].startswith("time: ")
    tensorboard = f"look at it: tensorboard --logdir {run_dir}  (curves: http://localhost:6006/#custom_scalars)"
    assert lines[-2:] == [f"run dir: {run_dir}", tensorboard]
    # the data summary is there, the config and Lightning's info lines are not
    assert "samples: train 1258, val 180, test 359" in lines
    assert any(line.startswith("warning: fewer than 10 training samples per parameter") for line in lines)
    assert not any("GPU available" in line or "optimizer:" in line for line in lines)
    assert (run_dir / "config.yaml").is_file()
    log = (run_dir / "train.log").read_text()
    for line in lines[-5:]:
        assert line in log  # train.log has the result too


def test_print_config_and_verbose_show_the_config_and_lightnings_lines(tmp_path: Path) -> None:
    args = ("data=circle", "trainer.max_epochs=1", "print_config=true", "verbose=true")
    result = run_cli("dllab-train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("config (") and line.endswith("config.yaml):") for line in lines)
    assert any(line.startswith("  optimizer: {_target_: torch.optim.Adam, lr: 0.001, ") for line in lines)
    assert any(line.startswith("  task_name: circle, optimized_metric: val/acc, seed: 42") for line in lines)
    assert "  callbacks:" in lines and any(line.startswith("    model_checkpoint: {") for line in lines)
    assert any("GPU available" in line for line in lines)  # Lightning's info lines
    assert any("Trainable params" in line for line in lines)  # the model summary


def test_a_sweep_ends_with_its_results_table_best_first(tmp_path: Path) -> None:
    args = ("-m", "data=circle", "model.activation=relu,sigmoid", "trainer.max_epochs=3", "threads=1")
    result = run_cli("dllab-train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not any("Directory watcher" in line or "optimizer:" in line for line in lines)
    header, first, second = lines[-3:]
    assert header.split() == ["job", "model.activation", "val/acc", "test/acc", "best", "epoch", "status"]
    rows = [line.split() for line in (first, second)]
    assert {row[1] for row in rows} == {"relu", "sigmoid"}
    assert float(rows[0][2]) >= float(rows[1][2])  # best first
    assert all(row[-1] == "completed" and re.fullmatch(r"\d/3", row[-2]) for row in rows)
    summary = next(p for p in (tmp_path / "logs").rglob("summary.csv"))
    assert "global_step" in summary.read_text().splitlines()[0]
