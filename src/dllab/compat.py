"""Every private Lightning, torch, Hydra and Optuna API dllab uses, in one place.

dllab's fast paths reach under Lightning's public API in a few spots: its epoch loop counts
optimizer steps itself, its checkpoint callbacks snapshot checkpoints in memory, its
TensorBoard logger writes events in batches, and sweeps start DDP workers their own way.
The stacked optimizer keeps torch's ``step`` dtype and copies buffers with torch's foreach
kernel; ``--help`` lists config groups through Hydra's internal ``Hydra`` class, a sweep's
summary expands a grid with Hydra's ``BasicSweeper``, and the stacked launcher sets Hydra's
config singleton as Hydra's ``run_job`` does; the Optuna sweeper records trial attributes
and heartbeats on a study's storage itself. pyproject.toml pins ``lightning`` to the minor
range these calls were tested with (constraints.txt pins torch 2.13.0, hydra-core 1.3.8 and
optuna 5.0.0, the versions the others were checked with); a test (``tests/test_compat.py``)
checks each of them against the installed versions, so an upgrade that moves one fails there,
by name, rather than deep inside a run. Nothing here imports torch, Lightning or Hydra at
module level: torch-free callers (Hydra's ``--help``) import this module too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: torch-free callers (Hydra's --help) import this module too
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from omegaconf import DictConfig

# The Lightning minor versions dllab is tested with (pyproject.toml pins the same range).
TESTED_LIGHTNING = (2, 6)

# Private ModelCheckpoint methods dllab.training.checkpointing.BestCheckpoint overrides.
MODEL_CHECKPOINT_OVERRIDES = (
    "_should_save_on_train_epoch_end",
    "_monitor_candidates",
    "_save_checkpoint",
    "_remove_checkpoint",
    "_update_best_and_save",
)


def add_optimizer_steps(trainer: L.Trainer, steps: int) -> None:
    """Count optimizer steps taken outside Lightning's optimizer wrapper: ``trainer.global_step``
    (and with it ``max_steps``, checkpoints and loggers) follows this counter."""
    trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.increment_by(steps)


def dump_checkpoint(trainer: L.Trainer, weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint dict ``trainer.save_checkpoint`` would write, without writing it and
    without its barrier (which DDP ranks that are already stopping would never reach)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=weights_only)


def write_model_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    """ModelCheckpoint's own save of ``filepath`` (the file, its bookkeeping, the loggers' notice)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    ModelCheckpoint._save_checkpoint(callback, trainer, filepath)


def remove_model_checkpoint(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    ModelCheckpoint._remove_checkpoint(callback, trainer, filepath)


def mark_checkpoint_saved(callback: ModelCheckpoint, trainer: L.Trainer, filepath: str) -> None:
    """ModelCheckpoint's record that ``filepath`` holds the state of this step (a snapshot
    counts as saved: the same step is not checked again, ``exception.ckpt`` is not needed)."""
    callback._last_global_step_saved = trainer.global_step
    callback._last_checkpoint_saved = filepath


def save_on_train_epoch_end_setting(callback: ModelCheckpoint) -> bool | None:
    """The ``save_on_train_epoch_end`` the callback was made with (None: Lightning decides)."""
    return callback._save_on_train_epoch_end


def should_save_on_exception(callback: ModelCheckpoint, trainer: L.Trainer) -> bool:
    return callback._should_save_on_exception(trainer)


def is_overridden(method_name: str, instance: Any, parent: type) -> bool:
    """Whether ``instance``'s class overrides ``parent``'s ``method_name`` (Lightning's helper)."""
    from lightning.pytorch.utilities.model_helpers import is_overridden as lightning_is_overridden

    return lightning_is_overridden(method_name, instance, parent)


def checkpoints_within_epochs(callback: ModelCheckpoint) -> bool:
    """Whether a ModelCheckpoint saves by training steps or time (``every_n_train_steps``,
    ``train_time_interval``), i.e. inside an epoch, in its ``on_train_batch_end``."""
    return bool(callback._every_n_train_steps) or callback._train_time_interval is not None


def tensorboard_file_writer(logger: Any) -> Any:
    """The event-file writer of a Lightning TensorBoardLogger (torch's ``SummaryWriter``'s)."""
    return logger.experiment._get_file_writer()


def logger_prefix(logger: Any) -> str:
    return logger._prefix


def ddp_worker_command() -> Callable[[int], tuple[Sequence[str], str]]:
    """The function Lightning's DDP launcher calls for a worker's command under Hydra."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    return subprocess_script._hydra_subprocess_cmd


def set_ddp_worker_command(command: Callable[[int], tuple[Sequence[str], str]]) -> None:
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = command  # type: ignore[assignment]


def forget_sigterm(trainer: L.Trainer) -> None:
    """Lightning's own SIGTERM handler (which runs before dllab's) marks the trainer to stop at
    the end of the epoch with a ``SystemExit``; a SLURM job that requeues stops its own way."""
    trainer._signal_connector.received_sigterm = False


def lr_monitor_name(monitor: Any, optimizer: Any) -> str:
    """The scalar name LearningRateMonitor logs ``optimizer``'s learning rate under (``lr-Adam``)."""
    from collections import defaultdict

    names, _ = monitor._find_names_from_optimizers([optimizer], [], defaultdict(int))
    return str(names[0][0])


