"""Signals in every phase of a run, the resume command they print, and the records a run
keeps when its disk fails or a picture cannot be drawn (subprocesses, real signals).

The signals are sent by the run to itself from a ``module=`` subclass, at a chosen point
(set-up, an epoch's end, testing), so each test hits its phase every time.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from dllab.runs.resume import resume_checkpoint
from tests.conftest import BIN, run_cli, run_dirs

SIGNALLING = """
import os
import signal

from dllab.training.module import ClassificationModule


def send(where):
    if os.environ.get("SEND_SIGNAL_AT") == where and os.environ.get("SEND_JOB", "0") == job_num():
        os.kill(os.getpid(), getattr(signal, os.environ["SEND_SIGNAL"]))


def job_num():
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().job.get("num") or 0) if HydraConfig.initialized() else "0"


class Signalling(ClassificationModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        send("set-up")

    def on_train_epoch_end(self):
        super().on_train_epoch_end()
        if self.current_epoch == 1:
            send("epoch 2")

    def on_test_start(self):
        send("testing")
"""

RUN = ["data=circle", "threads=1", "trainer.max_epochs=4", "module=signalling.Signalling"]


def train(tmp_path: Path, *args: str, at: str | None = None, sig: str = "SIGTERM") -> subprocess.CompletedProcess[str]:
    (tmp_path / "signalling.py").write_text(SIGNALLING)
    env = {"SEND_SIGNAL_AT": at or "", "SEND_SIGNAL": sig}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])  # this checkout's dllab
    return run_cli("dllab-train", *args, cwd=tmp_path, env=env)


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def continue_with(stderr: str) -> list[str]:
    """The command the interrupted run printed, as arguments of dllab-train."""
    command = stderr.split("continue with:\n", 1)[1].splitlines()[0].split()
    assert command[0] == "dllab-train", stderr
    return command[1:]


def test_sigterm_in_set_up_is_recorded_with_the_command_that_starts_again(tmp_path: Path) -> None:
    stopped = train(tmp_path, *RUN, at="set-up")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "interrupted (SIGTERM) during set-up; continue with:" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    (run_dir,) = run_dirs(tmp_path)
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "interrupted" and metrics["phase"] == "set-up"
    # nothing trained or saved yet: the command is the one that started the run
    assert continue_with(stopped.stderr) == RUN
    assert metrics["resume_command"] == "dllab-train " + " ".join(RUN)


def test_an_interrupt_before_the_first_last_ckpt_resumes_from_interrupted_ckpt(tmp_path: Path) -> None:
    """last.ckpt is written on a time budget: an early Ctrl-C leaves only interrupted.ckpt,
    and the printed command continues from it."""
    stopped = train(tmp_path, *RUN, "callbacks.last_checkpoint.every_seconds=1000", at="epoch 2", sig="SIGINT")
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    assert metrics_of(run_dir)["status"] == "interrupted"
    assert resume_checkpoint(run_dir) == run_dir / "checkpoints" / "interrupted.ckpt"

    resumed = train(tmp_path, *continue_with(stopped.stderr))
    assert resumed.returncode == 0, resumed.stderr
    assert "interrupted.ckpt (the weights at the interrupt" in resumed.stdout + resumed.stderr
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 4
    assert run_dirs(tmp_path) == [run_dir]


def test_sigterm_while_testing_resumes_to_a_tested_run(tmp_path: Path) -> None:
    stopped = train(tmp_path, *RUN, at="testing")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert metrics_of(run_dir)["status"] == "interrupted"
    resumed = train(tmp_path, *continue_with(stopped.stderr))
    assert resumed.returncode == 0, resumed.stderr
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "completed" and metrics["test"]["test/acc"] > 0.5


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    ("launcher", "at"),
    [
        (None, "set-up"),  # data loading and building: before Lightning
        (None, "epoch 2"),  # inside Lightning's fit, which ends a signal with sys.exit(1)
        (None, "testing"),
        ("basic", "set-up"),
        ("basic", "epoch 2"),
        ("joblib", "epoch 2"),  # the job in a worker process: the sweep's process exits with its code
    ],
)
def test_a_signal_exits_128_plus_its_number_in_every_phase_and_launcher(
    tmp_path: Path, launcher: str | None, at: str, sig: str
) -> None:
    """A scheduler tells a pre-emption (143) or Ctrl-C (130) from a crash (1) by the exit code."""
    sweep = [] if launcher is None else ["-m", f"hydra/launcher={launcher}", "seed=0,1"]
    if launcher == "joblib":
        sweep.append("hydra.launcher.n_jobs=2")
    stopped = train(tmp_path, *sweep, *RUN, "plots=none", at=at, sig=sig)
    assert stopped.returncode == 128 + getattr(signal, sig), stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    signalled = run_dirs(tmp_path)[0] if launcher is None else next(tmp_path.glob("logs/*/multiruns/*/0"))
    assert metrics_of(signalled)["status"] == "interrupted"
    assert "before the run started" not in stopped.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stacked_sweep_stopped_by_a_signal_exits_128_plus_its_number(tmp_path: Path, sig: int) -> None:
    import time

    command = [str(BIN / "dllab-train"), "-m", "hydra/launcher=stacked", "data=circle", "trainer.max_epochs=300"]
    command += ["plots=none", "threads=1", "seed=0,1"]
    env = {**os.environ, "DLLAB_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    sweep = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert sweep.stdout is not None
    for line in sweep.stdout:
        if "stack of 2 models" in line:
            break
    time.sleep(1.0)  # some epochs in
    sweep.send_signal(sig)
    output = sweep.stdout.read()
    assert sweep.wait(timeout=120) == 128 + sig, output[-3000:]
    statuses = [metrics_of(m.parent)["status"] for m in sorted((tmp_path / "logs").glob("*/*/*/*/metrics.json"))]
    assert statuses == ["interrupted", "interrupted"], output[-3000:]


def test_the_signal_of_a_keyboard_interrupt() -> None:
    from dllab.runs.exits import signal_of

    assert signal_of(KeyboardInterrupt("signal 15")) == 15
    assert signal_of(KeyboardInterrupt()) is None and signal_of(KeyboardInterrupt("signal x")) is None


def save_checkpoint(path: Path, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "state_dict": {}, "dllab_task": "classification"}, path)


@pytest.mark.parametrize(
    ("last_epoch", "interrupted_epoch", "chosen"),
    [
        (None, None, None),  # nothing yet: the run starts over in its dir
        (3, None, "last.ckpt"),
        (None, 0, "interrupted.ckpt"),
        (3, 4, "last.ckpt"),  # within the epoch after last.ckpt: the exact resume wins
        (3, 9, "interrupted.ckpt"),  # whole epochs further
    ],
)
def test_resume_continues_from_the_checkpoint_that_loses_least(
    tmp_path: Path, last_epoch: int | None, interrupted_epoch: int | None, chosen: str | None
) -> None:
    if last_epoch is not None:
        save_checkpoint(tmp_path / "checkpoints" / "last.ckpt", last_epoch)
    if interrupted_epoch is not None:
        save_checkpoint(tmp_path / "checkpoints" / "interrupted.ckpt", interrupted_epoch)
        if last_epoch is not None:  # written after last.ckpt
            last = tmp_path / "checkpoints" / "last.ckpt"
            os.utime(last, (last.stat().st_mtime - 10, last.stat().st_mtime - 10))
    found = resume_checkpoint(tmp_path)
    assert (found.name if found else None) == chosen


@pytest.mark.parametrize("logger_off", ["logger=[]", "~logger"])
def test_a_run_without_a_logger_completes(tmp_path: Path, logger_off: str) -> None:
    result = run_cli("dllab-train", logger_off, "data=circle", "threads=1", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert metrics_of(run_dir)["status"] == "completed"
    assert not (run_dir / "tensorboard").exists()
    assert "LearningRateMonitor" in result.stdout and "tensorboard --logdir" not in result.stdout


def test_a_run_dir_that_holds_another_run_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    args = ["data=circle", "threads=1", "trainer.max_epochs=1", f"hydra.run.dir={target}"]
    assert run_cli("dllab-train", *args, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file() and p.name != "train.log"}
    again = run_cli("dllab-train", *args, "seed=7", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"error: hydra.run.dir={target}: holds another run; give a new dir, or resume={target} to continue that run"
    )
    after = {p: p.read_bytes() for p in target.rglob("*") if p.is_file() and p.name != "train.log"}
    assert after == before  # the first run's records (also .hydra/overrides.yaml) untouched


def limit_file_size(max_bytes: int) -> None:
    """Every file this process writes stops at max_bytes, as on a nearly full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def test_a_write_that_fails_mid_run_is_one_line_and_the_run_is_recorded(tmp_path: Path) -> None:
    env = {**os.environ, "DLLAB_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run(
        [str(BIN / "dllab-train"), "threads=1", "trainer.max_epochs=2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: limit_file_size(40_000),  # the checkpoints are larger; metrics.json is not
    )
    assert result.returncode == 1
    (run_dir,) = run_dirs(tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {run_dir}/checkpoints/")
    assert "cannot write (File too large) during training" in errors[0]
    assert errors[0].endswith(f"then: dllab-train resume={run_dir}")
    assert "Traceback" not in result.stderr
    metrics = metrics_of(run_dir)
    assert metrics["status"] == "failed" and metrics["error"] == errors[0].removeprefix("error: ")
    assert not list(run_dir.glob("*.tmp"))


def test_a_picture_that_cannot_be_drawn_is_a_warning_not_a_lost_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from dllab.pictures.callbacks import PlotCallback

    class Broken(PlotCallback):
        name = "broken"

        def applies(self, datamodule: object) -> bool:
            return True

        def draw(self, trainer: object, module: object, datamodule: object, final: bool) -> object:
            raise MemoryError("std::bad_alloc")

    picture = Broken(tmp_path)
    picture.active = True
    trainer = SimpleNamespace(is_global_zero=True, datamodule=None, loggers=[], current_epoch=3)
    picture.on_test_end(trainer, None)  # type: ignore[arg-type]
    assert picture.error == "broken: MemoryError: std::bad_alloc"
    assert not picture.active and not list(tmp_path.iterdir())
    assert "picture broken not drawn (MemoryError: std::bad_alloc); the run goes on" in caplog.text
