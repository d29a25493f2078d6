"""What one job of a multirun needs to know about the sweep around it.

- its overrides, readable (TensorBoard run names, the HParams tab, the summary);
- how many torch threads it may use so that parallel jobs never oversubscribe the CPU;
- how DDP's worker processes re-enter *this job* rather than re-running the whole sweep;
- the worst objective, returned by a failed job so that a sweeper ranks it last;
- that a parallel launcher's worker process ends when the sweep's process is gone.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dllab.catalog import AUTO, DEFAULT_METRIC, metric_mode
from dllab.data.source import source_of
from dllab.errors import ConfigError
from dllab.overrides import SWEPT_KEYS_ENV, is_multirun, job_overrides, run_label, split_override

log = logging.getLogger("dllab.sweeps")

# Environment variables with which Lightning's DDP launcher marks a process as a worker.
DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "RANK")
# Lightning's own DDP worker command, kept when use_job_ddp_workers replaces it.
_LIGHTNING_DDP_COMMAND: Any = None


def swept_keys(config: DictConfig) -> list[str]:
    """Keys the sweep varies: its sweep overrides (``a=1,2``, ``choice(...)``, ...) and the
    search space of a sweeper with ``params``. Run in the process that starts the sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=None) or []]
    keys = [
        o.get_key_element().lstrip("+~")
        for o in OverridesParser.create().parse_overrides(overrides)
        if o.is_sweep_override()
    ]
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return keys + [str(k) for k in params if str(k) not in keys]


def tensorboard_version() -> str:
    """TensorBoard version dir of this run: none in a single run (events in
    ``tensorboard/``), in a multirun the values of the swept keys (``tensorboard/data=xor,
    activation=tanh``; all of the job's overrides if the sweep did not say which it varies),
    so that ``tensorboard --logdir <sweep dir>`` names each job by what differs."""
    if not is_multirun():
        return ""
    overrides = job_overrides()
    swept = [k for k in os.environ.get(SWEPT_KEYS_ENV, "").split(",") if k]
    chosen = [o for o in overrides if split_override(o)[0] in swept]
    return run_label(chosen or overrides)


OmegaConf.register_new_resolver("dllab.tb_version", tensorboard_version, replace=True)


