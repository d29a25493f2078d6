"""Pre-emption and time-outs inside a SLURM job of ``hydra/launcher=slurm``.

A requeue signal (submitit's USR2, sent ``signal_delay_s`` before the time limit, or SIGTERM
while SLURM still has the job running: pre-emption, ``scancel --signal=TERM``) does not stop
training at once: the epoch ends, ``last.ckpt`` is saved there, and the job is requeued
through submitit's checkpointing protocol. The requeued job continues in its own dir from
that checkpoint (:func:`dllab.train.run`), so it ends as a run never stopped would, with one
TensorBoard history. A plain ``scancel`` (the job is already ending) stops at once, as Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dllab.sweeps")

RESTARTS_ENV = "SLURM_RESTART_COUNT"
REQUEUED = "requeued"  # metrics.json between a requeue signal and the requeued job's start


class RequeueRequested(BaseException):
    """Raised at the epoch boundary after a requeue signal. Not an ``Exception``: nothing on
    the way up to the launcher's job function may take it for a failure of the run."""


class _State:
    submitit_handler: Callable[[int, Any], Any] | None = None  # submitit's checkpoint-and-requeue
    signum: int | None = None  # the requeue signal received


STATE = _State()


def restarts() -> int:
    """How often SLURM has restarted this job (0 outside SLURM)."""
    value = os.environ.get(RESTARTS_ENV, "")
    return int(value) if value.isdigit() else 0


def requeue_signal() -> int:
    """submitit's pre-emption signal (USR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` names another)."""
    return int(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")))


def arm() -> None:
    """In a submitit SLURM job (before the run starts): take submitit's requeue signal and
    SIGTERM over, keeping submitit's handler to requeue with at the epoch boundary."""
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(requeue_signal())
    if not callable(handler) or handler in (signal.SIG_DFL, signal.SIG_IGN):
        return
    STATE.submitit_handler = handler
    STATE.signum = None
    signal.signal(requeue_signal(), _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def armed() -> bool:
    return STATE.submitit_handler is not None


def requested() -> int | None:
    return STATE.signum


def signals() -> tuple[int, ...]:
    """The signals that ask this job to requeue (none outside a SLURM job of the launcher)."""
    return (requeue_signal(), signal.SIGTERM) if armed() else ()


def wants(signum: int) -> bool:
    """Whether ``signum`` asks for a requeue (recorded: training stops at the epoch's end);
    False for SIGTERM when SLURM is ending the job anyway (``scancel``): stop at once."""
    if not armed() or signum not in signals():
        return False
    if signum == signal.SIGTERM and job_state() not in ("RUNNING", ""):
        return False
    if STATE.signum is None:
        log.warning(
            "%s: this SLURM job checkpoints at the end of the epoch and is requeued", signal.Signals(signum).name
        )
    STATE.signum = signum
    return True


def _on_signal(signum: int, frame: Any) -> None:
    if not wants(signum):
        raise KeyboardInterrupt(f"signal {signum}")


def job_state() -> str:
    """SLURM's state of this job (``RUNNING``, ``COMPLETING`` once cancelled); empty if unknown."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return ""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().split("\n")[0]


def requeue() -> None:
    """Requeue this job through submitit (its checkpoint pickle, ``scontrol requeue``), then
    exit; raises submitit's ``UncompletedJobError`` when it will not (``max_num_timeout``
    time-outs used up). A DDP worker waits for the requeue to end it."""
    handler, signum = STATE.submitit_handler, STATE.signum
    assert handler is not None and signum is not None
    if os.environ.get("SLURM_PROCID", "0") not in ("", "0"):
        time.sleep(300)  # rank 0 requeues the whole job, which ends this task
        raise SystemExit(1)
    handler(requeue_signal(), None)  # submitit's: ends with sys.exit once requeued
