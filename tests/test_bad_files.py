"""Bad files given to dllab-eval, dllab-landscape and dllab-train's ckpt_path/resume: a missing,
truncated or pickled checkpoint, one trained on data of other sizes, a run dir without (or with
a broken) config.yaml. Each ends with one line naming the file, exit status 2, no traceback,
and nothing written."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from dllab import landscape
from dllab.checkpoints import check_checkpoint_fits
from dllab.errors import ConfigError
from tests.conftest import run_cli, run_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of one tiny circle run, shared by the module's tests (copy it to change it)."""
    root = tmp_path_factory.mktemp("trained")
    args = ("data=circle", "model.hidden_sizes=[4]", "trainer.max_epochs=1", "plots=none", "threads=1")
    result = run_cli("dllab-train", *args, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(root)
    return run_dir


def copy_run(trained: Path, tmp: Path) -> Path:
    run_dir = tmp / "run"
    shutil.copytree(trained, run_dir)
    return run_dir


def missing(trained: Path, tmp: Path) -> tuple[Path, str]:
    return tmp / "missing.ckpt", "ckpt_path={file}: no such file"


def truncated(trained: Path, tmp: Path) -> tuple[Path, str]:
    path = copy_run(trained, tmp) / "checkpoints" / "cut.ckpt"
    path.write_bytes((trained / "checkpoints" / "best.ckpt").read_bytes()[:2000])
    return path, "ckpt_path={file}: cannot read the checkpoint, truncated or not written by torch.save (RuntimeError:"


def pickled(trained: Path, tmp: Path) -> tuple[Path, str]:
    """A checkpoint that would run code on loading: it holds an object, not only weights."""
    checkpoint = torch.load(trained / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["extra"] = argparse.Namespace(anything=1)
    path = copy_run(trained, tmp) / "checkpoints" / "pickled.ckpt"
    torch.save(checkpoint, path)
    return path, (
        "ckpt_path={file}: not a plain checkpoint (it holds a pickled argparse.Namespace, which dllab does not execute)"
    )


def other_data(trained: Path, tmp: Path) -> tuple[Path, str]:
    """The run's data changed since it was trained: 3 input features where it had 2."""
    run_dir = copy_run(trained, tmp)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"]["features"] = ["x1", "x2", "x1x2"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir / "checkpoints" / "best.ckpt", (
        "ckpt_path={file}: trained with 2 inputs and 2 outputs (classification), but data=circle (from "
        f"{run_dir.resolve() / 'config.yaml'}) has 3 inputs and 2 outputs (classification); a checkpoint fits only"
    )


def no_config(trained: Path, tmp: Path) -> tuple[Path, str]:
    path = tmp / "alone" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    shutil.copy(trained / "checkpoints" / "best.ckpt", path)
    return path, f"ckpt_path={{file}}: no config.yaml in {path.parent.parent.resolve()}"


def broken_config(trained: Path, tmp: Path) -> tuple[Path, str]:
    run_dir = copy_run(trained, tmp)
    (run_dir / "config.yaml").write_text("data: [circle\n")
    config = run_dir.resolve() / "config.yaml"
    return run_dir / "checkpoints" / "best.ckpt", f"ckpt_path={{file}}: its run's {config} is not readable YAML"


BAD_FILES = [missing, truncated, pickled, other_data, no_config]


def assert_one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit status 2 and exactly one line on stderr, ``error: ...`` holding ``message``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("case", [*BAD_FILES, broken_config], ids=lambda case: case.__name__)
def test_eval_of_a_bad_file_is_one_line_naming_it(
    case: Callable[[Path, Path], tuple[Path, str]], trained: Path, tmp_path: Path
) -> None:
    path, message = case(trained, tmp_path)
    assert_one_line(run_cli("dllab-eval", f"ckpt_path={path}", cwd=tmp_path), message.format(file=path))
    assert not list(tmp_path.rglob("eval_metrics.json"))  # nothing written


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda case: case.__name__)
def test_landscape_of_a_bad_file_is_one_line_naming_it(
    case: Callable[[Path, Path], tuple[Path, str]],
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In this process (its entry point is landscape.main): the same checks as dllab-eval's."""
    path, message = case(trained, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        landscape.main([f"ckpt_path={path}", "resolution=3", f"out={out}"])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert message.format(file=path) in stderr
    assert not out.exists() and not list(tmp_path.rglob("*.png"))  # nothing drawn


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "ckpt_path: required; give ckpt_path=<run dir>/checkpoints/best.ckpt"),
        (("+data=digits",), "data: not an option of dllab-eval, which tests on the run's own data"),
    ],
)
def test_eval_refuses_what_it_would_ignore(args: tuple[str, ...], message: str, trained: Path, tmp_path: Path) -> None:
    """``+data=digits`` would be composed and silently ignored: the data is always the run's."""
    ckpt = () if not args else (f"ckpt_path={copy_run(trained, tmp_path) / 'checkpoints' / 'best.ckpt'}",)
    assert_one_line(run_cli("dllab-eval", *ckpt, *args, cwd=tmp_path), message)
    assert not list(tmp_path.rglob("eval_metrics.json"))


