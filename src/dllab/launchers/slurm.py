"""The sweep's side of ``hydra/launcher=slurm`` (Hydra's submitit launcher, one sbatch array).

- GPUs only where the partition has them: ``trainer.accelerator=auto`` on a CPU partition
  asks for none (sbatch would refuse the job); ``gpu``/``cuda`` there is one line and exit 2.
- A failed sbatch is one line and exit 2, not a traceback.
- No lost sweep: a job that never reports a result (killed, out of memory, timed out for good,
  cancelled) is recorded as failed with SLURM's state in its metrics.json, the other jobs
  finish, and the summary is written.
The job's side (pre-emption, time-outs, requeue) is :mod:`dllab.runs.requeue`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from dllab.results import COMPLETED, CONFIG_ERROR, DIVERGED, FAILED, PRUNED, write_json

log = logging.getLogger("dllab.sweeps")

# sacct states of a job that has ended (PREEMPTED only once it stays so: a requeue follows it)
ENDED = ("FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "COMPLETED")
PREEMPTED_GRACE_S = 60
# statuses a job writes itself at its end; a lost job's metrics.json keeps them
FINAL_STATUSES = (COMPLETED, FAILED, DIVERGED, CONFIG_ERROR, PRUNED)
GPU_ACCELERATORS = ("gpu", "cuda")


def partition_gres(partition: str | None) -> str | None:
    """The generic resources of a partition's nodes (``sinfo %G``: ``gpu:4``, ``(null)``);
    None when sinfo cannot tell."""
    lines = sinfo("-o", "%G", *(["-p", partition] if partition else []))
    return ",".join(sorted(set(lines))) if lines else None


def sinfo(*args: str) -> list[str] | None:
    """sinfo's lines (no header); None where it cannot answer (not installed, no cluster)."""
    try:
        done = subprocess.run(["sinfo", "-h", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return None if done.returncode else [line.strip() for line in done.stdout.splitlines() if line.strip()]


def check_partition(partition: str | None) -> None:
    """A partition the cluster does not have: one line naming those it has (sbatch says
    only that the job was refused, or, when GPUs were asked for, that their gres is wrong)."""
    names = sinfo("-o", "%P")
    if partition and names:
        known = [name.rstrip("*") for name in names]
        if partition not in known:
            fail(f"hydra.launcher.partition={partition}: no such partition; choose one of {', '.join(known)}")


def gpus_for(params: dict[str, Any], accelerator: str) -> int | None:
    """``gpus_per_node`` to ask sbatch for: as configured, or none on a partition without
    GPUs (``auto`` trains on the CPU); a GPU asked for there exits with one line."""
    check_partition(params.get("partition"))
    gpus = params.get("gpus_per_node")
    if not gpus:
        return gpus
    gres = partition_gres(params.get("partition"))
    if gres is None or "gpu" in gres:
        return int(gpus)
    if str(accelerator) in GPU_ACCELERATORS:
        partition = params.get("partition") or "null (the default partition)"
        fail(
            f"hydra.launcher.partition={partition} has no GPUs (sinfo gres: {gres}); "
            "use trainer.accelerator=cpu or a GPU partition"
        )
    return None


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's ``BaseSubmititLauncher.launch`` with the GPU check, one line for a failed
    sbatch, and every job waited for (see :func:`wait`)."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from dllab.sweeps.settings import check_launcher, one_line_errors

    config: DictConfig = launcher.config
    with one_line_errors(config):
        check_launcher(config.hydra.launcher)
    params = dict(launcher.params)
    params["gpus_per_node"] = gpus_for(params, OmegaConf.select(config, "trainer.accelerator", default="auto"))
    init_keys = {"submitit_folder", "max_num_timeout"}
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params["submitit_folder"], slurm_max_num_timeout=params.get("max_num_timeout", 0)
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in init_keys and v is not None}
    )
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info("SLURM sweep dir: %s", sweep_dir)
    job_params = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):  # submitit prints sbatch's message, then raises it
            jobs = executor.map_array(launcher, *zip(*job_params, strict=True))
    except (submitit.core.utils.FailedJobError, OSError, subprocess.SubprocessError) as err:
        message = " ".join((str(err) or stderr.getvalue()).split())
        fail(f"the sweep was not submitted ({message})")
    log.info("submitted SLURM job %s (%d tasks)", jobs[0].job_id.split("_")[0], len(jobs))
    return wait(launcher, jobs, job_overrides, initial_job_idx)


