"""``dllab-train``: the command line of one run (``-m``: of a sweep's jobs).

:func:`run` is one job: check the config, build, fit and test, write the records (the
library that does it is :mod:`dllab.runs`); a failure or a signal ends it as
:mod:`dllab.runs.exits` decides. It returns the optimized metric, for sweepers.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from dllab.checks import check_config
from dllab.errors import ConfigError, DivergedError
from dllab.hydra_help import install as install_help
from dllab.overrides import is_multirun
from dllab.results import CONFIG_ERROR, DIVERGED, FAILED, result_lines
from dllab.run_dirs import PREEXISTING, TAKEN
from dllab.runs import exits, requeue
from dllab.runs.config import config_dir, verbose_errors
from dllab.runs.fit import train
from dllab.runs.resume import resume_config
from dllab.sweeps import jobs as sweep_jobs

log = logging.getLogger("dllab.train")


def run(cfg: DictConfig) -> float | None:
    """Check, train and record one run; errors become one line and a status in metrics.json."""
    run_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    exits.enter_phase("start-up")
    restarted = is_multirun() and requeue.restarts() > 0 and (run_dir / "config.yaml").is_file()
    if restarted:  # a requeued SLURM job: its own dir, from its own checkpoint
        with open_dict(cfg):
            cfg.resume = str(run_dir)
    elif TAKEN and not cfg.get("resume"):
        print(
            f"error: hydra.run.dir={TAKEN[-1]}: holds another run; give a new dir, "
            f"or resume={TAKEN[-1]} to continue that run",
            file=sys.stderr,
        )
        if is_multirun():
            return sweep_jobs.worst_value(cfg)  # the other run's records stay untouched
        sys.exit(2)
    try:
        if cfg.get("resume"):
            cfg = resume_config(cfg, requeued=restarted)
        check_config(cfg)
        with sweep_jobs.fresh_distributed_state():
            result = train(cfg)
    except KeyboardInterrupt:
        return exits.interrupted(cfg, run_dir, wall=time.perf_counter() - started)
    except ConfigError as err:
        return exits.fail(cfg, run_dir, CONFIG_ERROR, err, exit_code=2)
    except DivergedError as err:
        return exits.fail(cfg, run_dir, DIVERGED, err, exit_code=1, wall=time.perf_counter() - started)
    except Exception as err:
        if exits.signal_received():  # the signal broke an import or a library call: the signal is the cause
            return exits.interrupted(cfg, run_dir, wall=time.perf_counter() - started)
        if verbose_errors(cfg):
            raise
        return exits.fail(cfg, run_dir, FAILED, err, exit_code=1, wall=time.perf_counter() - started)
    if sweep_jobs.global_rank() != 0:  # a DDP worker: rank 0 records the run
        return result["objective"]
    tensorboard = not is_multirun() and (run_dir / "tensorboard").is_dir()  # not with the logger off
    for line in result_lines(result, tensorboard=tensorboard):
        log.info(line)  # the terminal and train.log
    if result["objective"] is None and is_multirun():
        return sweep_jobs.worst_value(cfg)
    return result["objective"]


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run(cfg)


def main() -> None:
    """Console entry point of ``dllab-train`` (also ``python -m dllab.train``)."""
    exits.catch_signals()
    install_help()  # --help lists the config groups in one pass, without conf/_base
    try:
        _hydra_main()
    except KeyboardInterrupt as err:
        signum = exits.signal_received() or exits.signal_of(err) or signal.SIGINT
        if exits.phase() == "reported":
            pass  # the run said how it stopped
        elif is_multirun() or {"-m", "--multirun"} & set(sys.argv[1:]):  # its jobs ran in other processes (joblib)
            print(f"interrupted ({signal.Signals(signum).name}): the sweep stops", file=sys.stderr)
        else:  # a signal while Hydra composed the config: no run yet
            if HydraConfig.initialized() and not PREEXISTING:  # never a resume's dir
                with contextlib.suppress(Exception):  # the run dir may not be resolved yet
                    exits.remove_if_made_by_hydra(Path(HydraConfig.get().runtime.output_dir), OmegaConf.create({}))
            print(f"interrupted ({signal.Signals(signum).name}) before the run started; nothing was written")
        sys.exit(128 + signum)  # a signal's exit code, in every phase (a scheduler tells pre-emption from a crash)
    except SystemExit as err:
        received = exits.signal_received()
        if err.code == 1 and received:  # Hydra's report of an error the signal caused inside a library call
            sys.exit(128 + received)
        raise
    summary = sys.modules.get("dllab.sweeps.summary")  # loaded by a multirun's callback, else not needed
    if summary is not None and summary.LAST_SWEEP.jobs and summary.LAST_SWEEP.failed == summary.LAST_SWEEP.jobs:
        sys.exit(1)  # a multirun whose every job failed


if __name__ == "__main__":
    main()
