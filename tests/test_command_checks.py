"""Each command's own settings at its command line (one line, exit 2, no traceback, nothing
written), and commands that cannot write: a read-only or full place costs the file, named with
the reason, not the result. The write failures are made by raising the OSError a read-only
mount gives (``EROFS``) where the file is written: root ignores a chmod, so this holds for root
and other users alike. The fuzzing of the same checks is tests/test_command_fuzz.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from omegaconf import open_dict

from dllab import data_report, landscape
from dllab.errors import ConfigError
from dllab.sweeps import settings, storage, summary
from tests.conftest import compose_train, run_cli
from tests.test_command_fuzz import fake_sweep

SHORT = ("threads=1", "trainer.max_epochs=1", "plots=none")
ROWS = [
    ("dllab-train", ["-m", "hydra/launcher=stacked", "seed=0,1", "hydra.launcher.max_stack=1.5"],
     "error: hydra.launcher.max_stack=1.5: must be an integer >= 1"),
    ("dllab-train", ["-m", "hparams_search=circle_optuna", "hydra.sweeper.sampler.n_startup_trials=-1"],
     "error: hydra.sweeper.sampler.n_startup_trials=-1: must be an integer >= 0"),
    ("dllab-train", ["-m", "hparams_search=circle_optuna", "optimized_metric=val/foo"],
     "error: optimized_metric=val/foo: not logged; choose one of val/acc"),
    ("dllab-train", ["-m", "data=circle", "seed=0,1", "callbacks.early_stopping.monitor=val/foo"],
     "error: callbacks.early_stopping.monitor=val/foo: not logged"),
    ("dllab-eval", ["ckpt_path=x.ckpt", "verbose=2"], "error: verbose=2: must be true or false"),
    ("dllab-eval", ["ckpt_path=x.ckpt", "accelerator=foo"], "error: accelerator='foo': unknown; choose one of"),
    ("dllab-landscape", ["resolution=1000000"], "error: resolution=1000000: needs about "),
    ("dllab-landscape", ["out=a_file"], "error: out=a_file: a_file is a file; give a folder"),
    ("dllab-landscape", ["momentum=2"], "error: momentum=2: must be a number in [0, 1)"),
    ("dllab-data", ["data=circle", "out=picture.pdf"], "error: out=picture.pdf: must be a file name ending in .png"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "args", "message"), ROWS, ids=[" ".join(a) for _, a, _ in ROWS])
def test_a_bad_setting_of_a_command_is_one_line(command: str, args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    extra = list(SHORT) if command == "dllab-train" else ["threads=1"]
    result = run_cli(command, *args, *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no sweep dir, run dir or picture


def read_only(*_: object, **__: object) -> None:
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_summary_of_a_sweep_it_cannot_write_prints_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = fake_sweep(tmp_path)
    for writer in ("write_csv", "write_markdown", "write_plot", "write_curves_plot"):
        monkeypatch.setattr(summary, writer, read_only)
    summary.main([str(sweep)])  # exit 0: the sweep could be read
    out, err = capsys.readouterr()
    assert "sweep: 2 jobs, 0 failed" in out and "summary:" not in out  # nothing claimed written
    assert out.splitlines()[-2].split()[:2] == ["1", "1"]  # the table, best (seed=1) first
    names = ("summary.csv", "summary.md", "summary.png", summary.CURVES_PNG)
    assert err.splitlines() == [f"error: {sweep / n}: not written (Read-only file system)" for n in names]
    assert not list(sweep.glob("summary*"))


def test_summary_names_only_the_files_it_could_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = fake_sweep(tmp_path)
    monkeypatch.setattr(summary, "write_plot", read_only)
    summary.main([str(sweep)])
    out, err = capsys.readouterr()
    assert f"summary: {sweep / 'summary.md'} (also summary.csv)" in out
    assert err.strip() == f"error: {sweep / 'summary.png'}: not written (Read-only file system)"
    assert (sweep / "summary.csv").is_file() and not (sweep / "summary.png").exists()


def test_a_storage_on_a_read_only_place_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    settings.check_sweeper({"storage": url})  # writable: taken
    monkeypatch.setattr(storage.os, "access", lambda path, mode: False)
    monkeypatch.setattr(storage, "read_only", lambda path: True)
    with pytest.raises(ConfigError) as caught:
        settings.check_sweeper({"storage": url})
    assert str(caught.value) == (
        f"hydra.sweeper.storage={url}: {tmp_path}: cannot write there (read-only file system); give a writable place"
    )
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.storage=journal://.*: cannot write there"):
        settings.check_sweeper({"storage": f"journal://{tmp_path}/study.log"})


def test_a_lock_file_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "open", read_only)
    url = f"sqlite:///{tmp_path}/optuna.db"
    with pytest.raises(ConfigError) as caught, storage.storage_lock(url, tmp_path, "study"):
        pass
    assert str(caught.value) == (
        f"hydra.sweeper.storage={url}: {tmp_path}/optuna.db.lock: cannot write the lock file (Read-only file system)"
    )


def test_landscape_names_the_picture_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dllab.pictures import plots

    monkeypatch.setattr(plots, "save", read_only)
    with pytest.raises(SystemExit) as caught:
        landscape.main(["activations", f"out={tmp_path}", "threads=1"])
    assert caught.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'activations.png'}: not written (Read-only file system); give a writable out=<folder>"
    )


def test_data_report_names_the_picture_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dllab.pictures import plots

    cfg = compose_train(["data=circle", "threads=1"], tmp_path / "run")
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path)
    monkeypatch.setattr(plots, "save", read_only)
    with pytest.raises(data_report.NotWritten) as caught:
        data_report.report(cfg, str(tmp_path / "circle.png"))
    assert str(caught.value) == (
        f"{tmp_path / 'circle.png'}: not written (Read-only file system); give a writable out=<file>.png"
    )
    assert any(line.startswith("model: MLP") for line in caught.value.lines)  # the report is still shown