def early_stopping_decision(callback: Any, current: Any) -> tuple[bool, str | None]:
    """EarlyStopping's own verdict on one monitored value (its counters advance), without a
    Trainer: what a stacked sweep asks for each of its models after an epoch."""
    return callback._evaluate_stopping_criteria(current)


def loops_state(epochs: int, steps: int, val_batches: int, in_validation: bool = False) -> dict[str, Any]:
    """Lightning's ``loops`` entry of a dllab checkpoint (one Trainer batch per epoch, manual
    optimization), as ``trainer.save_checkpoint`` writes it at the end of epoch ``epochs``
    (1-based), or right after that epoch's validation (``in_validation``: the epoch not yet
    counted done). A stacked sweep writes its models' checkpoints with it; a test compares it
    with a solo run's checkpoint."""

    def progress(done: int, current: int | None = None, processed: bool = True, started: bool = True) -> dict:
        def counts(n: int) -> dict[str, int]:
            c = {"completed": n, "ready": n}
            if started:
                c["started"] = n
            if processed:
                c["processed"] = n
            return c

        return {"current": counts(done if current is None else current), "total": counts(done)}

    def batches(done: int, last: bool) -> dict[str, Any]:
        return {**progress(done, min(done, 1)), "is_last_batch": last}

    def none_run() -> dict[str, Any]:
        return progress(0, 0, processed=False, started=False)

    epoch_progress = progress(epochs)
    if in_validation:  # the epoch has started and is being processed, not yet complete
        for part in ("current", "total"):
            epoch_progress[part] = {
                "completed": epochs - 1,
                "processed": epochs - 1,
                "ready": epochs,
                "started": epochs,
            }
    zero_grad = progress(0, 0, processed=False)
    return {
        "fit_loop": {
            "state_dict": {},
            "epoch_loop.state_dict": {"_batches_that_stepped": epochs - 1 if in_validation else epochs},
            "epoch_loop.batch_progress": batches(epochs, True),
            "epoch_loop.scheduler_progress": none_run(),
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": none_run(), "zero_grad": zero_grad}
            },
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": progress(steps, processed=False, started=False),
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": batches(val_batches, True) if val_batches else batches(0, False),
            "epoch_progress": epoch_progress,
        },
        "validate_loop": {"state_dict": {}, "batch_progress": batches(0, False)},
        "test_loop": {"state_dict": {}, "batch_progress": batches(0, False)},
        "predict_loop": {"state_dict": {}, "batch_progress": progress(0, 0)},
    }


# -- torch (checked with torch 2.13.0) ---------------------------------------------------------


def copy_state_dict_metadata(source: Any, target: Any) -> None:
    """Carry a module ``state_dict``'s ``_metadata`` (torch's per-module versions, read by
    ``load_state_dict``) over to a copy of it; private in torch 2.13.0, set by ``Module.state_dict``."""
    if hasattr(source, "_metadata"):
        target._metadata = source._metadata


def scalar_dtype(is_fused: bool | None = None) -> torch.dtype:
    """The dtype torch's optimizers give their ``step`` tensors (``torch.optim.optimizer.
    _get_scalar_dtype``, private): a stacked model's state must match its solo optimizer's."""
    from torch.optim.optimizer import _get_scalar_dtype

    return _get_scalar_dtype(is_fused=is_fused)


