"""scripts/hand_sweep.py, the plain-PyTorch reference of ``benchmark.py --cases sweeps``: it
writes one metrics file per model, and it trains what dllab's ``experiment=activations`` trains
(the same data sizes and splits, network, optimizer and batch), so the ratio compares like with like."""

from __future__ import annotations

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
