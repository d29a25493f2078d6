"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): Hydra's submitit SLURM launcher
with GPUs only where the partition has them, no sweep lost to a job that never reports, and
pre-emption and time-outs requeued from the job's checkpoint (:mod:`dllab.launchers.slurm`).

Imports nothing heavy: Hydra scans its plugins at every start.
"""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class DllabSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from dllab.launchers import slurm

        return slurm.launch(self, job_overrides, initial_job_idx)

    def __call__(self, *args: Any) -> Any:  # in the SLURM job
        from dllab.launchers import slurm

        return slurm.job_function(self, super().__call__, *args)
