"""The recipes of docs/extending.md run exactly as written: each recipe's files are
written from the page into an empty folder, and its commands run there with bash."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import BIN

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
FILE = re.compile(r"^`([\w/.]+)`[^\n]*:\n\n```\w+\n(.*?)^```", re.S | re.M)
COMMANDS = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def recipes() -> dict[str, tuple[dict[str, str], list[str]]]:
    """Per "##" heading of docs/extending.md: its files (path -> text) and commands."""
    found = {}
    for part in PAGE.read_text().split("\n## ")[1:]:
        title = part.split(":", 1)[0]
        files = {path: text for path, text in FILE.findall(part)}
        commands = [line for block in COMMANDS.findall(part) for line in block.splitlines() if line.strip()]
        found[title] = (files, commands)
    return found


def run_recipe(title: str, folder: Path) -> list[Path]:
    """Write the recipe's files into ``folder``, run its commands there; the run dirs made."""
    files, commands = recipes()[title]
    assert commands, title
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DLLAB_LOG_DIR", "PYTHONPATH")}
    env |= {"PATH": f"{BIN}:{env['PATH']}", "OMP_NUM_THREADS": "1"}
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    return sorted(p.parent for p in folder.glob("logs/*/runs/*/metrics.json"))


def completed(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics
    return metrics


def test_the_recipes_are_the_ones_the_tests_cover() -> None:
    page = PAGE.read_text()
    blocks = page.count("```python") + page.count("```yaml")
    assert sum(len(files) for files, _ in recipes().values()) == blocks  # every file block is named
    assert set(recipes()) == {
        "A network of your own", "A dataset of your own", "A loss of your own", "A callback of your own",
        "What a batch does",
    }  # fmt: skip


def test_a_network_of_ones_own(tmp_path: Path) -> None:
    (run_dir,) = run_recipe("A network of your own", tmp_path)
    metrics = completed(run_dir)
    assert metrics["test"]["test/acc"] > 0.85  # digits, 10 epochs
    best = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, weights_only=True)  # primitives only
    assert checkpoint["hyper_parameters"]["net"] == {"_target_": "my_nets.TinyNet", "width": 16}
    assert checkpoint["state_dict"]["net.hidden.1.weight"].shape == (16, 64)
    evaluated = json.loads((run_dir / "eval_metrics.json").read_text())  # the recipe's dllab-eval
    assert evaluated["test"] == pytest.approx(metrics["test"], abs=1e-6)


def test_a_dataset_of_ones_own(tmp_path: Path) -> None:
    (run_dir,) = run_recipe("A dataset of your own", tmp_path)
    metrics = completed(run_dir)
    assert run_dir.parts[-3] == "moons"  # task_name follows data.name
    assert metrics["test"]["test/acc"] > 0.75  # two noisy half moons, 10 epochs
    config = (run_dir / "config.yaml").read_text()
    assert "_target_: my_data.Moons" in config and "noise: 0.2" in config


def test_a_loss_of_ones_own(tmp_path: Path) -> None:
    (run_dir,) = run_recipe("A loss of your own", tmp_path)
    metrics = completed(run_dir)
    assert metrics["test"]["test/acc"] > 0.85
    config = (run_dir / "config.yaml").read_text()
    assert "_target_: my_losses.FocalLoss" in config and "gamma: 1.0" in config
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["loss"] == {"_target_": "my_losses.FocalLoss", "name": "focal", "gamma": 1.0}


def test_a_callback_of_ones_own(tmp_path: Path) -> None:
    (run_dir,) = run_recipe("A callback of your own", tmp_path)
    metrics = completed(run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    norms = events.Scalars("train/grad_norm")
    assert len(norms) == metrics["global_step"]  # one point per optimizer step
    assert sorted(e.step for e in norms) == list(range(metrics["global_step"]))
    assert all(e.value > 0 for e in norms)


def test_what_a_batch_does(tmp_path: Path) -> None:
    (run_dir,) = run_recipe("What a batch does", tmp_path)
    completed(run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["dllab_module"] == "my_modules.PenalisedModule"
