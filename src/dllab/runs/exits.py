"""How a run ends when it does not complete: signals, failures and the exit code.

A run that fails (a bad config, divergence, any error) or is stopped (Ctrl-C, SIGTERM) says
so in one line, records it in ``metrics.json`` with the command that carries on, leaves no
half-made run dir behind, and exits with 2 (config), 1 (failure) or 128 + the signal; in a
multirun it returns the worst value instead, so the sweep goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dllab.errors import ConfigError, DivergedError
from dllab.overrides import is_multirun
from dllab.results import CONFIG_ERROR, FAILED, INTERRUPTED, write_metrics
from dllab.run_dirs import PREEXISTING
from dllab.runs.config import verbose_errors
from dllab.runs.resume import continue_command, start_again_command
from dllab.sweeps import jobs as sweep_jobs

log = logging.getLogger("dllab.train")
# What the run is doing, for the message of a signal that stops it (see enter_phase).
_phase = "start-up"


_SIGNALS: list[int] = []  # SIGINT/SIGTERM received by this process


def enter_phase(name: str) -> None:
    """The run now does ``name`` (start-up, set-up, training, testing; reported: its end was said)."""
    global _phase
    _phase = name


def phase() -> str:
    return _phase


def signal_received() -> int | None:
    """The last SIGINT/SIGTERM this process received, if any."""
    return _SIGNALS[-1] if _SIGNALS else None


def note_signal(signum: int) -> None:
    """Remember a SIGINT/SIGTERM, whichever handler caught it: the run's exit code is 128 + its number."""
    _SIGNALS.append(signum)


def signal_of(err: BaseException) -> int | None:
    """The signal a KeyboardInterrupt stands for (``signal 15``), also one a joblib worker's
    job raised and the sweep's process re-raises: the sweep exits with its code."""
    text = str(err.args[0]) if err.args else ""
    number = text.removeprefix("signal ")
    return int(number) if number != text and number.isdigit() else None


def _on_signal(signum: int, frame: Any) -> None:
    note_signal(signum)
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signal_exit() -> Iterator[None]:
    """Around Lightning's ``fit`` and ``test``: a signal it stops on (after
    :class:`~dllab.runs.interrupt.GracefulInterrupt` has saved and reported) ends in its
    ``sys.exit(1)``; it goes on as the KeyboardInterrupt it was, so the run exits 128 + the
    signal (a sweep stops) instead of 1, the code of a crash."""
    try:
        yield
    except SystemExit as err:
        signum = signal_received()
        if err.code == 1 and signum is not None:
            raise KeyboardInterrupt(f"signal {signum}") from None
        raise


def catch_signals() -> None:
    """SIGTERM (a scheduler's stop) is handled as Ctrl-C is, from the first line on: whatever
    phase it hits ends with ``status: interrupted`` and a message, not a silent kill.
    (During fit, :class:`~dllab.runs.interrupt.GracefulInterrupt` takes over and saves.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def interrupted(cfg: DictConfig, run_dir: Path, wall: float) -> float:
    """A signal outside Lightning's fit and test (which :class:`GracefulInterrupt` handles):
    metrics.json says ``interrupted``, in which phase, and the command that carries on."""
    during = _phase
    signum = _SIGNALS[-1] if _SIGNALS else signal.SIGINT
    if sweep_jobs.global_rank() != 0:
        sys.exit(128 + signum)
    if during == "reported":  # GracefulInterrupt saved, recorded and said it during fit or test
        if is_multirun():
            raise KeyboardInterrupt(f"signal {signum}")
        sys.exit(128 + signum)
    command = continue_command(run_dir)
    if cfg.trainer.get("fast_dev_run") and not is_multirun() and remove_written_by_hydra(run_dir, cfg):
        command = start_again_command()  # a smoke test leaves nothing behind
    else:
        write_metrics(
            run_dir,
            INTERRUPTED,
            phase=during,
            resume_command=command,
            wall_seconds=round(wall, 3),
            run_dir=str(run_dir),
        )
    enter_phase("reported")
    print(
        f"\ninterrupted ({signal.Signals(signum).name}) during {during}; continue with:\n  {command}", file=sys.stderr
    )
    logging.getLogger("torch").setLevel(logging.WARNING)  # an import cut short leaves its exit-time stats on
    if is_multirun():
        raise KeyboardInterrupt(f"signal {signum}")  # Ctrl-C stops the whole sweep, as it does during training
    sys.exit(128 + signum)


def disk_error(err: BaseException, run_dir: Path) -> str | None:
    """One line for a write that failed because the disk is full or read-only (an OSError,
    or torch's RuntimeError around one), naming the file and how to carry on; else None."""
    import errno

    codes = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EACCES)
    chain: list[BaseException] = []
    while err is not None and len(chain) < 10:
        chain.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in codes:
            path = cause.filename2 or cause.filename or run_dir
            break
    else:
        try:
            full = shutil.disk_usage(run_dir).free < 2**20
        except OSError:
            full = False
        if not (full and any("write" in str(c) for c in chain)):
            return None
        path, cause = run_dir, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    resume = f"dllab-train resume={run_dir}" if (run_dir / "config.yaml").is_file() else "start the run again"
    return f"{path}: cannot write ({cause.strerror}) during {_phase}; free space or fix the disk, then: {resume}"


