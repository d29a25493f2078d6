"""``hydra/launcher=stacked`` (conf/hydra/launcher/stacked.yaml): a multirun's jobs trained as
stacks of models in this process (:mod:`dllab.launchers.stacked`).

Imports nothing heavy: Hydra scans its plugins at every start.
"""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StackedLauncher(Launcher):
    def __init__(self, max_stack: int = 64) -> None:
        self.max_stack = max_stack
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from dllab.launchers.stacked import launch

        return launch(self, job_overrides, initial_job_idx)
