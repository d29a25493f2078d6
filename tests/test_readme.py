"""The README's "Bring your own data" examples run exactly as written."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_dirs
from tests.makedata import make_image_folder, make_table

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(start: str) -> list[str]:
    """The one README line that starts with ``start``, as arguments."""
    (line,) = [line for line in README.read_text().splitlines() if line.startswith(start)]
    return shlex.split(line)


@pytest.mark.parametrize("start", ["data=csv", "data=image_folder", "model=cnn data=image_folder"])
def test_bring_your_own_data_example(start: str, tmp_path: Path) -> None:
    command, *args = readme_command(f"dllab-train {start} ")
    if start == "data=csv":
        make_table(tmp_path / "my_table.csv", n=120)
        assert "height,weight,colour,species" in README.read_text()
    else:
        make_image_folder(tmp_path / "my_images", per_class=30)
    result = run_cli(command, *args, cwd=tmp_path)  # exactly as written (run_cli sets OMP_NUM_THREADS=1)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 20
    assert metrics["test"]["test/acc"] >= 0.9  # both tiny sets are easy to separate
