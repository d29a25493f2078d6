"""``hydra/launcher=stacked`` end to end: a sweep's jobs write what the basic launcher's write
(metrics.json, checkpoints, TensorBoard scalars and images, pictures, the summary), with the
same numbers; dllab-eval and resume work on them; what cannot stack runs alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_cli

# data=circle: 2-D, so the decision boundary is drawn during fit (every 5 epochs) too
GRID = ["data=circle", "seed=0,1", "optimizer.lr=0.01,0.03", "trainer.max_epochs=6", "model.hidden_sizes=[16,16]"]
SAME = ("status", "optimized_metric", "epochs", "global_step", "best_epoch", "best_step", "best_first_epoch")


def sweep_dir(root: Path) -> Path:
    (path,) = (root / "logs").glob("*/multiruns/*")
    return path


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def scalars(job: Path) -> dict[str, list[tuple[int, float]]]:
    (events_dir,) = {p.parent for p in (job / "tensorboard").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(events_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    values = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags["scalars"]}
    values["images"] = [(len(events.Images(tag)), 0.0) for tag in sorted(tags["images"])]  # type: ignore[misc]
    return values


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    basic, stacked = tmp_path_factory.mktemp("basic"), tmp_path_factory.mktemp("stacked")
    ran = run_cli("dllab-train", "-m", *GRID, cwd=basic, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    ran = run_cli("dllab-train", "-m", "hydra/launcher=stacked", *GRID, cwd=stacked, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    return sweep_dir(basic), sweep_dir(stacked), ran.stdout + ran.stderr


@pytest.mark.slow
def test_a_stacked_sweep_writes_what_the_basic_launcher_writes(sweeps: tuple[Path, Path, str]) -> None:
    basic, stacked, output = sweeps
    assert "stack of 4 models: #0, #1, #2, #3" in output
    assert {p.name for p in basic.iterdir()} == {p.name for p in stacked.iterdir()}  # summary.* too
    for theirs, mine in zip(job_dirs(basic), job_dirs(stacked), strict=True):
        files = {str(p.relative_to(theirs)) for p in theirs.rglob("*") if "tfevents" not in p.name}
        assert files == {str(p.relative_to(mine)) for p in mine.rglob("*") if "tfevents" not in p.name}
        expected = json.loads((theirs / "metrics.json").read_text())
        got = json.loads((mine / "metrics.json").read_text())
        assert got["stack"]["models"] == 4
        assert {k: got[k] for k in SAME} == {k: expected[k] for k in SAME}
        assert got["objective"] == pytest.approx(expected["objective"], abs=1e-4)
        for group in ("test", "best_val"):
            assert got[group].keys() == expected[group].keys()
            for key, value in expected[group].items():
                assert got[group][key] == pytest.approx(value, abs=1e-4), key
        for name in ("best.ckpt", "last.ckpt"):
            a = torch.load(theirs / "checkpoints" / name, weights_only=True)
            b = torch.load(mine / "checkpoints" / name, weights_only=True)
            assert a.keys() == b.keys() and a["loops"] == b["loops"] and a["epoch"] == b["epoch"]
            assert a["callbacks"].keys() == b["callbacks"].keys()
            for key, value in a["state_dict"].items():
                torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-5)
            assert a["optimizer_states"][0]["param_groups"] == b["optimizer_states"][0]["param_groups"]
        want, have = scalars(theirs), scalars(mine)
        assert want.keys() == have.keys()
        for tag, points in want.items():
            assert [s for s, _ in points] == [s for s, _ in have[tag]], tag
            assert [v for _, v in points] == pytest.approx([v for _, v in have[tag]], abs=1e-4), tag


@pytest.mark.slow
def test_dllab_eval_and_ckpt_path_read_a_stacked_jobs_checkpoints(
    sweeps: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """dllab-eval tests a stacked job's best.ckpt; training on from its last.ckpt (ckpt_path=)
    ends where training on from the basic launcher's job does."""
    basic, stacked, _ = sweeps
    job = job_dirs(stacked)[1]  # seed=0 optimizer.lr=0.03
    evaluated = run_cli("dllab-eval", f"ckpt_path={job / 'checkpoints' / 'best.ckpt'}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    expected = json.loads((job / "metrics.json").read_text())["test"]["test/acc"]
    assert f"test/acc: {expected:.4f}" in evaluated.stdout
    tests = []
    for origin in (job_dirs(basic)[1], job):
        config = ["data=circle", "seed=0", "optimizer.lr=0.03", "model.hidden_sizes=[16,16]", "trainer.max_epochs=8"]
        ran = run_cli("dllab-train", *config, f"ckpt_path={origin / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr[-2000:]
        (path,) = (tmp_path / "logs").rglob("metrics.json")
        tests.append(json.loads(path.read_text()))
        path.rename(path.with_suffix(".seen"))  # the next run's is the only metrics.json
    assert tests[0]["epochs"] == tests[1]["epochs"] == 8
    for key, value in tests[0]["test"].items():
        assert tests[1]["test"][key] == pytest.approx(value, abs=1e-4), key


@pytest.mark.slow
def test_jobs_that_cannot_stack_run_alone_and_a_diverging_model_leaves_the_rest(tmp_path: Path) -> None:
    ran = run_cli(
        "dllab-train",
        "-m",
        "hydra/launcher=stacked",
        "data=circle",
        "trainer.max_epochs=3",
        "plots=none",
        "optimizer=sgd",
        "optimizer.lr=0.1,1e30",
        "scheduler=none,step",
        cwd=tmp_path,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    jobs = job_dirs(sweep_dir(tmp_path))
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    # jobs 0 and 2 (no scheduler) stack; 1 and 3 have a scheduler: each runs alone
    assert "stack of 2 models: #0, #2" in ran.stdout + ran.stderr
    assert "#1 runs alone: a scheduler does not stack" in ran.stdout + ran.stderr
    assert [m["status"] for m in metrics] == ["completed", "completed", "diverged", "diverged"]
    assert "stack" in metrics[0] and "stack" not in metrics[1]
    stacked, alone = metrics[2]["error"], metrics[3]["error"]  # the same words as a solo run's
    assert stacked.startswith("training diverged: loss is nan at optimizer step ") and alone.startswith(stacked[:40])
    assert stacked.endswith("try a smaller optimizer.lr than 1e+30")
    assert set(metrics[2]) - {"stack"} == set(metrics[3])  # the fields of a solo run's failure


@pytest.mark.slow
def test_an_optuna_search_trains_its_batches_of_trials_as_stacks_and_prunes_inside_them(tmp_path: Path) -> None:
    import optuna

    search = (
        "hparams_search=circle_optuna",
        "hydra/launcher=stacked",
        "hydra.sweeper.n_jobs=4",
        "hydra.sweeper.n_trials=8",
        "trainer.max_epochs=8",
        "plots=none",
        "hydra.sweeper.pruner.n_startup_trials=0",
        "hydra.sweeper.pruner.n_warmup_steps=1",
        # fixed here, so out of the search space: only the learning rate varies, and every
        # batch of 4 trials is one stack
        "model.hidden_sizes=[8,8]",
        "model.activation=relu",
        "data.batch_size=30",
    )
    ran = run_cli("dllab-train", *search, cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    output = ran.stdout + ran.stderr
    assert "stack of 4 models: #0, #1, #2, #3" in output and "stack of 4 models: #4, #5, #6, #7" in output
    sweep = tmp_path / "logs" / "circle" / "multiruns" / "optuna_circle_optuna"
    study = optuna.load_study(study_name="circle_optuna", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 8 and set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, states  # the median pruner sees the stack's trials epoch by epoch
    for trial in study.trials:
        m = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        assert len(trial.intermediate_values) == m["epochs"] and m["stack"]["models"] == 4
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert m["status"] == "pruned" and m["epochs"] < 8
        else:
            assert m["status"] == "completed" and trial.value == pytest.approx(m["objective"])


@pytest.mark.slow
def test_sigterm_saves_every_model_of_the_stack_and_a_resumed_job_ends_as_one_never_stopped(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.conftest import BIN

    config = ["data=circle", "model.hidden_sizes=[16,16]", "trainer.max_epochs=300", "plots=none", "threads=1"]
    env = {**os.environ, "DLLAB_LOG_DIR": str(tmp_path / "logs"), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [str(BIN / "dllab-train"), "-m", "hydra/launcher=stacked", *config, "seed=0,1,2"]
    command.append("callbacks.last_checkpoint.every_seconds=0")  # last.ckpt at every epoch's end
    sweep = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert sweep.stdout is not None
    for line in sweep.stdout:
        if "stack of 3 models" in line:
            break
    time.sleep(1.5)  # some epochs in
    sweep.send_signal(signal.SIGTERM)
    output = sweep.stdout.read()
    assert sweep.wait(timeout=120) == 128 + signal.SIGTERM, output[-3000:]
    assert "interrupted: the stack of 3 models after epoch" in output
    jobs = job_dirs(sweep_dir(tmp_path))
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "interrupted" and 0 < metrics["epochs"] < 300, metrics
        assert metrics["resume_command"] == f"dllab-train resume={job}"
        assert {"last.ckpt", "interrupted.ckpt", "best.ckpt"} <= {p.name for p in (job / "checkpoints").iterdir()}

    resumed = run_cli("dllab-train", f"resume={jobs[1]}", cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (tmp_path / "alone").mkdir()
    alone = run_cli("dllab-train", *config, "seed=1", cwd=tmp_path / "alone", timeout=600)
    assert alone.returncode == 0, alone.stderr[-2000:]
    (alone_dir,) = (tmp_path / "alone" / "logs").glob("*/runs/*")
    got, expected = (
        json.loads((jobs[1] / "metrics.json").read_text()),
        json.loads((alone_dir / "metrics.json").read_text()),
    )
    assert got["status"] == "completed" and got["epochs"] == expected["epochs"] == 300
    for key, value in expected["test"].items():
        assert got["test"][key] == pytest.approx(value, abs=1e-4), key
    a = torch.load(jobs[1] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(alone_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in b.items():
        torch.testing.assert_close(a[key], value, rtol=0, atol=1e-5)
