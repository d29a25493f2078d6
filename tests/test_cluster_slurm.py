"""``hydra/launcher=slurm`` against a real one-node SLURM cluster with accounting, started by
scripts/slurm_cluster.sh (Debian's munge, slurmctld, slurmd, slurmdbd and MariaDB, as root):
a grid with its summary on a CPU partition, GPUs asked where there are none, a failed
sbatch, jobs pre-empted (SIGTERM, submitit's USR2) that requeue and end as runs never
stopped, a cancelled job recorded failed while the rest of the sweep finishes, and a
time-out for good. Skipped, with the reason, only where those packages are not installed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
PROGRAMS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
FAST = ("data=circle", "model.hidden_sizes=[8]", "threads=1", "trainer.deterministic=true")
# Epochs of the pre-empted jobs: seconds of training, so the signal lands mid-run also on a busy
# machine (with 60, a job on a loaded machine could end before its signal came)
EPOCHS = 400


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The cluster's environment (SLURM_CONF) for the module; its daemons stopped by pid after."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(
            f"SLURM test cluster: {', '.join(missing)} not installed "
            "(apt-get install munge slurmctld slurmd slurm-client slurmdbd mariadb-server)"
        )
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=180, check=False)
    assert started.returncode == 0, started.stderr[-3000:]
    env = dict(part.removeprefix("export ").split("=", 1) for part in started.stdout.strip().split("; "))
    try:
        yield env
    finally:
        subprocess.run([str(SCRIPT), "stop", env["DLLAB_SLURM_DIR"]], timeout=120, check=False)


def sweep(slurm: dict[str, str], root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli("dllab-train", "-m", "hydra/launcher=slurm", *FAST, *args, cwd=root, env=slurm, timeout=timeout)


def start_sweep(slurm: dict[str, str], root: Path, *args: str) -> subprocess.Popen[str]:
    from tests.conftest import BIN

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"DLLAB_LOG_DIR": str(root / "logs"), "OMP_NUM_THREADS": "1", **slurm}
    command = [str(BIN / "dllab-train"), "-m", "hydra/launcher=slurm", *FAST, *args]
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def slurm_run(slurm: dict[str, str], *command: str) -> str:
    return subprocess.run(
        command, env={**os.environ, **slurm}, capture_output=True, text=True, timeout=30, check=True
    ).stdout


def send_signal(slurm: dict[str, str], name: str, job_id: str) -> None:
    """``scancel --signal``: delivered at once, but scancel goes on retrying while the job it
    signalled is being requeued ("Job can not be altered now"), so it is not waited for."""
    env = {**os.environ, **slurm}
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(["scancel", f"--signal={name}", job_id], env=env, capture_output=True, timeout=5, check=False)


def sweep_dir(root: Path) -> Path:
    (found,) = list((root / "logs").glob("*/multiruns/*"))
    return found


def metrics(job_dir: Path) -> dict[str, Any]:
    return json.loads((job_dir / "metrics.json").read_text())


def wait_until_training(root: Path, job: str, seconds: float = 120) -> Path:
    """The job dir once its TensorBoard events exist (the first epoch has been logged)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for job_dir in (root / "logs").glob(f"*/multiruns/*/{job}"):
            if any((job_dir / "tensorboard").rglob("events.out.tfevents.*")):
                return job_dir
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not start training in {seconds}s")


def slurm_job_id(job_dir: Path) -> str:
    """``<array job>_<task>`` of a job dir of the sweep (from submitit's folder names)."""
    (found,) = [p.name for p in (job_dir.parent / ".submitit").glob(f"*_{job_dir.name}")]
    return found


def test_a_grid_of_four_trains_on_a_cpu_partition_with_its_summary(slurm: dict[str, str], tmp_path: Path) -> None:
    """accelerator=auto (the default) asks for no GPU on a partition without one."""
    result = sweep(slurm, tmp_path, "trainer.max_epochs=2", "plots=none", "optimizer.lr=0.01,0.1", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: 4 jobs, 0 failed" in result.stdout
    found = sweep_dir(tmp_path)
    assert (found / "summary.md").is_file() and (found / "summary.csv").is_file()
    assert [metrics(found / str(job))["status"] for job in range(4)] == ["completed"] * 4
    (script,) = list((found / ".submitit").glob("*/*_submission.sh"))
    assert "--array=0-3" in script.read_text() and "gpus" not in script.read_text()


def test_a_gpu_asked_on_a_cpu_partition_is_one_line_and_submits_nothing(slurm: dict[str, str], tmp_path: Path) -> None:
    before = slurm_run(slurm, "sacct", "-n", "-X", "-o", "JobID")
    result = sweep(slurm, tmp_path, "trainer.accelerator=gpu", "seed=1,2")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: hydra.launcher.partition=null (the default partition) has no GPUs (sinfo gres: (null)); "
        "use trainer.accelerator=cpu or a GPU partition"
    )
    assert slurm_run(slurm, "sacct", "-n", "-X", "-o", "JobID") == before