def foreach_copy_(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``targets[i].copy_(sources[i])`` for every i in one kernel (``torch._foreach_copy_``,
    private, the copy torch's own foreach optimizers use)."""
    import torch

    torch._foreach_copy_(targets, sources)


# -- Hydra (checked with hydra-core 1.3.8) -----------------------------------------------------


def hydra_group_listing() -> Callable[..., str]:
    """``Hydra.format_config_groups(self, predicate, compact=True)``: the method of Hydra's
    internal ``hydra._internal.hydra.Hydra`` class that fills ``--help``'s group lists."""
    from hydra._internal.hydra import Hydra

    return Hydra.format_config_groups


def set_hydra_group_listing(listing: Callable[..., str]) -> None:
    """Replace :func:`hydra_group_listing` (dllab.hydra_help's faster listing)."""
    from hydra._internal.hydra import Hydra

    Hydra.format_config_groups = listing  # type: ignore[method-assign]


def basic_sweeper_grid(overrides: Sequence[str]) -> list[list[str]]:
    """The jobs Hydra's BasicSweeper makes of a grid's overrides, in its order, each job's
    overrides as strings (``BasicSweeper.split_arguments`` of ``hydra._internal``)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    (grid,) = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for job in grid]


def hydra_config_state() -> Any:
    """What Hydra's config singleton holds now (``HydraConfig.instance().cfg``, None when unset),
    to give back to :func:`restore_hydra_config`."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.instance().cfg


def set_hydra_config(config: DictConfig) -> None:
    """Make ``config``'s ``hydra`` node the current Hydra config, as Hydra's ``run_job`` does
    for each job (``HydraConfig.instance().set_config``: Hydra's own, not meant for callers)."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(config)


def restore_hydra_config(state: Any) -> None:
    """Put back a :func:`hydra_config_state` (the singleton's ``cfg`` attribute, written)."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = state


def hydra_job_overrides(loader: Any, config_name: str | None, overrides: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """A job's overrides as Hydra's config loader parses them, and those of them that are
    config overrides (applied to the composed config) rather than choices of the defaults list:
    the split of ``hydra._internal.defaults_list.Overrides`` over the loader's caching repository
    (``ConfigLoaderImpl._parse_overrides_and_create_caching_repo``)."""
    from hydra._internal.defaults_list import Overrides
    from hydra.types import RunMode

    parsed, repo = loader._parse_overrides_and_create_caching_repo(config_name, list(overrides))
    loader.validate_sweep_overrides_legal(overrides=parsed, run_mode=RunMode.RUN, from_shell=True)
    return parsed, Overrides(repo, parsed).config_overrides


def hydra_apply_overrides(overrides: Sequence[Any], cfg: DictConfig) -> None:
    """Apply parsed config overrides to a composed config, as Hydra's loader does after
    composing (``ConfigLoaderImpl._apply_overrides_to_config``)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


def hydra_overrides_dirname(overrides: Sequence[Any], cfg: DictConfig) -> str:
    """``hydra.job.override_dirname`` of these parsed task overrides (Hydra's loader's
    ``get_overrides_dirname`` with the job's own separators and excluded keys)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    settings = cfg.hydra.job.config.override_dirname
    return str(
        get_overrides_dirname(
            overrides=list(overrides),
            kv_sep=settings.kv_sep,
            item_sep=settings.item_sep,
            exclude_keys=settings.exclude_keys,
        )
    )


def hydra_sweep_config_loader() -> Callable[..., DictConfig]:
    """``ConfigLoaderImpl.load_sweep_config``, the method Hydra's sweepers and launchers call to
    compose each job's config (``dllab.sweeps.compose`` puts a faster one in its place)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    return ConfigLoaderImpl.load_sweep_config


def set_hydra_sweep_config_loader(load: Callable[..., DictConfig]) -> None:
    """Replace :func:`hydra_sweep_config_loader` for every config loader of this process."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl.load_sweep_config = load  # type: ignore[method-assign]


# -- Optuna (checked with optuna 5.0.0) ------------------------------------------------------


def optuna_storage(study: Any) -> Any:
    """The storage a study reads and writes (``Study._storage``): dllab's sweeper records
    trial attributes and heartbeats on it directly, as Optuna's ``Study.optimize`` does."""
    return study._storage


def optuna_trial_id(trial: Any) -> int:
    """A trial's id in its storage (``Trial._trial_id``, ``FrozenTrial._trial_id``), which
    the storage's calls take; ``trial.number`` is its number within the study."""
    return int(trial._trial_id)


def optuna_heartbeat_interval(storage: Any) -> int | None:
    """The storage's heartbeat interval; None where it records none (journal, in-memory):
    the heartbeat interface ``optuna.storages._heartbeat.BaseHeartbeat`` is private."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None


def optuna_stale_trial_ids(study: Any) -> list[int]:
    """The ids of the study's running trials whose heartbeat stopped for the grace period
    (``BaseHeartbeat._get_stale_trial_ids``; ``optuna.storages.fail_stale_trials`` fails them
    too, where dllab first records why)."""
    return list(study._storage._get_stale_trial_ids(study._study_id))
