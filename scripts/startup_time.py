"""Start-up time of ``dllab-train``: the commands that should answer before torch is imported.

    .venv/bin/python scripts/startup_time.py            # 5 runs of each command, medians
    .venv/bin/python scripts/startup_time.py -n 9 --json startup.json

Each command runs as ``sys.executable -m dllab.train ...`` in a temporary directory (so
nothing is written into the repository), with ``OMP_NUM_THREADS=1`` and the log dir in that
directory; the time is the wall time of the whole process, interpreter start included, and
its CPU time (user + system, from ``getrusage``), which a busy shared machine inflates less.
Repeats are interleaved (one of each command per round), so a busy moment on a shared
machine spreads over all commands rather than landing on one. A first, untimed round warms
the file-system cache and the ``__pycache__`` of every module.

The commands: ``--help`` (lists every config group), ``--cfg job`` (prints the composed
config) and a bad config (``model.activation=swish``: one error line, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, tuple[list[str], int]] = {
    "--help": (["--help"], 0),
    "--cfg job": (["--cfg", "job"], 0),
    "bad config": (["model.activation=swish"], 2),
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args: list[str], expected_rc: int, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``python -m dllab.train ARGS``."""
    cpu, started = children_cpu(), time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dllab.train", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if result.returncode != expected_rc:
        raise SystemExit(
            f"dllab.train {' '.join(args)}: exit code {result.returncode}, expected {expected_rc}\n{result.stderr}"
        )
    return seconds, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeats", type=int, default=5, help="timed runs of each command (default 5)")
    parser.add_argument("--json", type=Path, help="also write the times and medians to this file")
    options = parser.parse_args(argv)

    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu_times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="dllab_startup_") as tmp:
        cwd = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        env |= {"OMP_NUM_THREADS": "1", "DLLAB_LOG_DIR": str(cwd / "logs")}
        for args, rc in COMMANDS.values():  # warm-up, not timed
            run_once(args, rc, cwd, env)
        for _ in range(options.repeats):
            for name, (args, rc) in COMMANDS.items():
                wall, cpu = run_once(args, rc, cwd, env)
                times[name].append(wall)
                cpu_times[name].append(cpu)

    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu_times.items()}
    width = max(len(name) for name in COMMANDS)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"dllab-train start-up, median of {options.repeats} (python {sys.version.split()[0]}; load average {load})")
    print(f"  {'':<{width}}  wall               cpu")
    for name, values in times.items():
        spread = f"(min {min(values):.2f}, max {max(values):.2f})"
        print(f"  {name:<{width}}  {medians[name]:.2f} s {spread}  {cpu_medians[name]:.2f} s")
    if options.json:
        report = {"repeats": options.repeats, "times": times, "medians": medians}
        report |= {"cpu_times": cpu_times, "cpu_medians": cpu_medians, "load_average": os.getloadavg()}
        options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
