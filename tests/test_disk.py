"""A run writes only under its run dir (and paths.data_dir): never into the source tree or
the working directory."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
SOURCE = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_run_writes_nothing_outside_its_run_dir(tmp_path: Path) -> None:
    tree = tmp_path / "readonly_source"
    for part in ("src", "conf"):
        shutil.copytree(SOURCE / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    before_tree, before_cwd = snapshot(tree), snapshot(workdir)

    env = {
        "PYTHONPATH": str(tree / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DLLAB_LOG_DIR": str(elsewhere / "logs"),
        "DLLAB_DATA_DIR": str(elsewhere / "data"),
    }
    result = run_cli("dllab-train", "data=iris", "trainer.max_epochs=2", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert snapshot(tree) == before_tree
    assert snapshot(workdir) == before_cwd == {}
    (run_dir,) = [p.parent for p in (elsewhere / "logs").glob("iris/runs/*/metrics.json")]
    written = {p for p in elsewhere.rglob("*") if p.is_file()}
    assert written and all(run_dir in p.parents for p in written)
    assert os.access(run_dir / "metrics.json", os.R_OK)
    assert f"path: {tree / 'conf'}" in (run_dir / ".hydra" / "hydra.yaml").read_text()  # the copy ran
