"""A sweep loses no work and writes over no other sweep: a killed stacked sweep leaves every
job of its stack resumable, an interrupted one its summary and the commands that finish it,
and a sweep dir that holds (or is being written by) another sweep is refused untouched."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dllab.sweeps.sweep_dir import LOCK_FILE
from tests.conftest import run_cli
from tests.test_reliability import start

DIGITS = [
    "data=digits",
    "plots=none",
    "threads=1",
    "model.hidden_sizes=[32]",
    "callbacks.last_checkpoint.every_seconds=0",
]


def wait_for(paths: list[Path], process: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.is_file() for p in paths):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"never written: {[p for p in paths if not p.is_file()]}"
        time.sleep(0.02)


def fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_killed_stacked_sweep_leaves_each_job_unfinished_and_resumable(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    epochs = "trainer.max_epochs=60"
    process = start(
        tmp_path, "-m", "hydra/launcher=stacked", *DIGITS, epochs, "seed=0,1,2,3", f"hydra.sweep.dir={sweep}"
    )
    wait_for([sweep / str(n) / "checkpoints" / "last.ckpt" for n in range(4)], process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    for n in range(4):  # each job of the stack: its files from the start, its checkpoint of an epoch's end
        job = sweep / str(n)
        assert {"config.yaml", "train.log", ".hydra", "checkpoints"} <= {p.name for p in job.iterdir()}
        assert (job / ".hydra" / "overrides.yaml").read_text().count(f"seed={n}") == 1
        assert not (job / "metrics.json").exists()
    summary = run_cli("dllab-summary", str(sweep), cwd=tmp_path)
    assert "unfinished: 4" in summary.stdout, summary.stdout + summary.stderr

    resumed = run_cli("dllab-train", f"resume={sweep / '0'}", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    solo = run_cli("dllab-train", *DIGITS, epochs, "seed=0", cwd=tmp_path, timeout=600)
    assert solo.returncode == 0, solo.stderr[-2000:]
    (solo_dir,) = (tmp_path / "logs").glob("*/runs/*")
    got = json.loads((sweep / "0" / "metrics.json").read_text())
    expected = json.loads((solo_dir / "metrics.json").read_text())
    assert got["status"] == "completed" and got["epochs"] == expected["epochs"] == 60
    for name, value in expected["test"].items():  # the resumed stacked job is the run it would have been
        assert got["test"][name] == pytest.approx(value, rel=1e-6), name


@pytest.mark.slow
def test_an_interrupted_stacked_sweep_writes_its_summary_and_commands_that_finish_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    grid = ["seed=0,1", "scheduler=none,step", "trainer.max_epochs=400"]  # a scheduler runs alone, later
    process = start(tmp_path, "-m", "hydra/launcher=stacked", *DIGITS, *grid, f"hydra.sweep.dir={sweep}")
    wait_for([sweep / str(n) / "checkpoints" / "last.ckpt" for n in (0, 2)], process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert (sweep / "summary.md").is_file() and (sweep / "summary.csv").is_file()
    commands = stderr.split("finish its 4 unfinished jobs with (one command per line):\n", 1)[1].splitlines()[:4]
    resumes = [c for c in commands if " resume=" in c]
    starts = [c for c in commands if " hydra.run.dir=" in c]
    assert sorted(Path(c.split("resume=")[1]).name for c in resumes) == ["0", "2"], stderr[-2000:]
    assert len(starts) == 2, stderr[-2000:]
    job = shlex.split(starts[0])
    assert "scheduler=step" in job
    # a command as printed, shortened, finishes its job into the sweep's dir
    ran = run_cli("dllab-train", *job[1:], "trainer.max_epochs=2", cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stderr[-2000:]
    summary = run_cli("dllab-summary", str(sweep), cwd=tmp_path)
    assert "completed: 1" in summary.stdout, summary.stdout


@pytest.mark.parametrize("launcher", ["basic", "stacked", "joblib"])
def test_a_sweep_into_a_dir_holding_another_sweep_is_refused_untouched(tmp_path: Path, launcher: str) -> None:
    sweep = tmp_path / "sweep"
    first = run_cli(
        "dllab-train", "-m", "data=circle", "seed=0,1", "trainer.max_epochs=1", "plots=none", "threads=1",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    before = fingerprint(sweep)
    second = run_cli(
        "dllab-train", "-m", f"hydra/launcher={launcher}", "data=circle", "seed=5,6", "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert second.returncode == 2
    assert "Traceback" not in second.stderr  # (Hydra's joblib plugin warns of its schema first)
    assert [line for line in second.stderr.splitlines() if line.startswith("error")] == [
        f"error: hydra.sweep.dir={sweep}: holds another sweep's multirun.yaml and 2 job dirs (0, 1); a sweep "
        "writes into a dir of its own (leave hydra.sweep.dir out for a new one, or name an unused dir)"
    ]
    assert fingerprint(sweep) == before


def test_a_sweep_dir_another_sweep_is_writing_is_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    with open(sweep / LOCK_FILE, "w") as lock:  # a sweep that has just started into it
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242")
        lock.flush()
        ran = run_cli("dllab-train", "-m", "data=circle", "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.strip() == (
        f"error: hydra.sweep.dir={sweep}: another sweep is writing into it now (process 4242); "
        "give this one a dir of its own"
    )
    assert [p.name for p in sweep.iterdir()] == [LOCK_FILE]


def test_a_finished_sweep_leaves_no_lock_file(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    ran = run_cli(
        "dllab-train", "-m", "data=circle", "seed=0", "trainer.max_epochs=1", "plots=none",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert not (sweep / LOCK_FILE).exists() and (sweep / "0" / "metrics.json").is_file()


def test_resume_of_a_file_is_one_line_and_leaves_it_alone(tmp_path: Path) -> None:
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"not a run dir")
    ran = run_cli("dllab-train", f"resume={checkpoint}", cwd=tmp_path)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert ran.stderr.strip() == (
        f"error: resume={checkpoint}: a file, not a run dir; give a dir under logs/*/runs/ "
        "(a checkpoint file goes to ckpt_path=)"
    )
    assert checkpoint.read_bytes() == b"not a run dir" and not (tmp_path / "logs").exists()
