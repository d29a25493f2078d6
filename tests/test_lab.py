"""docs/lab.md and what it uses: scripts/pytorch_basics.py prints the values it claims, every
command of the guide runs as written, every picture it shows exists, and ``dllab-data``
reports and draws a dataset.

The commands run through ``python -m`` with this checkout's ``src/`` first on the path, so
they test this code (the console scripts of the venv may point at another checkout, and
``dllab-data`` needs a reinstall to exist there)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import compose_train

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "docs" / "lab.md"
BASICS = ROOT / "scripts" / "pytorch_basics.py"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
PICTURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")
# Lines of the guide's bash blocks that are not dllab commands, and where they are tested.
OTHER_LINES = {"python scripts/pytorch_basics.py": "test_pytorch_basics_prints_computed_values"}
# Commands whose config has a `threads` and `paths.log_dir` key (composed from conf/train.yaml).
HYDRA_COMMANDS = ("dllab-train", "dllab-data")


def console_modules() -> dict[str, str]:
    """dllab-* console script -> the module whose main() it runs (from pyproject.toml)."""
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(dllab-[\w-]+) = "([\w.]+):main"$', scripts, re.M))


def lab_lines() -> list[str]:
    return [
        line.strip() for block in BASH_BLOCK.findall(LAB.read_text()) for line in block.splitlines() if line.strip()
    ]


def lab_commands() -> list[str]:
    return [line for line in lab_lines() if line.startswith("dllab-")]


def run_module(command: str, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a dllab console script as ``python -m <its module>`` on this checkout's code, in cwd,
    with logs under cwd/logs and one OpenMP thread (as tests.conftest.run_cli does)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DLLAB_SWEEP_DIR")}
    env |= {
        "DLLAB_LOG_DIR": str(cwd / "logs"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", console_modules()[command], *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- scripts/pytorch_basics.py -----------------------------------------------------------------


def basics_values() -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, str(BASICS)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    values = {}
    for line in result.stdout.splitlines():
        if ": " in line and not line.startswith("=="):
            label, value = line.split(": ", 1)
            values[label] = value
    return values


def test_pytorch_basics_prints_computed_values() -> None:
    v = basics_values()
    number = {k: float(x) for k, x in v.items() if re.fullmatch(r"-?[\d.]+(e-?\d+)?", x)}
    # tensors: shapes, dtypes, broadcasting
    assert v["a.shape"] == "(2, 3)" and v["a.dtype"] == "torch.float32" and v["int tensor dtype"] == "torch.int64"
    assert json.loads(v["a + row"]) == [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]
    assert json.loads(v["a + column"]) == [[101.0, 102.0, 103.0], [204.0, 205.0, 206.0]]
    assert json.loads(v["a @ a.T"]) == [[14.0, 32.0], [32.0, 77.0]]
    assert v["x.device"] == "cpu" and v["device this machine would use"] in ("cpu", "cuda", "mps")
    # autograd: d(w^2 x)/dw = 2wx
    assert number["d loss / d w (autograd)"] == number["d loss / d w (by hand, 2*w*x)"] == 12.0
    assert v["x.grad (no requires_grad)"] == "None"
    # .grad adds up over backward calls until zeroed
    once, twice = number["grad after one backward call"], number["grad after two backward calls"]
    assert twice == 2 * once == 4.0
    assert number["grad after zero_()"] == 0.0 and number["grad after zero_() and one more backward"] == once
    assert v["model.weight.grad after optimizer.zero_grad()"] == "None"
    # k micro-batches with the loss scaled by 1/k give the large batch's gradient
    assert number["large batch size k*b"] == number["micro-batches k"] * number["micro-batch size b"]
    assert number["accumulated vs large batch, max abs difference"] < 1e-6
    assert number["without 1/k, gradient norm / large batch's"] == pytest.approx(number["micro-batches k"], rel=1e-4)
    # one SGD step by hand: w <- w - lr * grad, the same as torch.optim.SGD, and the loss falls
    assert number["w after one step"] == pytest.approx(-0.1 * number["grad w"], abs=1e-5)
    assert number["b after one step"] == pytest.approx(-0.1 * number["grad b"], abs=1e-5)
    assert number["w after one step"] == number["w after torch.optim.SGD step"]
    assert number["b after one step"] == number["b after torch.optim.SGD step"]
    assert number["loss after the step"] < number["loss before the step"]


# --- docs/lab.md --------------------------------------------------------------------------------


def test_lab_commands_are_all_known() -> None:
    commands = lab_commands()
    assert len(commands) >= 12, commands
    modules = console_modules()
    assert all(c.split()[0] in modules for c in commands), [c for c in commands if c.split()[0] not in modules]
    others = [line for line in lab_lines() if not line.startswith("dllab-")]
    assert set(others) <= set(OTHER_LINES), others  # every other line is tested elsewhere


@pytest.mark.slow
@pytest.mark.parametrize("line", lab_commands())
def test_lab_command_runs(line: str, tmp_path: Path) -> None:
    command, *args = shlex.split(line)
    if command in HYDRA_COMMANDS:
        args += [f"paths.log_dir={tmp_path / 'logs'}", "threads=1"]
    result = run_module(command, args, tmp_path)
    assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    records = sorted((tmp_path / "logs").glob("**/metrics.json"))
    if command == "dllab-train":
        assert records, f"{line}: no metrics.json"
    allowed = {"completed", "pruned"} if "hparams_search=" in line else {"completed"}  # Optuna prunes trials
    statuses = [json.loads(p.read_text())["status"] for p in records]
    assert set(statuses) <= allowed, dict(zip(map(str, records), statuses, strict=True))
    assert not records or "completed" in statuses


def test_lab_pictures_exist() -> None:
    text = LAB.read_text()
    pictures = [a or b for a, b in PICTURE.findall(text)]
    assert len(pictures) >= 8, pictures
    missing = [p for p in pictures if not (LAB.parent / p).is_file()]
    assert not missing, missing


def test_lab_has_the_activations_table_and_dates_its_measurements() -> None:
    text = LAB.read_text()
    section = text[text.index("## 5. Activations") : text.index("## 6.")]
    assert "dllab-train -m experiment=activations" in section
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
    assert {"relu", "tanh", "sigmoid"} <= rows
    assert "measured 2026-12-01" in text


# --- dllab-data ---------------------------------------------------------------------------------


def summary_lines(data: str, num_parameters: int, tmp_path: Path) -> list[str]:
    """What the data summary of a dllab-train run logs for this data."""
    from dllab.data.datamodule import build_datamodule

    cfg = compose_train([f"data={data}"], tmp_path / "run")
    datamodule = build_datamodule(cfg.data)
    return datamodule.summary(num_parameters)


def test_data_report_of_a_2d_set(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "pictures" / "circle.png"
    result = run_module("dllab-data", ["data=circle", f"out={out}", "threads=1"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    params = 2 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2  # MLP 64-64, 2 inputs, 2 classes
    assert f"training samples per model parameter: 0.08 (350 / {params})" in lines
    assert set(summary_lines("circle", params, tmp_path)) <= set(lines)  # the same lines a run logs
    assert "samples: train 350, val 50, test 100" in lines
    assert any(line.startswith("warning: fewer than 10 training samples per parameter") for line in lines)
    assert f"picture: {out}" in lines
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 400
    assert not (tmp_path / "logs").exists()  # out= elsewhere: nothing under the log dir

    small = run_module("dllab-data", ["data=circle", "model.hidden_sizes=[4]", "threads=1"], tmp_path)
    assert small.returncode == 0, small.stderr
    assert "training samples per model parameter: 15.91 (350 / 22)" in small.stdout.splitlines()
    assert "warning" not in small.stdout
    assert (tmp_path / "logs" / "data" / "circle.png").is_file()  # the default place


def test_data_report_of_images(tmp_path: Path) -> None:
    from PIL import Image

    result = run_module("dllab-data", ["data=digits", "threads=1"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "data=digits (classification): 64 features, images (1, 8, 8)"
    assert "samples: train 1258, val 180, test 359" in lines
    assert set(summary_lines("digits", 8970, tmp_path)) <= set(lines)
    assert "model: MLP hidden sizes [64, 64] relu, 8970 parameters" in lines
    picture = tmp_path / "logs" / "data" / "digits.png"
    assert f"picture: {picture}" in lines
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.height > image.width  # one row per class


@pytest.mark.parametrize("data", ["diabetes", "function", "iris", "plane"])
def test_data_report_draws_tables_functions_and_regression_sets(data: str, tmp_path: Path) -> None:
    from dllab.data_report import report

    cfg = compose_train([f"data={data}"], tmp_path / "run")
    lines, path = report(cfg, str(tmp_path / f"{data}.png"))
    assert lines[0].startswith(f"data={data} (")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_report_bad_input_as_dllab_train(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    for args, code in ((["data=nope"], 1), (["data=circle", "data.noise=3"], 2)):
        report = run_module("dllab-data", args, tmp_path)
        assert not (tmp_path / "logs").exists()  # nothing written
        train = run_module("dllab-train", args, tmp_path / "train")
        assert report.returncode == train.returncode == code, report.stderr
        assert report.stderr.splitlines()[0] == train.stderr.splitlines()[0]
    assert report.stderr.strip() == "error: data.noise=3: must be a number in [0, 0.5]"
