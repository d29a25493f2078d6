"""Sweeps end to end (subprocesses): grids, parallel and submitit launchers, a failing job,
the summary, TensorBoard HParams per job, DDP inside a multirun, the Optuna search that
resumes and prunes; plus unit tests of the search-space syntax and the thread rule."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from dllab.errors import ConfigError
from dllab.overrides import run_label
from dllab.runs.config import config_dir
from dllab.sweeps import jobs, summary
from dllab.sweeps.search_space import search_space
from tests.conftest import run_cli

SHORT = ("data=circle", "model.hidden_sizes=[8]", "trainer.max_epochs=2", "threads=1")


def sweep_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "logs").glob("*/multiruns/*/multirun.yaml"))


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def hparams_session(run_dir: Path) -> tuple[dict, dict[str, float]]:
    """The HParams session start info and the last value of each scalar of one TB run."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    values = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    return {k: v.string_value or v.number_value for k, v in hparams.items()}, values


# --- unit tests ---------------------------------------------------------------------------
def test_search_space_syntax() -> None:
    space, fixed = search_space(
        {
            "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
            "model.dropout": "interval(0.0, 0.5)",
            "model.hidden_sizes": "choice([64],[64,64])",
            "data.batch_size": "int(interval(8, 64))",
            "trainer.max_epochs": "range(10, 40, 10)",
        },
        ["model.activation=relu,tanh", "optimizer=adam", "data.batch_size=choice(16,32)"],
    )
    lr = space["optimizer.lr"]
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log and (lr.low, lr.high) == (1e-4, 0.1)
    assert not space["model.dropout"].log
    assert space["model.hidden_sizes"].choices == ("[64]", "[64,64]")
    assert space["model.activation"].choices == ("relu", "tanh")
    assert space["data.batch_size"].choices == (16, 32)  # the command line wins
    epochs = space["trainer.max_epochs"]
    assert isinstance(epochs, optuna.distributions.IntDistribution) and (epochs.low, epochs.high, epochs.step) == (
        10,
        30,
        10,
    )
    assert fixed == ["optimizer=adam"]


def test_search_space_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params: the search space is empty.*interval\(a, b\)"):
        search_space({}, ["optimizer=adam"])
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params.optimizer.lr: a log interval needs low > 0"):
        search_space({"optimizer.lr": "tag(log, interval(0, 1))"}, [])
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params.model.dropout: interval\(0.5, 0.1\) needs low < high"):
        search_space({"model.dropout": "interval(0.5, 0.1)"}, [])


def test_thread_rule_and_labels() -> None:
    assert jobs.parallel_jobs({"n_jobs": -1}, 8) == 8
    assert jobs.parallel_jobs({"n_jobs": -2}, 8) == 7
    assert jobs.parallel_jobs({"n_jobs": 3}, 8) == 3
    assert jobs.parallel_jobs({"submitit_folder": "x"}, 8) == 1
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        ddp = compose("train", overrides=["trainer=ddp", "trainer.accelerator=cpu"]).trainer
    assert jobs.processes_per_job(ddp) == 2
    assert run_label(["data=xor", "model.activation=tanh", "optimizer.lr=0.1"]) == ("data=xor,activation=tanh,lr=0.1")
    assert run_label(["model.hidden_sizes=[8, 8]", "+x/y=a b"]) == "hidden_sizes=[8,_8],y=a_b"


def test_slurm_launcher_maps_devices_and_nodes() -> None:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
        cpu = compose(
            "train", overrides=["hydra/launcher=slurm", "trainer=cpu", "hydra.launcher.partition=short"],
            return_hydra_config=True,
        )  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes, launcher.timeout_min) == (4, 4, 2, 60)
    assert (cpu.hydra.launcher.gpus_per_node, cpu.hydra.launcher.partition) == (0, "short")


