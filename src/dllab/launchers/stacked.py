"""``hydra/launcher=stacked``: a multirun's jobs trained as stacks, one stack after another.

First every job's config is checked and its model built as its solo run would build it
(:func:`dllab.stacked.group.build_job`), with the job's Hydra config current, as Hydra's
``run_job`` would set it. Once its stack has trained, each job goes through ``run_job``, so
its dir, ``.hydra/`` files, ``train.log`` and return value are a basic-launcher job's, with a
task that writes its run dir (:func:`dllab.stacked.outputs.write_run`) and returns its
objective. Jobs whose configs differ only in :data:`~dllab.stacked.group.STACKED_KEYS` form
one stack, at most ``max_stack`` models; a job that cannot stack, or is alone in its group,
runs as an ordinary ``dllab-train`` job.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from dllab import compat, run_dirs
from dllab.sweeps import settings

log = logging.getLogger(__name__)


class Prepared:
    """Phase one's verdict on a job: its built model, or why it trains alone."""

    def __init__(self, job: Any = None, reason: str | None = None, key: str | None = None) -> None:
        self.job, self.reason, self.key = job, reason, key


def prepare(cfg: DictConfig, shared: dict[str, Any] | None = None) -> Prepared:
    """Check a job's config and build its model, seeded, as its solo run would (``shared``: the
    sweep's DataModules by data config); any problem (a bad config included) leaves the job to
    an ordinary run, which reports it as such."""
    import torch

    from dllab.checks import check_config, check_targets
    from dllab.runs.build import quiet_library_logs
    from dllab.stacked.group import build_job, stack_key, unstackable_reason
    from dllab.sweeps.jobs import job_threads

    try:
        check_config(cfg)
        check_targets(cfg)
        reason = unstackable_reason(cfg)
        if reason is not None:
            return Prepared(reason=reason)
        quiet_library_logs(bool(cfg.get("verbose")))
        threads = job_threads(cfg)
        if threads:
            torch.set_num_threads(threads)
        job = build_job(cfg, shared)  # resolves optimized_metric: auto, which monitors interpolate
        OmegaConf.resolve(job.cfg)  # this job's paths, while its Hydra config is the current one
        return Prepared(job=job, key=stack_key(job.cfg))
    except Exception as err:  # the solo run reports it, with its status
        return Prepared(reason=f"{type(err).__name__}: {err}")


