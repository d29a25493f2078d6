"""Parallel sweeps lose nothing (issue 18): two copies of one Optuna sweep share its study, and
the joblib workers of a sweep killed with SIGKILL end with it (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import BIN
from tests.test_bad_input import test_bad_input_is_one_clear_line as one_clear_line

pytestmark = pytest.mark.slow

# dllab-train whose first optuna.create_study waits (up to 3 s) until the other copy gets there
# too, so that the two copies set up the new storage at the same moment unless something
# makes one wait for the other.
TOGETHER = """
import os, sys, time
from pathlib import Path
import optuna
from dllab.train import main

barrier, create = Path(os.environ["BARRIER"]), optuna.create_study

def create_study(*args, **kwargs):
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 3
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    return create(*args, **kwargs)

optuna.create_study = create_study
sys.argv = ["dllab-train", *sys.argv[1:]]
main()
"""


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DLLAB_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1", **extra}


def test_two_copies_of_an_optuna_sweep_share_its_study(tmp_path: Path) -> None:
    """Without the lock one copy died in Optuna's schema set-up (alembic_version UNIQUE, or
    "table studies already exists"), or told FAIL the other's running trial, which then died
    telling it; and both copies proposed the same trials (one sampler seed)."""
    (tmp_path / "barrier").mkdir()
    args = ["-m", "hparams_search=circle_optuna", "hydra.sweeper.n_trials=4", "threads=1", "trainer.max_epochs=1",
            "data.n_samples=200", "logger=csv", "plots=none"]  # fmt: skip
    copies = [
        subprocess.Popen(
            [sys.executable, "-c", TOGETHER, *args],
            cwd=tmp_path,
            env=env(tmp_path, BARRIER=str(tmp_path / "barrier")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [copy.communicate(timeout=300) for copy in copies]
    for copy, (_, err) in zip(copies, outputs, strict=True):
        assert copy.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    sweep = tmp_path / "logs" / "circle" / "multiruns" / "optuna_circle_optuna"
    study = optuna.load_study(study_name="circle_optuna", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]  # n_trials in all, not per copy
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    owners = {t.user_attrs["sweeper"] for t in study.trials}
    assert {owner.rpartition(":")[2] for owner in owners} == {str(copy.pid) for copy in copies}
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 4  # no trial proposed twice
    for trial in study.trials:  # trial i in job dir i, whichever copy ran it
        m = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert m["status"] == "completed" and trial.value == pytest.approx(m["objective"])
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 4 and results["trials"]["complete"] == 4


def session_processes(session: int) -> list[str]:
    """``pid state command`` of the live processes of a session (zombies, already ended, left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:  # ended meanwhile
            continue
        fields = text.rpartition(")")[2].split()  # after "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(f"{stat.parent.name} {fields[0]} {command}")
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
def test_joblib_workers_end_with_a_killed_sweep(tmp_path: Path) -> None:
    """kill -9 of the sweep's process: its loky workers trained on and then waited minutes for
    work. Now each stops its job as Ctrl-C would (the job dir says interrupted, with the resume
    command) and ends."""
    sweep = subprocess.Popen(
        [str(BIN / "dllab-train"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data=circle",
         "threads=1", "trainer.max_epochs=200", "optimizer.lr=0.1,0.01", "logger=csv", "plots=none",
         "callbacks.last_checkpoint.every_seconds=0"],
        cwd=tmp_path, env=env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list((tmp_path / "logs").glob("circle/multiruns/*/*/checkpoints/last.ckpt"))) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, "the jobs never started training"
            time.sleep(0.2)
        workers = [p for p in session_processes(sweep.pid) if "loky" in p and "resource_tracker" not in p]
        assert len(workers) == 2, workers
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        deadline = time.monotonic() + 15
        while session_processes(sweep.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_processes(sweep.pid) == []
    finally:
        if session_processes(sweep.pid):  # the test failed: end what it started
            os.killpg(sweep.pid, signal.SIGKILL)
    for job in sorted((tmp_path / "logs").glob("circle/multiruns/*/[01]")):
        m = json.loads((job / "metrics.json").read_text())
        assert m["status"] == "interrupted" and m["resume_command"] == f"dllab-train resume={job}"
        assert "the sweep's process" in (job / "train.log").read_text()


def test_only_the_trials_of_ended_sweeps_are_marked_interrupted() -> None:
    """A sweep that starts tells FAIL the running trials no sweep will tell, not those of a
    copy still running (here: this process) or of one on another host."""
    from dllab.sweeps.optuna_search import OWNER_ATTR, OptunaSearch

    ended = subprocess.Popen(["true"])
    ended.wait()
    study = optuna.create_study()
    host = socket.gethostname()
    owners = [f"{host}:{ended.pid}", f"{host}:{os.getpid()}", "elsewhere:1", None]
    for owner in owners:
        trial = study.ask()
        if owner:
            study._storage.set_trial_user_attr(trial._trial_id, OWNER_ATTR, owner)
    OptunaSearch().fail_orphaned_trials(study)
    running, failed = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    assert [t.state for t in study.trials] == [failed, running, running, failed]
    assert [t.user_attrs.get("status") for t in study.trials] == ["interrupted", None, None, "interrupted"]


# Rows for tests/test_bad_input.py::BAD_INPUTS: the Optuna sweeper's own settings (these raised a
# traceback, exit status 1).
SWEEPER_BAD_INPUTS = [
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.direction=up"],
     "hydra.sweeper.direction=up: choose one of maximize, minimize"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.n_trials=0"],
     "hydra.sweeper.n_trials=0: must be a positive integer"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=optuna.db"],
     "hydra.sweeper.storage=optuna.db: not a storage URL; give sqlite:///<file>, postgresql://"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=sqlite:///{tmp}/nowhere/optuna.db"],
     "hydra.sweeper.storage=sqlite:///{tmp}/nowhere/optuna.db: no such folder {tmp}/nowhere; make it first"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=sqlite:///{tmp}/nan.csv"],
     "hydra.sweeper.storage=sqlite:///{tmp}/nan.csv: cannot open it (file is not a database)"),
    (["-m", "hydra/sweeper=dllab_optuna", "data=circle"], "hydra.sweeper.params: the search space is empty"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=mysql://dllab@localhost/dllab"],
     "hydra.sweeper.storage=mysql://dllab@localhost/dllab: unknown kind mysql://; give sqlite:///<file>, postgresql://"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=journal://{tmp}/nowhere/study.log"],
     "hydra.sweeper.storage=journal://{tmp}/nowhere/study.log: no such folder {tmp}/nowhere; make it first"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.storage=postgresql://dllab@127.0.0.1:1/dllab"],
     'hydra.sweeper.storage=postgresql://dllab@127.0.0.1:1/dllab: cannot open it (connection failed: connection to '
     'server at "127.0.0.1", port 1 failed: Connection refused)'),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.heartbeat_interval=0"],
     "hydra.sweeper.heartbeat_interval=0: must be a positive integer"),
    (["-m", "hparams_search=circle_optuna", "hydra.sweeper.grace_period=60"],
     "hydra.sweeper.grace_period=60: must be more than heartbeat_interval (60), or null for twice it"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), SWEEPER_BAD_INPUTS, ids=[" ".join(o) for o, _ in SWEEPER_BAD_INPUTS])
def test_bad_sweeper_setting_is_one_clear_line(overrides: list[str], message: str, tmp_path: Path) -> None:
    one_clear_line(overrides, message, tmp_path)
    assert not (tmp_path / "logs").exists()  # no sweep dir left behind either
