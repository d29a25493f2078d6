"""Shared Optuna studies against a real PostgreSQL server (scripts/postgres_server.sh, Debian's
packages, 127.0.0.1 only): several sweepers on one study, a study killed mid-trial and run
again, trials whose heartbeat lives on, and Optuna's journal file storage."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from dllab.sweeps.jobs import process_alive
from tests.conftest import BIN

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = Path(__file__).parents[1] / "scripts" / "postgres_server.sh"
COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)  # fmt: skip
# a small, quick search: tiny data, one thread
SEARCH = ["hparams_search=circle_optuna", "threads=1", "data.n_samples=200", "logger=csv", "plots=none"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server started for this module, stopped (by its PID) after it."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    exports = dict(re.findall(r"export (\w+)=([^;\s]+)", started.stdout))
    server_dir = Path(exports["DLLAB_PG_DIR"])
    pid = int((server_dir / "data" / "postmaster.pid").read_text().split()[0])
    try:
        yield exports["DLLAB_PG_URL"]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(server_dir)], check=True, timeout=60)
        assert not process_alive(pid) and not server_dir.exists()


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DLLAB_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1", **extra}


def sweeper(tmp_path: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "dllab-train"), *SEARCH, *args],
        cwd=tmp_path,
        env=env(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # killpg ends the sweeper and the job it runs
    )


def finished(process: subprocess.Popen[str]) -> str:
    """Its stdout and stderr, once it ended well."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    return out + err


def test_two_sweepers_on_two_nodes_share_one_postgresql_study(postgres: str, tmp_path: Path) -> None:
    """Two nodes, each with its own sweep dir (no shared disk), one study: together they run
    exactly n_trials trials, all complete; neither fails a trial of the other. They take turns
    through PostgreSQL's advisory lock (a file lock would not reach the other node)."""
    study = ["hydra.sweeper.study_name=two_nodes", f"hydra.sweeper.storage={postgres}", "hydra.sweeper.n_trials=4",
             "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=10", "trainer.max_epochs=2"]  # fmt: skip
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    sweepers = [sweeper(tmp_path, *study, DLLAB_SWEEP_DIR=str(node)) for node in nodes]
    for process in sweepers:
        finished(process)
    trials = optuna.load_study(study_name="two_nodes", storage=postgres).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state for t in trials] == [COMPLETE] * 4
    assert all(t.user_attrs["status"] == "completed" for t in trials)  # none interrupted by the other
    owners = {t.user_attrs["sweeper"].rpartition(":")[2] for t in trials}
    assert owners == {str(process.pid) for process in sweepers}
    for trial in trials:  # trial i in job dir i, on the node that ran it
        (job,) = [node / str(trial.number) for node in nodes if (node / str(trial.number) / "metrics.json").exists()]
        assert trial.user_attrs["sweeper"].endswith(f":{sweepers[nodes.index(job.parent)].pid}")
    for node in nodes:  # each waited for the other's last trials: both saw the whole study
        results = yaml.safe_load((node / "optimization_results.yaml").read_text())
        assert results["n_trials"] == 4 and results["trials"]["complete"] == 4


