"""Generate docs/guide.md's and docs/lab.md's pictures from real short runs into docs/.

    python scripts/make_pictures.py            # about three minutes on 2 CPU cores
    python scripts/make_pictures.py --out docs --keep-logs

Each picture is what a run (or ``dllab-landscape``) writes; here it is only copied and
stored as a 256-colour PNG to keep the repository small.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (task name, dllab-train overrides, {picture in the run dir: name under docs/})
RUNS = [
    (
        "circle",
        "data=circle data.noise=0.1 model.hidden_sizes=[8] model.activation=tanh optimizer=sgd "
        "trainer.max_epochs=30 tuner.lr_find=true",
        {"decision_boundary": "decision_boundary", "curves": "curves", "lr_find": "lr_find"},
    ),
    ("digits", "data=digits trainer.max_epochs=20", {"confusion_matrix": "confusion_matrix"}),
    (
        "multigauss",
        "data=multigauss model.hidden_sizes=[32,32] optimizer.lr=0.003 trainer.max_epochs=60",
        {"regression_fit": "regression_fit"},
    ),
    (
        "function",
        "data=function data.fn=sin data.noise=0.1 model.hidden_sizes=[16] model.activation=tanh "
        "optimizer.lr=0.01 trainer.max_epochs=150",
        {"function_fit": "function_fit"},
    ),
]

# docs/lab.md: pictures of datasets, drawn by dllab-data: (data, overrides, name under docs/)
DATA = [
    ("circle", "data=circle", "data_circle"),
    ("digits", "data=digits", "data_digits"),
    ("diabetes", "data=diabetes", "data_diabetes"),
]

# docs/lab.md: sweeps whose summary_curves.png it shows: (task name, overrides, name under docs/)
SWEEPS = [
    (
        "widths",
        "data=function data.fn=sin model.hidden_sizes=[2],[8],[64] model.activation=tanh "
        "trainer.max_epochs=100 optimizer.lr=0.01",
        "lab_widths",
    ),
    (
        "batch_sizes",
        "data=circle optimizer=sgd optimizer.lr=0.03 data.batch_size=1,10,350 trainer.max_epochs=20",
        "lab_batch_sizes",
    ),
    ("optimizers", "optimizer=sgd,adagrad,adam trainer.max_epochs=10", "lab_optimizers"),
    ("activations", "experiment=activations", "lab_activations"),
]


def run(args: list[str], env: dict[str, str]) -> None:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{result.stderr[-3000:]}")
    print(f"  {time.perf_counter() - started:5.1f}s  {' '.join(args[2:])}")


def store(source: Path, target: Path) -> None:
    """Copy a PNG as a 256-colour palette image (a third of the size, same look)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    print(
        f"  {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} ({target.stat().st_size // 1024} KB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--keep-logs", action="store_true", help="keep the runs (their path is printed)")
    options = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="dllab-pictures-"))
    env = {**os.environ, "DLLAB_LOG_DIR": str(logs), "PYTHONPATH": str(ROOT / "src")}
    out = options.out.resolve()
    try:
        print("runs:")
        for task, overrides, pictures in RUNS:
            run(["-m", "dllab.train", f"task_name=docs_{task}", "trainer.accelerator=cpu", *overrides.split()], env)
            (run_dir,) = sorted((logs / f"docs_{task}" / "runs").iterdir())
            for picture, name in pictures.items():
                store(run_dir / f"{picture}.png", out / f"{name}.png")
            if task == "circle":
                run(["-m", "dllab.landscape", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"], env)
                for name in ("landscape_contour", "landscape_surface"):
                    store(run_dir / f"{name}.png", out / f"{name}.png")
        run(["-m", "dllab.landscape", f"out={logs / 'landscape'}"], env)
        run(["-m", "dllab.landscape", "activations", f"out={logs / 'landscape'}"], env)
        for name in ("two_param", "activations"):
            store(logs / "landscape" / f"{name}.png", out / f"{name}.png")
        print("data (dllab-data):")
        for data, overrides, name in DATA:
            picture = logs / "data" / f"{data}.png"
            run(["-m", "dllab.data_report", *overrides.split(), "trainer.accelerator=cpu", f"out={picture}"], env)
            store(picture, out / f"{name}.png")
        print("sweeps:")
        for task, overrides, name in SWEEPS:
            run(
                ["-m", "dllab.train", "-m", f"task_name=docs_{task}", "trainer.accelerator=cpu", *overrides.split()],
                env,
            )
            (sweep_dir,) = sorted((logs / f"docs_{task}" / "multiruns").iterdir())
            store(sweep_dir / "summary_curves.png", out / f"{name}.png")
    finally:
        if options.keep_logs:
            print(f"runs kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
