"""Resume after a kill, graceful interrupts, divergence and determinism (subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import BIN, bare_trainer, mlp, run_cli, run_dirs

pytestmark = pytest.mark.slow

# Long enough epochs (batch 1 on digits: about 1258 optimizer steps each) to be killed mid-run.
SLOW_RUN = ["data=digits", "data.batch_size=1", "model.hidden_sizes=[16]", "model.dropout=0.1",
            "trainer.max_epochs=5", "trainer.deterministic=true", "scheduler=step", "scheduler.step_size=1",
            "callbacks.progress_bar=null", "threads=1",
            "callbacks.last_checkpoint.every_seconds=0"]  # fmt: skip


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DLLAB_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [str(BIN / "dllab-train"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_killed_run_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    whole.mkdir()
    assert run_cli("dllab-train", *SLOW_RUN, cwd=whole).returncode == 0
    expected = metrics_of(run_dirs(whole)[0])

    killed = tmp_path / "killed"
    killed.mkdir()
    process = start(killed, *SLOW_RUN)
    wait_for(killed / "logs", process)
    run_dir = None
    while run_dir is None:
        found = list((killed / "logs").glob("digits/runs/*/checkpoints/last.ckpt"))
        run_dir = found[0].parent.parent if found else None
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "metrics.json").exists()  # it really died mid-run
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert first < 4

    resumed = run_cli("dllab-train", f"resume={run_dir}", cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert run_dirs(killed) == [run_dir]  # same dir, no new one
    got = metrics_of(run_dir)
    assert got["status"] == "completed" and got["epochs"] == expected["epochs"] == 5
    assert got["test"] == expected["test"] and got["best_val"] == expected["best_val"]
    assert got["global_step"] == expected["global_step"]


def test_sigint_saves_and_prints_the_resume_command(tmp_path: Path) -> None:
    process = start(tmp_path, *SLOW_RUN)
    wait_for(tmp_path / "logs", process)
    while not list((tmp_path / "logs").glob("digits/runs/*/checkpoints/last.ckpt")):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    (run_dir,) = run_dirs(tmp_path)
    metrics = metrics_of(run_dir)
    assert process.returncode != 0 and metrics["status"] == "interrupted"
    assert metrics["resume_command"] == f"dllab-train resume={run_dir}"
    assert f"dllab-train resume={run_dir}" in stderr
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    process = start(tmp_path, *SLOW_RUN)
    wait_for(tmp_path / "logs", process)
    while not list((tmp_path / "logs").glob("digits/runs/*/checkpoints/last.ckpt")):
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert metrics_of(run_dirs(tmp_path)[0])["status"] == "interrupted"


def test_divergence_names_the_step_and_suggests_a_smaller_lr(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "data=circle", "optimizer=sgd", "optimizer.lr=1e30", cwd=tmp_path)
    assert result.returncode == 1
    assert "training diverged: loss is nan at optimizer step" in result.stderr
    assert "try a smaller optimizer.lr than 1e+30" in result.stderr and "Traceback" not in result.stderr
    metrics = metrics_of(run_dirs(tmp_path)[0])
    assert metrics["status"] == "diverged" and "optimizer step" in metrics["error"]


def test_same_seed_same_metrics_other_seed_other_metrics(tmp_path: Path) -> None:
    args = ["data=circle", "data.noise=0.2", "trainer.max_epochs=5", "callbacks=none", "model.dropout=0.2"]
    for seed in ("1", "1", "2"):
        assert run_cli("dllab-train", *args, f"seed={seed}", cwd=tmp_path).returncode == 0
    first, again, other = (metrics_of(d) for d in run_dirs(tmp_path))
    assert first["test"] == again["test"]
    assert first["test"] != other["test"]


def test_default_seed_is_recorded(tmp_path: Path) -> None:
    assert run_cli("dllab-train", "trainer.max_epochs=1", "data=iris", cwd=tmp_path).returncode == 0
    assert "seed: 42" in (run_dirs(tmp_path)[0] / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "not a dllab run dir (no config.yaml)"),
        (lambda d: (d / "config.yaml").write_text("seed: 1\n"), "config.yaml is not a dllab run's config (no data,"),
    ],
)
def test_resume_of_a_wrong_dir_is_a_clear_error(tmp_path: Path, make, message: str) -> None:
    target = tmp_path / "old_run"
    target.mkdir()
    make(target)
    result = run_cli("dllab-train", f"resume={target}", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert target.is_dir()  # never removed: it is the user's dir


def test_resume_of_a_corrupt_last_checkpoint_names_the_file(tmp_path: Path) -> None:
    assert run_cli("dllab-train", "data=iris", "trainer.max_epochs=2", cwd=tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:200])
    result = run_cli("dllab-train", f"resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"resume={last}: cannot read the checkpoint" in result.stderr


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fsspec.implementations.local import LocalFileOpener

    from dllab.data.datamodule import InMemoryDataModule
    from dllab.data.sklearn_sets import SklearnSet
    from dllab.training.module import ClassificationModule

    trainer = bare_trainer(enable_checkpointing=True, default_root_dir=tmp_path)
    trainer.fit(ClassificationModule(4, 3, net=mlp([8])), InMemoryDataModule(SklearnSet("iris")))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    def dies_midway(self: LocalFileOpener, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])  # half the bytes reach the disk, then the process "dies"
        raise OSError("killed while saving")

    monkeypatch.setattr(LocalFileOpener, "write", dies_midway)
    with pytest.raises(OSError, match="killed while saving"):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old checkpoint is untouched, not half-overwritten
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".ckpt"] == ["last.ckpt"]


def test_resume_refuses_other_overrides_and_follows_a_moved_dir(tmp_path: Path) -> None:
    assert run_cli("dllab-train", "data=iris", "trainer.max_epochs=2", "plots=none", cwd=tmp_path).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    refused = run_cli("dllab-train", f"resume={run_dir}", "trainer.max_epochs=4", cwd=tmp_path)
    assert refused.returncode == 2 and "trainer.max_epochs=4 cannot apply" in refused.stderr
    assert metrics_of(run_dir)["status"] == "completed"  # untouched

    moved = tmp_path / "moved_run"
    shutil.copytree(run_dir, moved)
    before = sorted(str(p) for p in run_dir.rglob("*"))
    resumed = run_cli("dllab-train", f"resume={moved}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(str(p) for p in run_dir.rglob("*")) == before  # nothing written into the original
    metrics = metrics_of(moved)
    assert metrics["run_dir"] == str(moved.resolve()) and metrics["best_checkpoint"].startswith(str(moved.resolve()))


def test_without_validation_the_run_optimizes_the_training_loss(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "data=iris", "trainer.max_epochs=3", "trainer.limit_val_batches=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = metrics_of(run_dirs(tmp_path)[0])
    assert metrics["optimized_metric"] == "train/loss" and metrics["best_checkpoint"]
    explicit = run_cli(
        "dllab-train", "data=iris", "trainer.limit_val_batches=0", "optimized_metric=val/acc", cwd=tmp_path
    )
    assert explicit.returncode == 2 and "not logged (validation is off: trainer.limit_val_batches=0)" in explicit.stderr