def fail(cfg: DictConfig, run_dir: Path, status: str, err: BaseException, exit_code: int, wall: float = 0.0) -> float:
    message = str(err) if isinstance(err, (ConfigError, DivergedError)) else f"{type(err).__name__}: {err}"
    message = (disk_error(err, run_dir) if status == FAILED else None) or message
    print(f"error: {message}", file=sys.stderr)
    if verbose_errors(cfg) and status != FAILED:
        import traceback

        traceback.print_exception(err)
    if sweep_jobs.global_rank() != 0:
        pass  # a DDP worker: rank 0 records the run
    elif status == CONFIG_ERROR and cfg.get("resume"):
        remove_if_made_by_hydra(run_dir, cfg)  # a resumed run's own metrics.json stays as it was
    elif status == CONFIG_ERROR and not is_multirun() and remove_if_made_by_hydra(run_dir, cfg):
        pass  # nothing was made but Hydra's files: no half-made run dir left behind
    elif cfg.trainer.get("fast_dev_run") and not is_multirun() and remove_written_by_hydra(run_dir, cfg):
        pass  # a smoke test leaves nothing behind, also when it fails
    else:
        try:
            write_metrics(run_dir, status, error=message, wall_seconds=round(wall, 3), run_dir=str(run_dir))
        except OSError as write_err:  # the disk that failed the run may fail its record too
            print(f"error: {run_dir / 'metrics.json'}: not written ({write_err.strerror})", file=sys.stderr)
        print(f"run dir: {run_dir}", file=sys.stderr)
    if status == FAILED and not verbose_errors(cfg):
        print("(set HYDRA_FULL_ERROR=1 or verbose=true for the traceback)", file=sys.stderr)
    if is_multirun():
        return sweep_jobs.worst_value(cfg)  # the sweep goes on; a sweeper ranks this job last
    sys.exit(exit_code)


def remove_if_made_by_hydra(run_dir: Path, cfg: DictConfig) -> bool:
    """Remove a run dir that holds nothing but what Hydra wrote for this invocation (its
    .hydra/ and log file), and the then-empty folders above it; anything else stays."""
    if not run_dir.is_dir():
        return True
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"} if HydraConfig.initialized() else set()
    if cfg.get("resume") and str(Path(cfg.resume)) in PREEXISTING:
        return False  # the user's dir: never removed
    if not {p.name for p in run_dir.iterdir()} <= hydra_files:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in () if cfg.get("resume") else (run_dir.parent, run_dir.parent.parent):
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break
    return True


def remove_written_by_hydra(run_dir: Path, cfg: DictConfig) -> bool:
    """A smoke test's run dir: removed when it holds only Hydra's files and the empty folders
    the run's callbacks made (Lightning's checkpoint callbacks make checkpoints/ before they
    know that nothing will be saved)."""
    for name in ("checkpoints", "tensorboard"):
        with contextlib.suppress(OSError):
            (run_dir / name).rmdir()  # only if empty
    return remove_if_made_by_hydra(run_dir, cfg)
