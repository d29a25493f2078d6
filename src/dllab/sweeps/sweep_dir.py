"""A sweep dir belongs to one sweep: refused when it holds another sweep's jobs, and locked
while its sweep writes it.

Job dirs are numbered from 0 in every grid, so a second sweep into a used
``hydra.sweep.dir`` would write over the first one's jobs (their ``config.yaml`` saying one
thing, their ``.hydra/overrides.yaml`` and the summary another). A single run's dir is
guarded the same way (``dllab.run_dirs``). Two sweeps started into one dir at the same moment
both find it empty: the lock (``flock``, released by the kernel when the process ends, a kill
included) lets only one of them write. dllab's Optuna sweeper is left out: it goes on with
its study in its own dir, trial number = job number, under the study's own lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from omegaconf import DictConfig

LOCK_FILE = ".dllab-sweep.lock"


def continues_its_study(config: DictConfig) -> bool:
    """Whether the sweeper is dllab's Optuna sweeper, whose sweep dir is its study's."""
    target = str(config.hydra.sweeper.get("_target_", ""))
    return "dllab_optuna_sweeper" in target


def other_sweep(sweep_dir: Path) -> str | None:
    """What of another sweep ``sweep_dir`` holds (its multirun.yaml, its job dirs), or None."""
    if not sweep_dir.is_dir():
        return None
    jobs = sorted(d.name for d in sweep_dir.iterdir() if d.is_dir() and (d / ".hydra").is_dir())
    found = []
    if (sweep_dir / "multirun.yaml").is_file():
        found.append("multirun.yaml")
    if jobs:
        shown = ", ".join(jobs[:5]) + (", ..." if len(jobs) > 5 else "")
        found.append(f"{len(jobs)} job dir{'s' if len(jobs) != 1 else ''} ({shown})")
    return " and ".join(found) or None


def claim(config: DictConfig) -> IO[str] | None:
    """Lock the sweep dir for this sweep (the open lock file, to keep until the sweep ends), or
    exit 2 with one line when another sweep holds it or is writing it now."""
    if continues_its_study(config):
        return None
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    field = f"hydra.sweep.dir={sweep_dir}"
    path = sweep_dir / LOCK_FILE
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a+")  # noqa: SIM115 (held open until the sweep ends)
    except OSError as err:
        refuse(f"{field}: cannot be written ({err.strerror or err})")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        refuse(f"{field}: another sweep is writing into it now (process {holder}); give this one a dir of its own")
    held = other_sweep(sweep_dir)
    if held is not None:
        path.unlink(missing_ok=True)  # this sweep's own lock: the dir is left as it was
        lock.close()
        refuse(
            f"{field}: holds another sweep's {held}; a sweep writes into a dir of its own "
            "(leave hydra.sweep.dir out for a new one, or name an unused dir)"
        )
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def release(lock: IO[str] | None) -> None:
    """Remove the lock file and release it (a sweep that starts later finds the dir used, by
    its files, and is refused all the same)."""
    if lock is not None and not lock.closed:
        Path(lock.name).unlink(missing_ok=True)
        lock.close()  # closing the file releases the lock


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