TRAIN_FILES = [
    pytest.param(pickled, ("data=circle",), id="pickled"),
    pytest.param(truncated, ("data=circle",), id="truncated"),
    pytest.param(other_data, ("data=digits",), id="other_data"),
]


@pytest.mark.parametrize(("case", "overrides"), TRAIN_FILES)
def test_train_from_a_bad_checkpoint(
    case: Callable[[Path, Path], tuple[Path, str]], overrides: tuple[str, ...], trained: Path, tmp_path: Path
) -> None:
    path, message = case(trained, tmp_path)
    if case is other_data:  # training meets the checkpoint with the data it is given
        path = trained / "checkpoints" / "best.ckpt"
        message = "ckpt_path={file}: trained with 2 inputs and 2 outputs (classification), but data=digits has 64"
    args = (f"ckpt_path={path}", *overrides, "trainer.max_epochs=1", "plots=none", "threads=1")
    result = run_cli("dllab-train", *args, cwd=tmp_path)
    assert_one_line(result, message.format(file=path))
    assert run_dirs(tmp_path) == []  # nothing trained, nothing left


def test_resume_from_a_pickled_last_checkpoint(trained: Path, tmp_path: Path) -> None:
    path, _ = pickled(trained, tmp_path)
    run_dir = path.parent.parent
    path.replace(run_dir / "checkpoints" / "last.ckpt")
    before = (run_dir / "metrics.json").read_text()
    result = run_cli("dllab-train", f"resume={run_dir}", cwd=tmp_path)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert_one_line(result, f"resume={last}: not a plain checkpoint (it holds a pickled argparse.Namespace")
    assert (run_dir / "metrics.json").read_text() == before  # the run's own record stays as it was
    assert json.loads(before)["status"] == "completed"


def fake_data(
    input_size: int, output_size: int, image_shape: tuple[int, ...] | None = None, task: str = "classification"
) -> SimpleNamespace:
    """What check_checkpoint_fits reads of a DataModule."""
    return SimpleNamespace(
        task=task,
        input_size=input_size,
        output_size=output_size,
        image_shape=image_shape,
        data_name="digits",
    )


def test_check_checkpoint_fits_compares_what_the_checkpoint_recorded() -> None:
    checkpoint = {
        "dllab_task": "classification",
        "hyper_parameters": {"input_size": 64, "output_size": 10, "image_shape": [1, 8, 8]},
    }
    check_checkpoint_fits("a.ckpt", checkpoint, fake_data(64, 10, (1, 8, 8)))
    with pytest.raises(ConfigError) as refused:
        check_checkpoint_fits("a.ckpt", checkpoint, fake_data(64, 10), field="resume")
    assert str(refused.value).startswith(
        "resume=a.ckpt: trained with 64 inputs (1x8x8 images) and 10 outputs (classification), but data=digits has "
        "64 inputs and 10 outputs (classification)"
    )
    with pytest.raises(ConfigError) as refused:
        check_checkpoint_fits("a.ckpt", checkpoint, fake_data(64, 10, (1, 8, 8), "regression"))
    assert "but data=digits has 64 inputs (1x8x8 images) and 10 outputs (regression)" in str(refused.value)
    # a checkpoint of an older dllab without image_shape: the sizes alone are compared
    older = {"dllab_task": "classification", "hyper_parameters": {"input_size": 64, "output_size": 10}}
    check_checkpoint_fits("a.ckpt", older, fake_data(64, 10, (1, 8, 8)))