def wait(launcher: Any, jobs: list[Any], job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
    """Every job's result; a job that ended without one (its SLURM state from sacct, polled
    more rarely as the sweep goes on) is recorded as failed (:func:`lost_job`) and the
    others are waited for, so that the sweep always ends with its summary."""
    results: dict[int, JobReturn] = {}
    started = time.monotonic()
    preempted_since: dict[int, float] = {}
    while len(results) < len(jobs):
        states = sacct_states([j.job_id for i, j in enumerate(jobs) if i not in results])
        for i, job in enumerate(jobs):
            if i in results:
                continue
            if job.paths.result_pickle.exists():
                try:
                    results[i] = job.results()[0]
                except Exception as err:  # the job's own error (submitit's pickle of it)
                    last = str(err).strip().splitlines()[-1:] or [type(err).__name__]
                    results[i] = lost_job(launcher, job_overrides[i], first + i, f"{job.job_id}: {last[0]}")
                continue
            state, reason = states.get(job.job_id, ("", ""))
            if state == "PREEMPTED":
                preempted_since.setdefault(i, time.monotonic())
            ended = state.split()[0] in ENDED if state else False
            stays_preempted = time.monotonic() - preempted_since.get(i, float("inf")) > PREEMPTED_GRACE_S
            if (ended or stays_preempted) and not _result_appears(job.paths.result_pickle):
                why = f"{state}" + (f" ({reason})" if reason and reason != "None" else "")
                results[i] = lost_job(launcher, job_overrides[i], first + i, f"SLURM job {job.job_id}: {why}")
        if len(results) < len(jobs):
            time.sleep(min(30.0, max(2.0, (time.monotonic() - started) / 10)))
    return [results[i] for i in range(len(jobs))]


def _result_appears(path: Path, seconds: float = 5.0) -> bool:
    """A shared file system may show the job's result a moment after sacct shows its end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.5)
    return path.exists()


def sacct_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id (``12_3``) -> (state, reason) from sacct (``CANCELLED by 0``, ``OUT_OF_MEMORY``,
    ...). Asked by array: tasks that never started share one row (``12_[3-5%2]``)."""
    if not job_ids:
        return {}
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,Reason", "-j", ",".join(arrays)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) < 3:
            continue
        row, state = parts[0], (parts[1].strip(), parts[2].strip())
        array, _, spec = row.partition("_[")
        if not spec:
            states[row] = state
            continue
        for part in spec.rstrip("]").split("%")[0].split(","):
            low, _, high = part.partition("-")
            if low.isdigit():
                for task in range(int(low), int(high or low) + 1):
                    states.setdefault(f"{array}_{task}", state)
    return states


def job_dir_of(launcher: Any, overrides: Sequence[str], idx: int) -> tuple[DictConfig, Path]:
    """A job's config and run dir, composed as Hydra does for the job."""
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config):
        config.hydra.job.num = idx
    try:
        return config, Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
    except Exception:  # a subdir that resolves only inside the job
        return config, Path(str(launcher.config.hydra.sweep.dir)) / str(idx)


def record_failed(job_dir: Path, error: str) -> None:
    """``status: failed`` and the error in the job's metrics.json, its other fields kept;
    an end the job wrote itself (completed, failed, ...) stays as it is."""
    import json

    path = job_dir / "metrics.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    if old.get("status") not in FINAL_STATUSES:
        write_json(path, {**old, "status": FAILED, "error": error, "run_dir": str(job_dir)})


def lost_job(launcher: Any, overrides: Sequence[str], idx: int, error: str) -> JobReturn:
    """A job without a result: recorded failed with SLURM's word, and the objective of a
    failed job for the sweeper (a failed JobReturn would stop Hydra's sweep)."""
    from dllab.sweeps.jobs import worst_value

    config, job_dir = job_dir_of(launcher, overrides, idx)
    record_failed(job_dir, error)
    print(f"sweep: job {idx} failed: {error}", file=sys.stderr)
    return JobReturn(
        overrides=list(overrides),
        cfg=config,
        working_dir=str(job_dir),
        task_name=str(OmegaConf.select(config, "hydra.job.name", default="train")),
        status=JobStatus.COMPLETED,  # as a job of dllab.train.run that fails returns
        _return_value=worst_value(config),
    )


def job_function(launcher: Any, base_call: Any, *args: Any) -> Any:
    """The job: Hydra's submitit job function, with pre-emption and time-outs requeued
    (:mod:`dllab.runs.requeue`) and a requeue refused (time-outs used up) recorded failed."""
    from dllab.runs import requeue

    requeue.arm()
    try:
        return base_call(*args)
    except requeue.RequeueRequested:
        try:
            requeue.requeue()
        except Exception as err:  # submitit's UncompletedJobError, or scontrol failed
            job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", ""))
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            with contextlib.suppress(Exception):
                record_failed(
                    job_dir_of(launcher, args[0], args[2])[1], f"SLURM job {job}{'_' + task if task else ''}: {err}"
                )
            raise
    return None