def test_a_study_killed_mid_trial_continues(postgres: str, tmp_path: Path) -> None:
    """kill -9 of the sweeper while its trial trains, and run again at once (a requeued job):
    the killed trial, still within its grace period, counts as running, so the new sweeper runs
    the one other trial and then waits; once the killed trial's heartbeat is stale it is failed
    as interrupted, not counted, and the new sweeper runs one more trial: n_trials complete.
    Before, the second run crashed failing it (UpdateFinishedTrialError)."""
    study = ["hydra.sweeper.study_name=killed", f"hydra.sweeper.storage={postgres}", "hydra.sweeper.n_trials=2",
             "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=20"]  # fmt: skip
    first = sweeper(tmp_path, *study, "trainer.max_epochs=500")
    try:
        deadline = time.monotonic() + 120
        while True:  # until the trial has reported an epoch: it is training
            assert first.poll() is None and time.monotonic() < deadline, "the trial never started training"
            with_values = []
            try:
                loaded = optuna.load_study(study_name="killed", storage=postgres)
                with_values = [t for t in loaded.trials if t.state == RUNNING and t.intermediate_values]
            except KeyError:  # no study yet
                pass
            if with_values:
                break
            time.sleep(0.3)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    second = sweeper(tmp_path, *study, "trainer.max_epochs=2")
    assert "trials still running in other sweepers: 1; waiting for them" in finished(second)
    trials = optuna.load_study(study_name="killed", storage=postgres).trials
    assert [t.state for t in trials] == [FAIL, COMPLETE, COMPLETE]
    assert [t.user_attrs["status"] for t in trials] == ["interrupted", "completed", "completed"]
    sweep = tmp_path / "logs" / "circle" / "multiruns" / "optuna_killed"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 2 and results["trials"]["complete"] == 2 and results["trials"]["interrupted"] == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_whose_heartbeat_lives_is_never_failed(postgres: str) -> None:
    """Another sweeper's running trial is failed only once its heartbeat stopped, whatever its
    owner looks like from here; and telling a trial another sweeper failed meanwhile is skipped,
    not a crash."""
    from dllab.sweeps.optuna_search import HEARTBEAT_ATTR, OWNER_ATTR, OptunaSearch, finish, heartbeats

    search = OptunaSearch(study_name="heartbeats", storage=postgres, heartbeat_interval=1)
    search.storage_url, search.owner = postgres, f"{socket.gethostname()}:{os.getpid()}"
    study = search.open_study()
    ended = subprocess.Popen(["true"])
    ended.wait()
    trials = [study.ask() for _ in range(3)]
    # beating: on another host; on this host, of a process that has ended; silent: on another host
    for trial, owner in zip(trials, ["elsewhere:1", f"{socket.gethostname()}:{ended.pid}", "elsewhere:2"], strict=True):
        study._storage.set_trial_user_attr(trial._trial_id, OWNER_ATTR, owner)
        study._storage.set_trial_user_attr(trial._trial_id, HEARTBEAT_ATTR, True)
        study._storage.record_heartbeat(trial._trial_id)
    with heartbeats(study, [t._trial_id for t in trials[:2]]):
        search.fail_orphaned_trials(study)  # none stale yet
        assert [t.state for t in study.trials] == [RUNNING] * 3
        time.sleep(3.5)  # past the grace period (twice the interval)
        search.fail_orphaned_trials(study)
    assert [t.state for t in study.trials] == [RUNNING, RUNNING, FAIL]
    assert study.trials[2].user_attrs["status"] == "interrupted"
    # the silent trial's sweeper comes back and tells it: skipped, the trial stays interrupted
    assert finish(study, trials[2], "completed", values=1.0) is False
    assert study.trials[2].state == FAIL and study.trials[2].user_attrs["status"] == "interrupted"


def test_journal_storage_end_to_end(tmp_path: Path) -> None:
    """Optuna's journal file (for NFS): the sweeper and the pruning callback in each job both
    open it; pruning works through it."""
    (tmp_path / "shared").mkdir()
    journal = tmp_path / "shared" / "study.log"
    result = subprocess.run(
        [str(BIN / "dllab-train"), *SEARCH, "hydra.sweeper.study_name=journal", f"hydra.sweeper.storage=journal://{journal}",
         "hydra.sweeper.n_trials=3", "trainer.max_epochs=4", "hydra.sweeper.pruner.n_startup_trials=1",
         "hydra.sweeper.pruner.n_warmup_steps=1"],
        cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="journal", storage=storage).trials
    assert len(trials) == 3 and all(t.state.is_finished() and t.state != FAIL for t in trials)
    assert all(t.intermediate_values for t in trials)  # the jobs reported their epochs through the journal
    results = yaml.safe_load((tmp_path / "logs/circle/multiruns/optuna_journal/optimization_results.yaml").read_text())
    assert results["n_trials"] == 3 and results["storage"] == f"journal://{journal}"


def test_different_heartbeat_settings_on_one_study_are_refused(postgres: str, tmp_path: Path) -> None:
    """A sweeper with a shorter grace period would fail the live trials of the others."""
    from dllab.errors import ConfigError
    from dllab.sweeps.optuna_search import OptunaSearch

    first = OptunaSearch(study_name="settings", storage=postgres, heartbeat_interval=5)
    first.storage_url = postgres
    first.open_study()
    second = OptunaSearch(study_name="settings", storage=postgres, heartbeat_interval=1)
    second.storage_url = postgres
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.heartbeat_interval=1, grace_period=None: the study"):
        second.open_study()