def fake_job(sweep: Path, job: int, overrides: list[str], curve: list[float] | None, status: str = "completed") -> None:
    """A job dir as a multirun leaves it: overrides, metrics.json and, with ``curve``, TensorBoard
    events of val/acc (``curve``), val/loss and epoch at steps 0, 1, ... (one per epoch)."""
    from torch.utils.tensorboard import SummaryWriter

    job_dir = sweep / str(job)
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    objective = max(curve) if curve else float("nan")
    m = {"status": status, "optimized_metric": "val/acc", "objective": objective, "epochs": len(curve or [])}
    (job_dir / "metrics.json").write_text(json.dumps(m))
    if curve is not None:
        with SummaryWriter(str(job_dir / "tensorboard" / run_label(overrides))) as writer:
            for step, acc in enumerate(curve):
                writer.add_scalar("epoch", step, step)
                writer.add_scalar("val/acc", acc, step)
                writer.add_scalar("val/loss", 1.0 - acc, step)
                writer.add_scalar("train/loss", 0.5, step)


def assert_real_png(path: Path) -> np.ndarray:
    image = imread(path)[..., :3]
    assert image.std() > 0.04 and len(np.unique((image * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    return image


def test_summary_curves_of_every_job_coloured_by_the_swept_value(tmp_path: Path) -> None:
    """summary_curves.png overlays the jobs' validation curves read from their TensorBoard
    events; jobs without events are left out. No training: fake job dirs."""
    sweep = tmp_path / "lr"
    for job, lr in enumerate(("0.001", "0.01", "0.1", "1.0")):
        curve = [0.5 + 0.4 * (1 - 0.5**e) * (job + 1) / 4 for e in range(6)]
        fake_job(sweep, job, [f"optimizer.lr={lr}"], curve if job != 2 else None)
    fake_job(sweep, 4, ["optimizer.lr=nan"], None, status="config_error")
    curves = summary.read_curves(sweep / "1", ["val/acc", "val/loss", "val/f1"])
    assert set(curves) == {"val/acc", "val/loss"}  # tags never logged are left out
    epochs, values = curves["val/acc"]
    assert epochs.tolist() == [1, 2, 3, 4, 5, 6] and values[0] == pytest.approx(0.5)

    rows = summary.collect(sweep)
    assert summary.write_curves_plot(rows, tmp_path / "numeric.png") == 3  # jobs 2 and 4: no events
    numeric = assert_real_png(tmp_path / "numeric.png")  # lr: a colormap and colorbar, no legend
    result = summary.write_summary(sweep)
    assert result.jobs == 5 and (sweep / "summary.png").is_file()
    assert (imread(sweep / summary.CURVES_PNG)[..., :3] == numeric).all()
    width = 4.4 * 2 + 0.7 + 0.6  # two panels (val/acc, val/loss), the colorbar's margin, no legend
    assert numeric.shape == (round(3.8 * 80), round(width * 80), 3)
    assert "summary.png, summary_curves.png" in summary.report(result, sweep)

    # two swept parameters, the first a choice: colours by data, a legend naming each job
    grid = tmp_path / "grid"
    for job, (data, lr) in enumerate((("circle", "0.1"), ("xor", "0.1"), ("circle", "0.01"), ("xor", "0.01"))):
        fake_job(grid, job, [f"data={data}", f"optimizer.lr={lr}"], [0.5, 0.6 + 0.1 * job, 0.7 + 0.05 * job])
    assert summary.write_curves_plot(summary.collect(grid), grid / summary.CURVES_PNG) == 4
    image = assert_real_png(grid / summary.CURVES_PNG)
    assert image.shape[0] == numeric.shape[0] and image.shape[1] > numeric.shape[1]  # the legend's margin

    # no job with curves: no picture, and an old one is removed
    for job in ("0", "1", "3"):
        for events in (sweep / job / "tensorboard").rglob("events.out.tfevents.*"):
            events.unlink()
    assert summary.write_summary(sweep).jobs == 5
    assert not (sweep / summary.CURVES_PNG).exists()
    assert "(also summary.csv, summary.png)" in summary.report(result, sweep)


# --- end to end ---------------------------------------------------------------------------
def test_grid_with_a_failing_job_summary_and_hparams(tmp_path: Path) -> None:
    result = run_cli(
        "dllab-train", "-m", *SHORT, "data=circle,xor", "optimizer.lr=0.05,nan", "model.activation=tanh", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    assert sweep.parent.parent.name == "circle_xor"  # logs/<task>/multiruns/<timestamp>_<id>
    assert [p.name for p in sorted(sweep.iterdir()) if p.is_dir()] == ["0", "1", "2", "3"]
    assert "sweep: 4 jobs, 2 failed (completed: 2, config_error: 2)" in result.stdout
    for job in ("0", "2"):  # lr=0.05: complete run dirs
        m = metrics(sweep / job)
        assert m["status"] == "completed" and m["epochs"] == 2
        assert (sweep / job / "checkpoints" / "best.ckpt").is_file() and (sweep / job / "config.yaml").is_file()
    failed = metrics(sweep / "1")
    assert failed["status"] == "config_error" and "optimizer.lr=nan" in failed["error"]

    rows = summary_rows(sweep)
    assert [r["status"] for r in rows] == ["completed", "completed", "config_error", "config_error"]
    objectives = [float(r["objective"]) for r in rows[:2]]
    assert objectives == sorted(objectives, reverse=True)  # val/acc: best first
    assert {r["data"] for r in rows} == {"circle", "xor"} and rows[2]["optimizer.lr"] == "nan"
    assert float(rows[0]["test/acc"]) == pytest.approx(metrics(Path(rows[0]["run_dir"]))["test"]["test/acc"])
    markdown = (sweep / "summary.md").read_text()
    assert "4 jobs, 2 failed" in markdown and "optimizer.lr=nan: must be" in markdown
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert (sweep / "summary_curves.png").read_bytes()[:4] == b"\x89PNG"  # the 2 completed jobs' curves

    # TensorBoard: one readable run per job, its HParams with the swept keys and final metrics
    for job, data in (("0", "circle"), ("2", "xor")):
        (run,) = (sweep / job / "tensorboard").iterdir()
        assert run.name == f"data={data},lr=0.05"
        hparams, values = hparams_session(run)
        assert hparams["data"] == data and hparams["optimizer.lr"] == pytest.approx(0.05)
        assert hparams["model.activation"] == "tanh" and hparams["activation"] == "tanh"
        assert values["test/acc"] == pytest.approx(metrics(sweep / job)["test"]["test/acc"], abs=1e-6)

    # dllab-summary on a partial sweep: a job without metrics.json is unfinished
    (sweep / "2" / "metrics.json").unlink()
    (sweep / "summary.csv").unlink()
    again = subprocess.run(
        [sys.executable, "-m", "dllab.sweeps.summary", str(sweep)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "4 jobs, 3 failed" in again.stdout
    assert [r["status"] for r in summary_rows(sweep)] == ["completed", "config_error", "unfinished", "config_error"]
    missing = subprocess.run(
        [sys.executable, "-m", "dllab.sweeps.summary", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and "no job dirs" in missing.stderr


def test_all_jobs_failing_exits_non_zero(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "-m", *SHORT, "optimizer.lr=nan,-1", cwd=tmp_path)
    assert result.returncode == 1
    assert "sweep: 2 jobs, 2 failed" in result.stdout and "every job of the sweep failed" in result.stderr


def test_joblib_jobs_in_parallel_one_thread_each(tmp_path: Path) -> None:
    result = run_cli(
        "dllab-train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SHORT[:3],
        "optimizer=sgd,adam", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    for job in ("0", "1"):
        assert metrics(sweep / job)["status"] == "completed"
        # 2 jobs at once on this machine's cores: cores // 2 threads each
        expected = max(1, jobs.cpu_cores() // 2)
        assert f"torch threads: {expected}" in (sweep / job / "train.log").read_text()
    assert {r["optimizer"] for r in summary_rows(sweep)} == {"sgd", "adam"}


def test_submitit_local_launcher(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "-m", "hydra/launcher=submitit_local", *SHORT[:3], "seed=1,2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    assert (sweep / ".submitit").is_dir()
    for job in ("0", "1"):
        assert metrics(sweep / job)["status"] == "completed"
        assert "torch threads: 1" in (sweep / job / "train.log").read_text()  # cpus_per_task
    assert "sweep: 2 jobs, 0 failed" in result.stdout


def test_ddp_inside_a_multirun(tmp_path: Path) -> None:
    """2 jobs × 2 gloo processes: workers re-enter their job, not the sweep; the averaged
    gradients equal those of one process with the two ranks' batches together."""
    ddp = ("trainer=ddp", "trainer.accelerator=cpu", "data.batch_size=10")
    result = run_cli("dllab-train", "-m", *ddp, *SHORT, "model.activation=relu,tanh", cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)  # no second sweep started by the workers
    assert len(list((tmp_path / "logs").glob("*/*/*"))) == 1
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        m = metrics(sweep / job)
        assert m["status"] == "completed" and m["epochs"] == 2 and m["global_step"] == 2 * 18  # 175 per rank / 10
        assert (sweep / job / "train_ddp_process_1.log").is_file()
        assert not (sweep / job / "multiruns").exists()

    single = run_cli("dllab-train", "trainer=cpu", "data.batch_size=20", *SHORT, "model.activation=relu", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    (run_dir,) = [p.parent for p in (tmp_path / "logs").glob("*/runs/*/.hydra")]
    ddp_state = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    one_state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in one_state.items():
        assert torch.allclose(ddp_state[name], value, atol=1e-5), name
    # each rank trains on and scores its half of each split; the sums over ranks give the whole's values
    assert metrics(sweep / "0")["best_val"] == pytest.approx(metrics(run_dir)["best_val"], abs=1e-6)
    tags = ["train/loss", "train/acc", "train/f1", "val/loss", "val/f1"]
    ddp_curves, one_curves = summary.read_curves(sweep / "0", tags), summary.read_curves(run_dir, tags)
    for tag in tags:
        assert ddp_curves[tag][1] == pytest.approx(one_curves[tag][1], rel=1e-5), tag


def test_optuna_search_resumes_and_prunes(tmp_path: Path) -> None:
    search = (
        "hparams_search=circle_optuna",
        "trainer.max_epochs=8",
        "threads=1",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=1",
    )
    first = run_cli("dllab-train", "-m", *search, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "logs" / "circle" / "multiruns" / "optuna_circle_optuna"
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    assert len(optuna.load_study(study_name="circle_optuna", storage=storage).trials) == 3

    # hparams_search selects multirun by itself: -m is not needed
    second = run_cli("dllab-train", *search, "hydra.sweeper.n_trials=5", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="circle_optuna", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3", "4"]
    states = [t.state for t in study.trials]
    pruned = [t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, states
    for number in pruned:  # stopped early, recorded as such
        m = metrics(sweep / str(number))
        assert m["status"] == "pruned" and m["epochs"] < 8
        assert len(study.trials[number].intermediate_values) == m["epochs"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for trial in complete:  # the value told is the job's objective
        assert trial.value == pytest.approx(metrics(sweep / str(trial.number))["objective"])
        assert trial.params["model.activation"] in ("relu", "tanh", "sigmoid")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 5 and results["direction"] == "minimize"
    assert results["best_value"] == pytest.approx(min(t.value for t in complete))
    assert results["best_params"] == study.best_params
    assert "sweep: 5 jobs, 0 failed" in second.stdout


def test_optuna_empty_search_space_is_refused(tmp_path: Path) -> None:
    result = run_cli("dllab-train", "-m", "hydra/sweeper=dllab_optuna", "data=circle", cwd=tmp_path)
    assert result.returncode != 0
    assert "hydra.sweeper.params: the search space is empty" in result.stderr


def test_results_table_puts_swept_keys_first_and_failures_on_one_line() -> None:
    def row(job: int, lr: str, status: str, objective: float, **extra: object) -> dict[str, object]:
        base = {"job": job, "params": {"optimizer.lr": lr, "seed": "1"}, "status": status, "metric": "val/acc"}
        return base | {"objective": objective} | extra

    rows = [
        row(1, "0.1", "completed", 0.9, **{"test/acc": 0.88, "best_epoch": 7, "epochs": 10}),
        row(0, "0.01", "completed", 0.7, **{"test/acc": 0.69, "best_epoch": 10, "epochs": 10}),
        row(2, "nan", "diverged", float("nan"), error="training diverged:\n  loss is nan at optimizer step 3"),
    ]
    rows[2]["params"]["seed"] = "2"  # a second swept key
    header, first, second, failed = summary.results_table(rows)
    assert header.split() == ["job", "optimizer.lr", "seed", "val/acc", "test/acc", "best", "epoch", "status"]
    assert first.split() == ["1", "0.1", "1", "0.9000", "0.8800", "7/10", "completed"]
    assert second.split()[:2] == ["0", "0.01"]
    assert failed.split()[:3] == ["2", "nan", "2"] and "diverged: training diverged: loss is nan at" in failed
    many = summary.results_table([row(i, str(i), "completed", 0.5) for i in range(25)], limit=20)
    assert len(many) == 22 and many[-1] == "... 5 more in summary.md"


# --- dllab-summary on partial and broken sweep dirs -----------------------------------------
@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 2 x 2 grid (lr x hidden sizes), shared by the tests below: copy it to change it."""
    root = tmp_path_factory.mktemp("grid")
    grid = ("optimizer.lr=0.1,0.01", "model.hidden_sizes=[4],[8]", "plots=none")
    result = run_cli("dllab-train", "-m", *SHORT[:1], "trainer.max_epochs=1", "threads=1", *grid, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = sweep_dirs(root)
    return sweep


def copy_sweep(grid_sweep: Path, tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    shutil.copytree(grid_sweep, sweep)
    for name in ("summary.csv", "summary.md"):
        (sweep / name).unlink()
    return sweep


def test_summary_lists_the_jobs_that_never_started(grid_sweep: Path, tmp_path: Path) -> None:
    """A sweep killed before jobs 1 and 3 started (a kill -9 of a joblib sweep leaves that):
    all 4 jobs of multirun.yaml are listed, the 2 missing ones as not started, with the
    overrides the sweep would have given them."""
    sweep = copy_sweep(grid_sweep, tmp_path)
    for job in ("1", "3"):
        shutil.rmtree(sweep / job)
    result = run_cli("dllab-summary", str(sweep), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sweep: 4 jobs, 0 failed, 2 not started (completed: 2, not started: 2)" in result.stdout
    rows = summary_rows(sweep)
    assert [(r["job"], r["status"]) for r in rows[2:]] == [("1", "not started"), ("3", "not started")]
    assert {r["status"] for r in rows[:2]} == {"completed"}
    assert [(r["optimizer.lr"], r["model.hidden_sizes"]) for r in rows[2:]] == [("0.1", "[8]"), ("0.01", "[8]")]
    assert rows[2]["run_dir"] == "" and "4 jobs, 0 failed, 2 not started" in (sweep / "summary.md").read_text()
    table = [line.split() for line in result.stdout.strip().splitlines()[-2:]]
    assert table == [["1", "0.1", "[8]", "not", "started"], ["3", "0.01", "[8]", "not", "started"]]


def garbled_json(job: Path) -> str:
    (job / "metrics.json").write_text('{"status": "completed", "objective": ')
    return "1/metrics.json: not readable JSON (JSONDecodeError: Expecting value"


def json_list(job: Path) -> str:
    (job / "metrics.json").write_text("[0.9, 0.8]")
    return "1/metrics.json: holds a JSON list, not an object"


def text_objective(job: Path) -> str:
    (job / "metrics.json").write_text(json.dumps(metrics(job) | {"objective": "abc"}))
    return "1/metrics.json: objective='abc' is not a number (or null)"


def garbled_overrides(job: Path) -> str:
    (job / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.1\n- [model\n")
    return "1/.hydra/overrides.yaml: not readable YAML (ParserError"


BREAKS = [garbled_json, json_list, text_objective, garbled_overrides]


@pytest.mark.parametrize("breaks", BREAKS, ids=lambda f: f.__name__)
def test_summary_lists_a_broken_job_and_goes_on(
    breaks: Callable[[Path], str], grid_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = copy_sweep(grid_sweep, tmp_path)
    reason = breaks(sweep / "1")
    summary.main([str(sweep)])  # no SystemExit: the other jobs were summarised
    out = capsys.readouterr().out
    assert "sweep: 4 jobs, 1 failed (broken: 1, completed: 3)" in out
    assert f"broken: {reason}"[:60].rstrip() in out  # the table's status column, cut to its width
    rows = {r["job"]: r for r in summary_rows(sweep)}
    assert [rows[j]["status"] for j in "023"] == ["completed"] * 3
    assert rows["1"]["status"] == "broken" and reason in rows["1"]["error"]
    # its hyperparameters as the sweep gave them, also when its own record of them is broken
    assert (rows["1"]["optimizer.lr"], rows["1"]["model.hidden_sizes"]) == ("0.1", "[8]")


def test_summary_of_nothing_readable_is_one_line_exit_2(grid_sweep: Path, tmp_path: Path) -> None:
    sweep = copy_sweep(grid_sweep, tmp_path)
    for job in ("0", "1", "2", "3"):
        (sweep / job / "metrics.json").write_text("{")
    result = run_cli("dllab-summary", str(sweep), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: sweep_dir={sweep}: every job that ran is broken (4); see the error column of summary.md"
    )
    assert [r["status"] for r in summary_rows(sweep)] == ["broken"] * 4  # still listed, with their reasons

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "multirun.yaml").write_text("hydra: [\n")
    result = run_cli("dllab-summary", str(empty), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(
        f"error: sweep_dir={empty}: no job dirs (<job number>/.hydra/) in it (multirun.yaml: cannot tell the sweep's"
    )


def test_summary_of_an_optuna_sweep_counts_n_trials(tmp_path: Path) -> None:
    """A sweeper that chooses each job's overrides as it goes: n_trials jobs, numbered from 0."""
    sweep = tmp_path / "optuna"
    for job in (0, 1):
        fake_job(sweep, job, [f"optimizer.lr={0.1 * (job + 1)}"], None)
    sweeper = {"_target_": "hydra_plugins.dllab_optuna_sweeper.dllab_optuna_sweeper.DllabOptunaSweeper", "n_trials": 5}
    multirun = {"hydra": {"sweeper": sweeper, "overrides": {"task": ["hparams_search=circle_optuna"]}}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    result = summary.write_summary(sweep)
    assert (result.jobs, result.failed, result.not_started, result.note) == (5, 0, 3, "")
    assert [r["job"] for r in result.rows if r["status"] == "not started"] == [2, 3, 4]

    sweeper["_target_"] = "some.plugin.GridSweeper"  # without n_trials, and not Hydra's grid
    del sweeper["n_trials"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    result = summary.write_summary(sweep)
    assert result.jobs == 2
    assert result.note == "hydra.sweeper=some.plugin.GridSweeper: its jobs are not known in advance"
    assert "note: hydra.sweeper=some.plugin.GridSweeper: its jobs are not known in advance; listed: the job dirs" in (
        summary.report(result, sweep)
    )