def swept_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The keys this job's overrides set, with their resolved values, for the HParams tab
    (a config group by its chosen option: ``data: circle``)."""
    choices = HydraConfig.get().runtime.choices if is_multirun() else {}
    hparams: dict[str, Any] = {}
    for override in job_overrides():
        key, value = split_override(override)
        if "/" in key or key in choices:
            hparams[key] = choices.get(key, value)
            continue
        resolved = OmegaConf.select(cfg, key, default=value)
        if OmegaConf.is_config(resolved):
            resolved = str(OmegaConf.to_container(resolved, resolve=True))
        elif isinstance(resolved, dict | list | tuple):
            resolved = str(resolved)
        hparams[key] = "null" if resolved is None else resolved
    return hparams


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def parallel_jobs(launcher: Any, cores: int) -> int:
    """How many jobs a launcher config runs at once on this machine (1 if sequential)."""
    if launcher is None:
        return 1
    n_jobs = launcher.get("n_jobs")  # joblib: -1 is all cores, -2 all but one, ...
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def processes_per_job(trainer: DictConfig) -> int:
    """Processes one job starts: DDP on CPU starts one per device."""
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    if strategy.startswith("ddp") and str(trainer.get("accelerator")) in ("cpu", "auto") and isinstance(devices, int):
        return max(1, devices)
    return 1


def job_threads(cfg: DictConfig) -> int | None:
    """torch threads for this process: ``threads`` when set; else, in a multirun, the
    launcher's ``cpus_per_task`` (submitit) or cores // (parallel jobs × processes per job)
    (joblib), so jobs × threads never exceed the cores; else torch's default."""
    if cfg.get("threads"):
        return int(cfg.threads)
    cores = cpu_cores()
    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else None
    per_job = processes_per_job(cfg.trainer)
    if is_multirun() and launcher is not None:
        if launcher.get("cpus_per_task"):
            return int(launcher.cpus_per_task)
        return max(1, cores // (parallel_jobs(launcher, cores) * per_job))
    if per_job > 1:
        return max(1, cores // per_job)
    return None


def worst_value(cfg: DictConfig) -> float:
    """The objective a failed job returns: -inf when the metric is maximized, else +inf."""
    metric = str(cfg.get("optimized_metric", AUTO))
    if metric == AUTO:
        try:
            task = source_of(cfg.data).task
        except ConfigError:  # the failure may be the data config itself
            task = AUTO
        metric = DEFAULT_METRIC.get(task, "val/loss")  # val/loss also when only the data can tell
    return -math.inf if metric_mode(metric) == "max" else math.inf


def global_rank() -> int:
    """This process's rank (0 outside DDP); DDP workers and SLURM tasks set it in the env."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            if name == "LOCAL_RANK":
                node = int(os.environ.get("NODE_RANK", "0") or 0)
                return node * int(os.environ.get("WORLD_SIZE", "1")) + int(os.environ[name])
            return int(os.environ[name])
    return 0


def ddp_worker_command(local_rank: int) -> tuple[list[str], str]:
    """The command of a DDP worker process of this job.

    Lightning re-runs ``sys.argv`` with ``hydra.run.dir`` set; in a multirun that argv
    holds ``-m`` and every sweep value, so each worker would start the whole sweep
    again. The worker instead runs exactly this job's overrides as a single run in the
    job's own dir (no ``.hydra/`` of its own, its log in ``train_ddp_process_<rank>.log``).
    """
    hydra_cfg = HydraConfig.get()
    command = [sys.executable, "-m", "dllab.train"]
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":
            command += ["--config-dir", source.path]
    command += ["--config-name", str(hydra_cfg.job.config_name)]
    command += list(hydra_cfg.overrides.task)
    command += [
        f"hydra.run.dir='{hydra_cfg.runtime.output_dir}'",
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, hydra_cfg.runtime.cwd


def use_job_ddp_workers() -> None:
    """In a multirun, make Lightning's DDP launcher start workers with
    :func:`ddp_worker_command` (a single run keeps Lightning's own, which is right)."""
    from dllab import compat

    global _LIGHTNING_DDP_COMMAND
    if _LIGHTNING_DDP_COMMAND is None:
        _LIGHTNING_DDP_COMMAND = compat.ddp_worker_command()
    original = _LIGHTNING_DDP_COMMAND

    def command(local_rank: int) -> tuple[Sequence[str], str]:
        return ddp_worker_command(local_rank) if is_multirun() else original(local_rank)

    compat.set_ddp_worker_command(command)


@contextmanager
def fresh_distributed_state() -> Iterator[None]:
    """Leave no DDP state behind a job: the next job of a sequential multirun must start
    its own workers (Lightning treats a set LOCAL_RANK as "workers exist already")."""
    saved = {name: os.environ.get(name) for name in DDP_ENV}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "torch.distributed" in sys.modules:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


# Set while no job runs in this process; the watchdog of end_with_sweep waits for it.
_NO_JOB = threading.Event()
_NO_JOB.set()
_WATCHED_SWEEP: int | None = None


class EndsWithSweep:
    """A sweep's task function as a joblib worker runs it: the worker ends with the sweep.

    loky's workers outlive their parent: after a ``kill -9`` of the sweep a job trains on to
    its end and the worker then waits minutes for more work, holding its memory. Picklable
    (the worker gets a copy), so the launcher wraps the task function it dispatches.
    """

    def __init__(self, task: Callable[[DictConfig], Any], sweep_pid: int) -> None:
        self.task, self.sweep_pid = task, sweep_pid

    def __call__(self, cfg: DictConfig) -> Any:
        end_with_sweep(self.sweep_pid)
        _NO_JOB.clear()
        try:
            return self.task(cfg)
        finally:
            _NO_JOB.set()


def end_with_sweep(sweep_pid: int, poll_seconds: float = 1.0, grace_seconds: float = 10.0) -> None:
    """Watch, from a daemon thread (one per process), that the sweep's process is still there:
    still this process's parent (a killed parent's children are re-parented at once, while
    its pid may linger as a zombie), or, in a process that is not its child, still alive.
    Once it is gone, stop the running job as Ctrl-C would (SIGTERM: dllab's GracefulInterrupt
    records it as interrupted, with its resume command; a process without that handler ends
    at once) and end the process when the job has returned, or after ``grace_seconds``."""
    global _WATCHED_SWEEP
    if sweep_pid == _WATCHED_SWEEP or os.getpid() == sweep_pid:
        return
    _WATCHED_SWEEP = sweep_pid
    child = os.getppid() == sweep_pid

    def watch() -> None:
        while (os.getppid() == sweep_pid) if child else process_alive(sweep_pid):
            time.sleep(poll_seconds)
        log.warning("the sweep's process %d is gone: this job stops", sweep_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        _NO_JOB.wait(grace_seconds)
        os._exit(1)  # not sys.exit: loky's worker loop would wait on for more jobs

    threading.Thread(target=watch, name="dllab-end-with-sweep", daemon=True).start()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def devices_count(devices: Any) -> int:
    """trainer.devices as a process count for SLURM (``auto``/-1 counts as 1)."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, list | tuple):
        return len(devices)
    return 1


def slurm_gpus(accelerator: str, devices: Any) -> int:
    return 0 if str(accelerator) == "cpu" else devices_count(devices)


OmegaConf.register_new_resolver("dllab.devices_count", devices_count, replace=True)
OmegaConf.register_new_resolver("dllab.slurm_gpus", slurm_gpus, replace=True)
OmegaConf.register_new_resolver("dllab.cpu_cores", cpu_cores, replace=True)


def sweep_task(task_name: str, *, _root_: DictConfig) -> str:
    """The task dir of a sweep: ``task_name``, or, when the sweep varies ``data`` or
    ``task_name`` (seen in the sweep's own overrides, ``data=circle,xor``), their plain
    values joined (``circle_xor``). Resolved once, in the process that starts the sweep
    (see :class:`dllab.sweeps.summary.SweepSummaryCallback`)."""
    for override in OmegaConf.select(_root_, "hydra.overrides.task", default=None) or []:
        key, value = split_override(override)
        if key in ("data", "task_name") and ("," in value or "(" in value):
            inner = value.split("(", 1)[-1].rstrip(")")
            names = [v.strip() for v in inner.split(",") if v.strip() and "=" not in v]
            return re.sub(r"[^\w\-]", "_", "_".join(names))[:60] or "sweep"
    return task_name


OmegaConf.register_new_resolver("dllab.sweep_task", sweep_task, replace=True)