def test_an_unknown_partition_or_a_failed_sbatch_is_one_line(slurm: dict[str, str], tmp_path: Path) -> None:
    unknown = sweep(slurm, tmp_path, "hydra.launcher.partition=nosuch", "seed=1,2")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: hydra.launcher.partition=nosuch: no such partition; choose one of debug"
    refused = sweep(slurm, tmp_path, "hydra.launcher.mem_gb=100000", "seed=1,2")
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: the sweep was not submitted (sbatch: error:") and "emory" in line, line


@pytest.fixture(scope="module")
def interrupted_sweep(slurm: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One sweep of three jobs: job 0 pre-empted with SIGTERM, job 1 with submitit's USR2,
    job 2 cancelled; and the unstopped runs of jobs 0 and 1 (a local sweep) to compare with."""
    root = tmp_path_factory.mktemp("interrupted")
    process = start_sweep(slurm, root, f"trainer.max_epochs={EPOCHS},{EPOCHS + 1},3000")
    try:
        signals = {"0": "TERM", "1": "USR2"}
        for job in ("0", "1", "2"):
            job_dir = wait_until_training(root, job)
            slurm_id = slurm_job_id(job_dir)
            if job in signals:
                send_signal(slurm, signals[job], slurm_id)
            else:
                slurm_run(slurm, "scancel", slurm_id)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    unstopped_root = tmp_path_factory.mktemp("unstopped")
    unstopped = run_cli("dllab-train", "-m", *FAST, f"trainer.max_epochs={EPOCHS},{EPOCHS + 1}", cwd=unstopped_root)
    assert unstopped.returncode == 0, unstopped.stderr[-3000:]
    return {
        "returncode": process.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "dir": sweep_dir(root),
        "unstopped": sweep_dir(unstopped_root),
    }


@pytest.mark.parametrize("job", ["0", "1"], ids=["SIGTERM", "USR2"])
def test_a_preempted_job_is_requeued_and_ends_as_one_never_stopped(interrupted_sweep: dict[str, Any], job: str) -> None:
    from dllab.sweeps.summary import read_curves

    job_dir = interrupted_sweep["dir"] / job
    assert interrupted_sweep["returncode"] == 0, interrupted_sweep["stderr"][-3000:]
    result = metrics(job_dir)
    assert result["status"] == "completed" and result["restarts"] >= 1
    assert result["test"] == metrics(interrupted_sweep["unstopped"] / job)["test"]
    assert "resuming " in (job_dir / "train.log").read_text()
    epochs, _ = read_curves(job_dir, ["val/loss"])["val/loss"]
    assert list(epochs) == list(range(1, EPOCHS + 1 + int(job)))  # one history, each epoch once
    events = list((job_dir / "tensorboard").rglob("events.out.tfevents.*"))
    steps: list[int] = []
    from tensorboard.backend.event_processing import event_accumulator as ea

    for path in events:
        accumulator = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0})
        accumulator.Reload()
        if "val/loss" in accumulator.Tags()["scalars"]:
            steps += [e.step for e in accumulator.Scalars("val/loss")]
    assert len(steps) == len(set(steps)) == EPOCHS + int(job)  # no step logged twice


def test_a_cancelled_job_is_failed_and_the_rest_of_the_sweep_finishes(interrupted_sweep: dict[str, Any]) -> None:
    assert interrupted_sweep["returncode"] == 0, interrupted_sweep["stderr"][-3000:]
    assert "sweep: 3 jobs, 1 failed" in interrupted_sweep["stdout"]
    cancelled = metrics(interrupted_sweep["dir"] / "2")
    assert cancelled["status"] == "failed" and "CANCELLED" in cancelled["error"], cancelled
    assert "| SLURM job " in (interrupted_sweep["dir"] / "summary.md").read_text()  # its error column


def test_a_job_that_times_out_for_good_is_failed_with_the_reason(slurm: dict[str, str], tmp_path: Path) -> None:
    """A one-minute limit: SLURM sends USR2 (signal_delay_s before the limit) at once, and with
    no time-outs left the job ends failed, saying so."""
    result = sweep(
        slurm,
        tmp_path,
        "trainer.max_epochs=5000",
        "hydra.launcher.timeout_min=1",
        "hydra.launcher.max_num_timeout=0",
        "seed=1",
        timeout=240,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # every job failed
    failed = metrics(sweep_dir(tmp_path) / "0")
    assert failed["status"] == "failed" and "timed-out too many times" in failed["error"], failed
    assert "sweep: 1 jobs, 1 failed" in result.stdout


def test_sacct_rows_of_an_array_map_to_its_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks of an array that never started share one sacct row; each gets its state."""
    from dllab.launchers import slurm

    rows = "7_0|COMPLETED|None\n7_[1-3%2]|CANCELLED by 0|PartitionConfig\n8|OUT_OF_MEMORY|OutOfMemory\n"
    monkeypatch.setattr(slurm.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, rows, ""))
    states = slurm.sacct_states(["7_0", "7_2", "8"])
    assert states["7_0"] == ("COMPLETED", "None") and states["8"] == ("OUT_OF_MEMORY", "OutOfMemory")
    assert states["7_1"] == states["7_3"] == ("CANCELLED by 0", "PartitionConfig")
