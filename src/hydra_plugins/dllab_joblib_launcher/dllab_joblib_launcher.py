"""``hydra/launcher=joblib`` (conf/hydra/launcher/joblib.yaml): Hydra's joblib launcher whose
worker processes end when the sweep's process does (see :class:`dllab.sweeps.jobs.EndsWithSweep`).

Imports nothing heavy: Hydra scans its plugins at every start.
"""

import os
from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.types import TaskFunction
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


class DllabJoblibLauncher(JoblibLauncher):
    task_function: TaskFunction | None

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from dllab.sweeps.jobs import EndsWithSweep

        task = self.task_function
        assert task is not None
        self.task_function = EndsWithSweep(task, os.getpid())
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            self.task_function = task
