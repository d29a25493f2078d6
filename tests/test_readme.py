"""The examples of the README and of the docs pages it links run: "Bring your own data"
(docs/guide.md) exactly as written, every other dllab command line shortened to 2 epochs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_dirs
from tests.makedata import make_image_folder, make_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# docs/lab.md (tests/test_lab.py) and docs/performance.md (measurements) are not run here.
PAGE_NAMES = ("guide.md", "extending.md", "sweeps.md", "architecture.md", "troubleshooting.md")
PAGES = [README, *(ROOT / "docs" / name for name in PAGE_NAMES)]


def docs_text() -> str:
    """The README and the docs pages whose commands this file runs, one after another."""
    return "\n".join(page.read_text() for page in PAGES)


def readme_command(start: str) -> list[str]:
    """The one line of the pages that starts with ``start``, as arguments."""
    (line,) = [line for line in docs_text().splitlines() if line.startswith(start)]
    return shlex.split(line)


@pytest.mark.parametrize("start", ["data=csv", "data=image_folder", "model=cnn data=image_folder"])
def test_bring_your_own_data_example(start: str, tmp_path: Path) -> None:
    command, *args = readme_command(f"dllab-train {start} ")
    if start == "data=csv":
        make_table(tmp_path / "my_table.csv", n=120)
        assert "height,weight,colour,species" in docs_text()
    else:
        make_image_folder(tmp_path / "my_images", per_class=30)
    result = run_cli(command, *args, cwd=tmp_path)  # exactly as written (run_cli sets OMP_NUM_THREADS=1)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 20
    assert metrics["test"]["test/acc"] >= 0.9  # both tiny sets are easy to separate


def readme_commands(text: str | None = None) -> list[str]:
    """Every dllab command line of the pages' code blocks (or of ``text``'s), comments
    stripped, as written."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", docs_text() if text is None else text, re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [" ".join(shlex.split(line, comments=True)) for line in lines if line.startswith(("dllab-", "PYTHONPATH="))]


# Lines another test runs exactly as written (their files: tests/test_readme.py above, test_extending.py).
RUN_ELSEWHERE = ("PYTHONPATH=", "dllab-train data=csv", "dllab-train data=image_folder", "dllab-train model=cnn data=")
# What a line needs to run in a test's time: 2 epochs, small searches, no cluster.
SHORTER = {"trainer.max_epochs": "2", "hydra.sweeper.n_trials": "2"}


def shortened(args: list[str]) -> list[str]:
    """The arguments with trainer.max_epochs (and an Optuna search's trials) set small: an
    override the line already has is replaced, else added."""
    args = [a for a in args if a.split("=", 1)[0] not in SHORTER]
    extra = [f"{key}={value}" for key, value in SHORTER.items() if key != "hydra.sweeper.n_trials"]
    if any(a.startswith("hparams_search=") for a in args):
        extra.append("hydra.sweeper.n_trials=2")
    return [*args, *extra, "threads=1"]


def first_value(arg: str) -> str:
    """``key=a,b`` as ``key=a`` (a sweep needs -m, which --cfg cannot take); other args as they are."""
    key, sep, value = arg.partition("=")
    if not sep or value.startswith(("[", "{")) or "," not in value:
        return arg
    return f"{key}={value.split(',', 1)[0]}"


def test_first_value_keeps_one_choice_of_a_sweep() -> None:
    assert first_value("data=circle,xor") == "data=circle"
    assert first_value("model.hidden=[64,64]") == "model.hidden=[64,64]"
    assert first_value("-m") == "-m" and first_value("trainer=ddp") == "trainer=ddp"


def test_readme_lists_the_commands_it_explains() -> None:
    first = readme_commands(README.read_text())  # the front door's first commands
    assert "dllab-train" in first and "dllab-train -m experiment=activations" in first
    assert any(c.startswith("dllab-eval ckpt_path=logs/digits/runs/<run>/") for c in first)
    assert any(c.startswith("dllab-summary ") for c in first)
    assert len(readme_commands()) >= 34  # every page's, as many as the one README had


def test_the_readme_links_every_page() -> None:
    text = README.read_text()
    for page in [*PAGES[1:], ROOT / "docs" / "lab.md", ROOT / "docs" / "performance.md"]:
        assert f"(docs/{page.name})" in text, page.name


@pytest.mark.slow
def test_every_readme_example_runs(tmp_path: Path) -> None:
    """Each dllab-train line of the pages trains (2 epochs) and completes; the SLURM and
    shared-storage lines compose (they need a cluster or a server: tests/test_cluster_*.py);
    dllab-eval, dllab-landscape and dllab-summary run on the dirs these made, dllab-data as written."""
    ran: list[str] = []
    for line in readme_commands():
        if line.startswith(RUN_ELSEWHERE):
            continue
        command, *args = shlex.split(line)
        if command != "dllab-train":
            continue
        if "hydra/launcher=slurm" in args or any(a.startswith("hydra.sweeper.storage=") for a in args):
            # --cfg composes one job: the sweep's first value stands for each swept key
            args = [first_value(a) for a in args if a != "-m"] + ["--cfg", "job"]
            result = run_cli(command, *args, cwd=tmp_path)
            assert result.returncode == 0 and "accelerator:" in result.stdout, (line, result.stderr)
            continue
        result = run_cli(command, *shortened(args), cwd=tmp_path, timeout=600)
        assert result.returncode == 0, (line, result.stderr[-2000:])
        ran.append(line)
    assert len(ran) >= 10, ran
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "logs").rglob("metrics.json")]
    assert statuses and set(statuses) == {"completed"}, statuses

    digits_run = sorted((tmp_path / "logs" / "digits" / "runs").iterdir())[0]
    sweep = next(p.parent for p in (tmp_path / "logs").rglob("summary.md"))
    places = {"<run>": digits_run.name, "logs/<task>/multiruns/<sweep>": str(sweep)}
    for line in readme_commands():
        command = line.split()[0]
        if command in ("dllab-data", "dllab-eval", "dllab-landscape", "dllab-summary"):
            for placeholder, value in places.items():
                line = line.replace(placeholder, value)
            result = run_cli(command, *shlex.split(line)[1:], cwd=tmp_path)
            assert result.returncode == 0, (line, result.stderr[-2000:])