def job_config(sweep_config: DictConfig) -> DictConfig:
    """A job's task config as Hydra's ``run_job`` hands it to the task function (its output
    dir set, its Hydra config the current one), without making its dir or writing its files:
    those are made once, when the job is written."""
    output_dir = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir")))
    output_dir /= str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(output_dir.absolute())
    compat.set_hydra_config(sweep_config)
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def stacks(prepared: Sequence[Prepared], max_stack: int) -> tuple[list[list[int]], list[int]]:
    """(stacks of job positions, positions that run alone), stacks in order of their first job."""
    groups: dict[str, list[int]] = {}
    alone = []
    for position, item in enumerate(prepared):
        if item.job is None or item.key is None:
            alone.append(position)
        else:
            groups.setdefault(item.key, []).append(position)
    chunks = []
    for members in groups.values():
        for start in range(0, len(members), max_stack):
            chunk = members[start : start + max_stack]
            if len(chunk) == 1:
                alone.append(chunk[0])
                prepared[chunk[0]].reason = prepared[chunk[0]].reason or "no other job of the sweep stacks with it"
            else:
                chunks.append(chunk)
    return chunks, sorted(alone)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """The launcher's ``launch``: prepare every job, train each stack, write every job."""
    setup_globals()
    config, context, task = launcher.config, launcher.hydra_context, launcher.task_function
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    max_stack = settings.max_stack(config.hydra.launcher)  # one line and exit 2 when bad
    log.info(f"Launching {len(job_overrides)} jobs, stacked where they can be")

    sweep_configs = []
    for position, overrides in enumerate(job_overrides):
        idx = initial_job_idx + position
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        sweep_configs.append(sweep_config)

    def run(position: int, function: Callable[[DictConfig], Any]) -> JobReturn:
        ret = run_job(
            hydra_context=context,
            task_function=function,
            config=sweep_configs[position],
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        # a stacked job's second pass finds the dir its start made: that is no other run's, and
        # must not make the next job (one that runs alone) refuse its own new dir
        run_dirs.TAKEN.clear()
        return ret

    sweep_hydra = compat.hydra_config_state()
    try:
        shared: dict[str, Any] = {}  # one DataModule per distinct data config
        prepared = [prepare(job_config(sweep_config), shared) for sweep_config in sweep_configs]
        shared.clear()  # each job holds its own reference, dropped once it is written
    finally:  # the sweep's own Hydra config again, as run_job leaves it
        compat.restore_hydra_config(sweep_hydra)
    chunks, alone = stacks(prepared, max_stack)
    returns: dict[int, JobReturn] = {}
    try:
        for chunk in chunks:
            returns |= train_stack(chunk, [prepared[p].job for p in chunk], run, initial_job_idx, task)
            for position in chunk:
                prepared[position].job = None  # written: its model and data are no longer needed
        for position in alone:
            reason = prepared[position].reason
            if reason:
                log.info(f"#{initial_job_idx + position} runs alone: {reason}")
            returns[position] = run(position, task)
    except KeyboardInterrupt:
        interrupted_sweep(Path(str(config.hydra.sweep.dir)), sweep_configs)
        raise
    return [returns[p] for p in range(len(sweep_configs))]


def interrupted_sweep(sweep_dir: Path, sweep_configs: Sequence[DictConfig]) -> None:
    """An interrupted sweep's summary of what it has, and the commands that finish it: each
    job with a dir goes on with ``resume=`` (from its checkpoint, or from its start), each job
    not started runs into its own dir of the sweep."""
    import shlex

    from dllab.results import INTERRUPTED
    from dllab.sweeps.summary import read_metrics, write_summary
    from dllab.sweeps.summary import report as summary_report

    commands = []
    for sweep_config in sweep_configs:
        job_dir = sweep_dir.absolute() / str(sweep_config.hydra.job.num)
        try:
            status = read_metrics(job_dir).get("status")
        except ValueError:  # no metrics.json (killed or never started) or a broken one
            status = None
        if status not in (None, INTERRUPTED):  # it ended, and would end so again
            continue
        if (job_dir / "config.yaml").is_file():
            commands.append(f"dllab-train resume={shlex.quote(str(job_dir))}")
        else:
            overrides = [shlex.quote(str(o)) for o in sweep_config.hydra.overrides.task]
            commands.append(" ".join(["dllab-train", f"hydra.run.dir={shlex.quote(str(job_dir))}", *overrides]))
    try:
        result = write_summary(sweep_dir)
        print("\n" + summary_report(result, sweep_dir), file=sys.stderr)
    except (FileNotFoundError, OSError) as err:
        print(f"sweep summary: {err}", file=sys.stderr)
    if commands:
        print(f"finish its {len(commands)} unfinished jobs with (one command per line):", file=sys.stderr)
        print("\n".join(commands), file=sys.stderr)


def train_stack(
    chunk: list[int],
    jobs: list[Any],
    run: Callable[[int, Callable[[DictConfig], Any]], JobReturn],
    first_idx: int,
    task: Callable[[DictConfig], Any],
) -> dict[int, JobReturn]:
    """Train one stack, then write each of its jobs (also when interrupted: then every model's
    run dir says so, and the interrupt goes on to end the sweep).

    Before training, each job's dir gets its ``.hydra/`` files, ``config.yaml`` and
    ``train.log`` (a killed sweep leaves every job of the stack ``unfinished``, resumable by
    ``resume=<job dir>``); during training each model's ``last.ckpt`` (and ``best.ckpt``) is
    saved on the time budget of a solo run's; afterwards the jobs are written by as many
    processes as the sweep has cores (:func:`dllab.launchers.forked.map_forked`)."""
    from dllab.launchers.forked import map_forked
    from dllab.stacked.group import StackedGroup, stack_device
    from dllab.stacked.outputs import save_progress
    from dllab.sweeps.jobs import cpu_cores

    names = ", ".join(f"#{first_idx + p}" for p in chunk)
    log.info(f"stack of {len(chunk)} models: {names}")
    started = time.perf_counter()
    try:
        group = StackedGroup(jobs, device=stack_device(jobs[0].cfg) or "cpu")
    except Exception as err:  # a stack that cannot be built: its jobs run alone, as usual
        log.info(f"these jobs run alone: the stack could not be built ({type(err).__name__}: {err})")
        return {position: run(position, task) for position in chunk}
    for position, job in zip(chunk, jobs, strict=True):
        run(position, functools.partial(begin, job, f"{len(chunk)} models ({names})"))
    every = picture_interval(jobs[0].cfg)
    interrupted: BaseException | None = None

    def keep(models: list[int]) -> None:
        for i in models:
            save_progress(jobs[i], group.results[i])

    try:
        results = group.fit(snapshot_every=every, on_keep=keep)
    except KeyboardInterrupt as err:
        interrupted = err
        results = group.results
    seconds = round(time.perf_counter() - started, 3)
    stack: dict[str, Any] = {"models": len(chunk), "jobs": [first_idx + p for p in chunk], "fit_seconds": seconds}
    stack["memory_mib"] = round(group.tensor_bytes() / 2**20, 2)
    log.info(f"stack of {len(chunk)} models trained in {seconds:.1f} s ({stack['memory_mib']:.1f} MiB of tensors)")
    by_position = dict(zip(chunk, zip(jobs, results, strict=True), strict=True))

    def write(position: int) -> JobReturn:
        job, result = by_position[position]
        return run(position, functools.partial(report, job, result, stack))

    returns = map_forked(write, chunk, workers=1 if interrupted is not None else cpu_cores())
    if interrupted is not None:
        from dllab.runs import exits

        done = min((r.epochs for r in results), default=0)
        print(f"\ninterrupted: the stack of {len(chunk)} models after epoch {done}", file=sys.stderr)
        exits.enter_phase("reported")  # dllab-train's exit says nothing more
        raise interrupted
    return returns


def begin(job: Any, stack: str, cfg: DictConfig | None = None) -> None:
    """A stacked job's start, run as its Hydra job: Hydra writes its dir, ``.hydra/`` files and
    starts ``train.log``; its ``config.yaml`` is saved, so ``resume=<job dir>`` can go on from
    whatever the job has when the sweep is killed."""
    from dllab.results import save_config

    save_config(job.cfg, Path(job.cfg.paths.output_dir), show=False)
    logging.getLogger("dllab.details").info(f"training in a stack of {stack}")


def picture_interval(cfg: DictConfig) -> int | None:
    """Every how many epochs the pictures drawn during fit need the weights (None: never)."""
    from dllab.runs.config import enabled

    plots = cfg.get("plots")
    if not plots or not enabled(plots) or not cfg.get("logger"):
        return None
    return int(plots.get("every_n_epochs") or 0) or None


def report(job: Any, result: Any, stack: dict[str, Any], cfg: DictConfig | None = None) -> float:
    """Phase two of a stacked job: its run dir, its result lines, its objective."""
    from dllab.results import result_lines
    from dllab.stacked.outputs import write_run
    from dllab.sweeps.jobs import worst_value

    fields = write_run(job, result, stack)
    status = fields.pop("status")
    if "error" in fields:
        log.error(f"error: {fields['error']}")
    else:
        for line in result_lines(fields | {"status": status}, tensorboard=False):
            logging.getLogger("dllab.train").info(line)
    objective = fields.get("objective")
    if objective is None or (isinstance(objective, float) and math.isnan(objective)):
        return worst_value(job.cfg)
    return float(objective)
