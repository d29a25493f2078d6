"""``scripts/benchmark.py --cases sweeps``, the instrument: scripts/hand_sweep.py, its plain-PyTorch
reference, writes one metrics file per model and trains what dllab's ``experiment=activations``
trains (the same data sizes and splits, network, optimizer and batch), so the ratio compares like
with like; the benchmark reads a sweep's training time and the stacked sweep's phases as stated."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from dllab.data.datamodule import build_datamodule
from tests.conftest import compose_train

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hand_sweep.py"


def test_hand_sweep_writes_one_metrics_file_per_model_with_dllabs_settings(tmp_path: Path) -> None:
    out = tmp_path / "hand"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--epochs", "2", "--seeds", "1"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "hand sweep: 6 models in" in done.stdout
    files = sorted(out.glob("*/metrics.json"))
    assert [f.parent.name for f in files] == [
        f"{data}_{activation}_seed0" for data in ("circle", "xor") for activation in ("relu", "sigmoid", "tanh")
    ]
    metrics = [json.loads(f.read_text()) for f in files]
    for m in metrics:
        assert [v["epoch"] for v in m["val"]] == [0, 1]
        assert all(0.0 <= v["acc"] <= 1.0 and v["loss"] > 0 for v in m["val"])
        assert 0.0 <= m["test"]["acc"] <= 1.0 and m["test"]["loss"] > 0
    assert len({m["test"]["loss"] for m in metrics}) == 6  # six different models

    cfg = compose_train(["experiment=activations", "seed=0"], tmp_path / "run")
    datamodule = build_datamodule(cfg.data)
    datamodule.setup()
    settings = metrics[0]["settings"]
    assert settings["sizes"] == {split: len(datamodule.arrays[split][1]) for split in ("train", "val", "test")}
    assert settings["n_samples"] == cfg.data.n_samples
    assert settings["batch_size"] == cfg.data.batch_size
    assert settings["lr"] == cfg.optimizer.lr and cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.optimizer.momentum == 0 and cfg.optimizer.weight_decay == 0
    assert settings["hidden_sizes"] == OmegaConf.to_object(cfg.model.hidden_sizes)
    assert cfg.trainer.max_epochs == 5 and cfg.data.standardize is False and cfg.data.noise == 0


def load_benchmark():
    """scripts/benchmark.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT.parent / "benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_sweep_counts_a_stacks_training_once_and_the_jobs_alone(tmp_path: Path) -> None:
    bench = load_benchmark()
    stack = {"models": 2, "jobs": [0, 1], "fit_seconds": 2.0, "memory_mib": 0.5}
    jobs = [
        {"status": "completed", "fit_seconds": 1.0, "stack": stack},
        {"status": "completed", "fit_seconds": 1.0, "stack": stack},
        {"status": "completed", "fit_seconds": 1.5},
        {"status": "failed", "fit_seconds": 0.25},
    ]
    for i, metrics in enumerate(jobs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "metrics.json").write_text(json.dumps(metrics))
        os.utime(tmp_path / str(i) / "metrics.json", (1000.0 + i, 1000.0 + i))
    sweep = bench.read_sweep(tmp_path)
    assert sweep["jobs"] == 4 and sweep["completed"] == 3
    assert sweep["fit_seconds"] == 2.0 + 1.5 + 0.25
    assert sweep["stacks"] == [2] and sweep["alone"] == 2 and sweep["stack_mib"] == 0.5
    assert sweep["last_written"] == 1003.0


def test_stacked_phases_split_the_wall_time_at_the_launchers_log_lines() -> None:
    bench = load_benchmark()

    def stamp(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]

    start = datetime.datetime(2026, 12, 7, 12, 0, 0).timestamp()
    output = "\n".join(
        [
            f"[{stamp(start + 5.0)}][HYDRA] Launching 2 jobs, stacked where they can be",
            f"[{stamp(start + 5.0)}][HYDRA] \t#0 : seed=0",
            f"[{stamp(start + 5.25)}][HYDRA] \t#1 : seed=1",
            f"[{stamp(start + 7.5)}][HYDRA] stack of 2 models: #0, #1",
            "result: test/acc 1",
        ]
    )
    run = {"output": output, "launched": start, "seconds": 12.0, "fit_seconds": 0.5, "last_written": start + 10.0}
    assert bench.stacked_phases(run) == {
        "start-up, imports, sweeper's compositions": 5.0,
        "launcher's compositions": 0.25,
        "preparing jobs (checks, data, model)": 2.25,
        "training the stacks": 0.5,
        "writing the jobs": 2.0,
        "sweep summary and exit": 2.0,
    }
