"""A group of sweep jobs trained as one stack: each model as its solo run would train it.

A job's config decides which group it joins (:func:`stack_key`: the config without the keys
of :data:`STACKED_KEYS`) and whether it can stack at all (:func:`unstackable_reason`). Each
model is built as ``dllab-train`` builds it (:func:`dllab.runs.build.seeded_data_and_module`:
seed, data split, initial weights, and the global generator's state that its dropout draws
from next). Their networks become one (:func:`~dllab.stacked.functional.stack_networks`):
dllab's MLPs the exact :class:`~dllab.stacked.network.StackedMLP`, any other networks of one
architecture a :class:`~dllab.stacked.functional.FunctionalStack` (torch.func, within 1e-5 of
the solo runs), or a ValueError that says why they cannot stack. Then :class:`StackedGroup`
trains the group epoch by epoch: every model on its own split in its own order, stepped by
:class:`~dllab.stacked.optim.StackedOptimizer` with its own hyperparameters, validated on its
own split, with its own best epoch (the rules of
:class:`~dllab.training.checkpointing.BestCheckpoint`), early stopping (Lightning's
``EarlyStopping``) and divergence. A model that stops leaves the optimizer's active set; the
others go on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from dllab import compat
from dllab.results import COMPLETED, DIVERGED, INTERRUPTED, PRUNED
from dllab.runs.config import enabled
from dllab.stacked.functional import stack_networks
from dllab.stacked.optim import SUPPORTED, StackedOptimizer
from dllab.training.rules import BestRule, diverged_message, epoch_loss, micro_batches
from dllab.training.trainer_checks import processes

# Keys whose values may differ between the models of one stack: each model keeps its own. So
# does every optimizer hyperparameter (all ``optimizer.*`` but ``_target_``): the stacked
# optimizer steps each model with its own param group.
STACKED_KEYS = (
    "seed",
    "data.seed",
    "model.dropout",
    "loss.label_smoothing",
    "callbacks.early_stopping.patience",
    "callbacks.early_stopping.min_delta",
    "callbacks.optuna_pruning.trial_id",  # each trial of an Optuna search reports to its own
)
# Keys that never change what a model learns: where its files go, how it reports.
# (``plots`` does not change it either, but the pictures drawn during fit need the weights of
# their epochs: jobs that differ in it, or in which loggers they have, stack apart.)
OUTPUT_KEYS = ("paths", "hydra", "print_config", "verbose", "task_name", "threads", "logger")
# Callbacks a stack does itself, per model (best and last checkpoint, early stopping, Optuna
# pruning), or that only report (progress, summaries, learning rate), by class: any other class,
# a subclass of one of these included, needs the hooks of a solo run's Trainer.
STACKED_CALLBACKS = (
    "dllab.training.checkpointing.BestCheckpoint",
    "dllab.training.checkpointing.LastCheckpoint",
    "lightning.pytorch.callbacks.EarlyStopping",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.ModelSummary",
    "dllab.training.callbacks.EpochProgressBar",
    "dllab.training.callbacks.DataSummary",
    "dllab.data.augmentation.AugmentationPreview",
    "dllab.sweeps.pruning.OptunaPruning",
)


# The best checkpoint a stack keeps per model: one file, checked every epoch, whole checkpoints
# (any other setting trains alone).
CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "save_top_k": 1,
    "every_n_epochs": None,
    "every_n_train_steps": None,
    "train_time_interval": None,
    "save_weights_only": False,
    "save_last": False,
    "auto_insert_metric_name": False,
}


def stack_key(cfg: DictConfig) -> str:
    """What the jobs of one stack share: the resolved config less :data:`STACKED_KEYS`, the
    optimizer's hyperparameters, :data:`OUTPUT_KEYS` and paths inside the job's run dir, as one
    string (equal strings stack)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    optimizer = tree.get("optimizer")
    if isinstance(optimizer, dict):
        tree["optimizer"] = {"_target_": optimizer.get("_target_")}
    for key in (*STACKED_KEYS, *OUTPUT_KEYS):
        node: Any = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    run_dir = str(cfg.paths.output_dir)
    # where a job writes (checkpoint dirs, the trainer's root dir) is its own, not a difference
    leaves = _flatten(tree)  # type: ignore[arg-type]
    leaves["loggers"] = sorted(name for name, node in (cfg.get("logger") or {}).items() if node is not None)
    flat = {k: v for k, v in leaves.items() if not (isinstance(v, str) and v.startswith(run_dir))}
    return repr(sorted(flat.items()))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def stackable_optimizer(target: Any) -> bool:
    """Whether the optimizer class ``target`` names is one :class:`StackedOptimizer` steps."""
    from hydra.utils import get_class

    try:
        return get_class(str(target)) in SUPPORTED
    except Exception:  # not a class that imports: the run's own checks name it
        return False


MLP_TARGET = "dllab.models.mlp.MLP"  # stacked exactly (StackedMLP); other networks by torch.func


def unstackable_reason(cfg: DictConfig) -> str | None:
    """Why this job must train alone (the config key and its value), or None when it stacks."""
    trainer = cfg.trainer
    augmentation = (cfg.get("augmentation") or {}).get("name")
    checks: list[tuple[bool, str]] = [
        (bool(cfg.get("module")), f"module={cfg.get('module')}"),
        (bool(cfg.scheduler.get("_target_")), "a scheduler"),
        (bool(cfg.get("augmentation") and cfg.augmentation.get("transforms")), f"augmentation={augmentation}"),
        (not stackable_optimizer(cfg.optimizer.get("_target_")), f"optimizer._target_={cfg.optimizer.get('_target_')}"),
        (stack_device(cfg) is None, f"trainer.accelerator={trainer.get('accelerator', 'auto')} on this machine"),
        (
            stack_device(cfg) == "cuda" and bool(cfg.model.get("dropout")),
            "model.dropout on a GPU",  # the solo run draws from the CUDA generator
        ),
        (processes(trainer) != 1, f"trainer.devices={trainer.get('devices')} (several processes)"),
        (str(trainer.get("precision", "32-true")) not in ("32", "32-true"), f"trainer.precision={trainer.precision}"),
        (bool(trainer.get("fast_dev_run")), "trainer.fast_dev_run"),
        (trainer.get("max_steps", -1) not in (-1, None), f"trainer.max_steps={trainer.get('max_steps')}"),
        (bool(trainer.get("gradient_clip_val")), "trainer.gradient_clip_val"),
        (bool(trainer.get("overfit_batches")), "trainer.overfit_batches"),
        (trainer.get("check_val_every_n_epoch", 1) != 1, "trainer.check_val_every_n_epoch"),
        (bool(cfg.get("resume") or cfg.get("ckpt_path")), "resume/ckpt_path"),
        (bool(cfg.get("tuner") and (cfg.tuner.get("lr_find") or cfg.tuner.get("batch_size_find"))), "the tuner"),
    ]
    for key in ("min_epochs", "min_steps", "max_time"):  # Lightning's limits on stopping early
        checks.append((trainer.get(key) is not None, f"trainer.{key}"))
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if checkpoint is not None and enabled(checkpoint):
        for key, default in CHECKPOINT_DEFAULTS.items():
            checks.append((checkpoint.get(key, default) != default, f"callbacks.model_checkpoint.{key}"))
        checks.append(("{" in str(checkpoint.get("filename", "")), "callbacks.model_checkpoint.filename"))
    for limit in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer.get(limit, 1.0)
        checks.append((value not in (1.0, None), f"trainer.{limit}={value}"))
    for name, callback in (cfg.get("callbacks") or {}).items():
        if isinstance(callback, Mapping) and enabled(callback) and "_target_" in callback:
            target = str(callback["_target_"])
            checks.append((target not in STACKED_CALLBACKS, f"callbacks.{name}._target_={target}"))
    return next((f"{what} does not stack" for bad, what in checks if bad), None)


# Statuses of a model that stopped without its results (no test, no last checkpoint).
ENDED_BY_FAILURE = (DIVERGED, INTERRUPTED)  # a model that stops so keeps no new best


def stack_device(cfg: DictConfig) -> str | None:
    """The device a stack trains on, the one the solo run's Trainer would pick: ``cpu``, or
    ``cuda`` for ``gpu``/``cuda`` (and ``auto`` where CUDA is available); None where it would
    pick another (MPS, TPU, ...)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator == "cpu":
        return "cpu"
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda" if torch.cuda.is_available() else None
    if accelerator == "auto" and not torch.backends.mps.is_available():
        return "cpu"
    return None


@dataclass
class StackedJob:
    """One model of a stack: its config, data, module (network, loss, metrics) and the
    generator its dropout draws from (the global generator's state right after the module
    was built, as in its solo run)."""

    cfg: DictConfig
    datamodule: Any
    module: Any
    generator: torch.Generator
    early_stopping: Any = None  # Lightning's EarlyStopping
    pruning: Any = None  # dllab.sweeps.pruning.OptunaPruning of an Optuna trial
    best_checkpoint: Any = None  # dllab.training.checkpointing.BestCheckpoint
    last_checkpoint: Any = None  # dllab.training.checkpointing.LastCheckpoint
    lr_monitor: Any = None  # Lightning's LearningRateMonitor


def shared_datamodule(cfg: DictConfig, shared: dict[str, Any]) -> Any:
    """The set-up DataModule of this job's data config, built once for every job of the sweep
    that has the same one (``shared``: data config -> DataModule), so that a stack of them holds
    one copy of the data. Shared only where building it, right after the job's seeding, leaves
    torch's, numpy's and Python's global generators as they were (the shipped sources do): the
    model built next gets the weights of its solo run. None: this job builds its own."""
    import random

    import lightning as L

    from dllab.data.datamodule import build_datamodule
    from dllab.runs.config import split_trainer_config

    _, _, data_kwargs = split_trainer_config(cfg.trainer)
    key = repr((OmegaConf.to_container(cfg.data, resolve=True), sorted(data_kwargs.items())))
    if key not in shared:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        states = (torch.get_rng_state(), np.random.get_state(legacy=False), random.getstate())
        datamodule = build_datamodule(cfg.data, **data_kwargs)
        datamodule.setup()
        torch_state, numpy_state, python_state = states
        untouched = (
            torch.equal(torch_state, torch.get_rng_state())
            and repr(numpy_state) == repr(np.random.get_state(legacy=False))
            and python_state == random.getstate()
        )
        shared[key] = datamodule if untouched else None
    return shared[key]


def build_job(cfg: DictConfig, shared: dict[str, Any] | None = None) -> StackedJob:
    """Build a job's model as its solo run does (seeded, same data split, same weights), and
    its callbacks as the solo run instantiates them: the stack asks these objects for their
    settings (monitor, patience, time budget) and state. ``shared``: the sweep's DataModules by
    data config (:func:`shared_datamodule`)."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor

    from dllab.runs.build import seeded_data_and_module
    from dllab.runs.config import instantiate_enabled
    from dllab.sweeps.pruning import OptunaPruning
    from dllab.training.checkpointing import BestCheckpoint, LastCheckpoint

    datamodule = shared_datamodule(cfg, shared) if shared is not None else None
    datamodule, module = seeded_data_and_module(cfg, datamodule=datamodule)
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    callbacks = instantiate_enabled(cfg.get("callbacks"))

    def one(kind: type) -> Any:
        return next((c for c in callbacks if isinstance(c, kind)), None)

    return StackedJob(
        cfg,
        datamodule,
        module,
        generator,
        early_stopping=one(EarlyStopping),
        pruning=one(OptunaPruning),
        best_checkpoint=one(BestCheckpoint),
        last_checkpoint=one(LastCheckpoint),
        lr_monitor=one(LearningRateMonitor),
    )


@dataclass
class ModelState:
    """A model's training state at one moment: epochs done, optimizer steps, its weights,
    optimizer state, early stopping's counters and the generator its dropout draws from next.
    For the kept best (BestCheckpoint's record) also the monitored score (float32, as Lightning
    compares it), the tie-breaker's value and the first epoch that reached the score."""

    epoch: int
    step: int
    net_state: dict[str, Tensor]
    optimizer_state: dict[str, Any]
    early_stopping_state: dict[str, Any] | None
    rng_state: Tensor
    score: float = math.nan
    tie_value: float = math.inf
    first_epoch: int = 0


@dataclass
class ModelResult:
    """What one model of a stack ends with: ``status`` (completed, diverged or interrupted),
    the per-epoch values as its loggers got them, its best epoch, its final weights and
    optimizer state, and why it stopped before ``max_epochs`` (early stopping, divergence)."""

    status: str = COMPLETED
    epochs: int = 0
    steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: ModelState | None = None
    final: ModelState | None = None  # when it stopped: the end of its last epoch, or of the moment
    stop_reason: str | None = None
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)  # epochs done -> weights
    kept: ModelState | None = None  # an epoch-end state kept as last.ckpt keeps it (for an interrupt)
    saved_best: ModelState | None = None  # the best whose best.ckpt is on disk (written during fit)


def float32(value: float) -> float:
    """A logged value as Lightning holds it (float32 tensors in ``callback_metrics``)."""
    return float(np.float32(value))


class StackedGroup:
    """Trains the models of ``jobs`` (one :func:`stack_key`, all stackable) as one stack."""

    def __init__(self, jobs: Sequence[StackedJob], device: str | torch.device = "cpu") -> None:
        if not jobs:
            raise ValueError("a stack needs one job or more")
        self.jobs = list(jobs)
        self.device = torch.device(device)
        nets = [job.module.net for job in self.jobs]
        for job in self.jobs:  # a solo run's optimizer steps module.parameters() (configure_optimizers)
            if [id(p) for p in job.module.parameters()] != [id(p) for p in job.module.net.parameters()]:
                raise ValueError(f"{type(job.module).__name__} has parameters beside its network's")
        sample, _ = self.jobs[0].datamodule.tensors("train")
        self.net = stack_networks(nets, sample[:2]).to(self.device)
        self.net.set_generators([job.generator for job in self.jobs])
        self.optimizer = StackedOptimizer(
            self.net.ordered_parameters(),
            [OmegaConf.to_container(j.cfg.optimizer, resolve=True) for j in self.jobs],  # type: ignore[misc]
        )
        first = self.jobs[0]
        self.batch_size = int(first.datamodule.batch_size)
        self.accumulate = int(first.cfg.trainer.get("accumulate_grad_batches", 1) or 1)
        self.max_epochs = int(first.cfg.trainer.max_epochs)
        self.train = self._split("train")
        self.val = self._split("val")
        self.task_module = first.module
        self.batched_cross_entropy = self._batched_cross_entropy()
        self.active: list[int] = []
        self.results: list[ModelResult] = []

    def tensor_bytes(self) -> int:
        """Memory of the stack's own tensors: weights and their gradients, the optimizer's state,
        the stacked splits, counted once where the models share one (activations, a few
        micro-batches' worth, come on top)."""
        tensors = [*self.net.ordered_parameters(), *self.net.buffers(), *self.train, *self.val]
        size = sum(t.untyped_storage().nbytes() for t in tensors)
        size += sum(p.numel() * p.element_size() for p in self.net.ordered_parameters())  # gradients
        return size + self.optimizer.state_bytes()

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        """A split of every model stacked: x [S, N, ...], y [S, N, ...] (sizes must agree)."""
        tensors = [job.datamodule.tensors(split) for job in self.jobs]
        sizes = {x.shape for x, _ in tensors}
        if len(sizes) != 1:
            raise ValueError(f"the models' {split} splits differ in size ({sorted(sizes)}); they do not stack")
        first_x, first_y = tensors[0]
        if all(x is first_x and y is first_y for x, y in tensors):  # one data config: one copy, seen S times
            size = len(tensors)
            x, y = first_x.to(self.device), first_y.to(self.device)
            return x.expand(size, *x.shape), y.expand(size, *y.shape)
        x = torch.stack([x for x, _ in tensors]).to(self.device)
        y = torch.stack([y for _, y in tensors]).to(self.device)
        return x, y

    def _batched_cross_entropy(self) -> bool:
        """Whether every model's loss is a plain cross entropy: then one call for the stack
        equals each model's own bit for bit (with label smoothing or weights it rounds otherwise,
        and each model's criterion is called)."""
        return all(
            type(c) is nn.CrossEntropyLoss and c.weight is None and c.label_smoothing == 0
            for c in (job.module.criterion for job in self.jobs)
        )

    def losses(self, output: Tensor, target: Tensor) -> Tensor:
        """Each model's mean loss over its micro-batch, [S]."""
        if self.batched_cross_entropy:
            s, b = target.shape[:2]
            return F.cross_entropy(output.flatten(0, 1), target.flatten(0, 1), reduction="none").view(s, b).mean(1)
        return torch.stack([job.module.criterion(output[i], target[i]) for i, job in enumerate(self.jobs)])

    def orders(self, epoch: int) -> Tensor:
        """Each model's visiting order of its training split this epoch, [S, N]."""
        orders = [job.datamodule.train_dataloader().order(epoch) for job in self.jobs]
        return torch.stack(orders).to(self.device)

    def fit(
        self, snapshot_every: int | None = None, on_keep: Callable[[list[int]], None] | None = None
    ) -> list[ModelResult]:
        """Train every model up to ``trainer.max_epochs``, each stopping as its solo run would
        (early stopping, the pruner, divergence). ``snapshot_every``: keep each model's weights
        every that many epochs (the pictures drawn during fit). At an epoch's end, when
        ``last.ckpt``'s ``every_seconds`` have passed, each running model's state is kept
        (``ModelResult.kept``) and ``on_keep`` is called with those models (it saves them, as a
        solo run saves last.ckpt). Ctrl-C ends every running model ``interrupted`` with its
        state of that moment."""
        results = self.results = [ModelResult() for _ in self.jobs]
        last = self.jobs[0].last_checkpoint
        keep_every = float(last.every_seconds) if last is not None else None
        kept_at = time.monotonic()
        active = self.active = list(range(len(self.jobs)))
        try:
            for epoch in range(self.max_epochs):
                if not active:
                    break
                self._train_epoch(epoch, results, active)
                self._validate(results, active)
                stopping = []
                for i in active:
                    result = results[i]
                    if result.status == COMPLETED:  # not diverged this epoch (a solo run stops before counting it)
                        result.epochs = epoch + 1
                        # Lightning's order: early stopping and pruning, then the best checkpoint
                        if self._stops_early(i, result, epoch) | self._pruned(i, result, epoch):
                            stopping.append(i)
                        self._check_best(i, result)
                    if snapshot_every and (epoch + 1) % snapshot_every == 0:
                        result.snapshots[epoch + 1] = self.net.model_state_dict(i)
                if keep_every is not None and time.monotonic() - kept_at >= keep_every:
                    kept_at = time.monotonic()  # as LastCheckpoint saves: at an epoch's end, on a time budget
                    kept = [i for i in active if results[i].status not in ENDED_BY_FAILURE]
                    for i in kept:
                        results[i].kept = self._state(i, results[i])
                    if on_keep is not None and kept:
                        on_keep(kept)
                stopped = [i for i in active if results[i].status in ENDED_BY_FAILURE or i in stopping]
                if stopped:
                    active = self.active = [i for i in active if i not in stopped]
                    for i in stopped:
                        self._finish(i, results[i])
        except KeyboardInterrupt:
            for i in active:
                results[i].status = INTERRUPTED
            raise
        finally:
            for i in active:
                self._finish(i, results[i])
        return results

    def _train_epoch(self, epoch: int, results: list[ModelResult], active: list[int]) -> None:
        x, y = self.train
        orders = self.orders(epoch)
        rows = torch.arange(len(self.jobs), device=self.device).unsqueeze(1)
        ys = y[rows, orders]
        self.net.train()
        micro_losses: list[Tensor] = []
        sizes: list[int] = []
        outputs: list[Tensor] = []
        steps = 0
        for first, last, weight, ends_group in micro_batches(orders.shape[1], self.batch_size, self.accumulate):
            # each micro-batch gathered when it is needed: the epoch's inputs are never copied whole
            output = self.net(x[rows, orders[:, first:last]])
            loss = self.losses(output, ys[:, first:last])
            (loss if weight is None else loss * weight).sum().backward()  # each model's gradient is its own loss's
            micro_losses.append(loss.detach())
            sizes.append(last - first)
            outputs.append(output.detach())
            if ends_group:
                self.optimizer.step(active)
                self.optimizer.zero_grad()
                steps += 1
        host = torch.stack(micro_losses, 1).float().tolist()  # [S][micro-batches]
        epoch_outputs = torch.cat(outputs, 1)
        for i in active:
            module = self.jobs[i].module
            statistics = module.epoch_statistics(epoch_outputs[i], ys[i]).float().tolist()
            values = module.epoch_values("train", *epoch_loss(host[i], sizes), statistics)
            results[i].steps += steps
            results[i].history.append(values)
            if not math.isfinite(values["train/loss"]):
                results[i].status = DIVERGED
                lr = float(self.optimizer.hparams[i]["lr"])  # as the optimizer holds it
                first_step = results[i].steps - steps
                message = diverged_message(values["train/loss"], host[i], first_step, self.accumulate, epoch, lr)
                results[i].stop_reason = message

    @torch.no_grad()
    def _validate(self, results: list[ModelResult], active: list[int]) -> None:
        x, y = self.val
        if x.shape[1] == 0:
            return
        self.net.eval()
        step = int(self.jobs[0].datamodule.eval_batch_size)
        sums: list[Tensor | None] = [None for _ in self.jobs]
        for start in range(0, x.shape[1], step):
            output = self.net(x[:, start : start + step])
            target = y[:, start : start + step]
            for i in active:
                # the solo run's validation_step: its step(x, y), then sums in float32
                module = self.jobs[i].module
                batch = module.evaluation_sums(module.criterion(output[i], target[i]), output[i], target[i])
                total = sums[i]
                sums[i] = batch if total is None else total + batch
        for i in active:
            total = sums[i]
            if results[i].status != COMPLETED or total is None:
                continue
            module = self.jobs[i].module
            loss_sum, samples, *statistics = total.tolist()
            values = module.epoch_values("val", loss_sum, samples, statistics)
            module.track_best(values)
            results[i].history[-1].update(values)

    def _check_best(self, i: int, result: ModelResult) -> None:
        """BestCheckpoint's rule (save_top_k 1) on this epoch's values, in float32 as Lightning
        holds them: a better one replaces the kept best."""
        checkpoint = self.jobs[i].best_checkpoint
        if checkpoint is None or result.status in ENDED_BY_FAILURE:
            return
        rule: BestRule = checkpoint.rule
        values = {k: float32(v) for k, v in result.history[-1].items()}
        if rule.monitor not in values:
            return
        score, tie = rule.score(values[rule.monitor]), rule.tie_value(values)
        kept = result.best
        first_epoch = result.epochs
        if kept is not None and not rule.better(score, kept.score):
            if not rule.wins_tie(score, tie, kept.score, kept.tie_value):
                return
            first_epoch = kept.first_epoch
        result.best = dataclasses.replace(self._state(i, result), score=score, tie_value=tie, first_epoch=first_epoch)

    def _early_stopping_state(self, i: int) -> dict[str, Any] | None:
        stopping = self.jobs[i].early_stopping
        return None if stopping is None else dict(stopping.state_dict())

    def _stops_early(self, i: int, result: ModelResult, epoch: int) -> bool:
        stopping = self.jobs[i].early_stopping
        if stopping is None or stopping.monitor not in result.history[-1]:
            return False
        current = torch.tensor(result.history[-1][stopping.monitor], dtype=torch.float32)
        stop, reason = compat.early_stopping_decision(stopping, current)
        if stop:  # as EarlyStopping records it when it stops a Trainer
            result.stop_reason = stopping.stopping_reason_message = reason
            stopping.stopped_epoch = epoch
        return bool(stop)

    def _pruned(self, i: int, result: ModelResult, epoch: int) -> bool:
        """The Optuna pruning callback's verdict on this epoch (it reports the value to its
        trial): a pruned model ends ``pruned`` after this epoch, as its solo run would."""
        pruning = self.jobs[i].pruning
        if pruning is None or not pruning.reports():
            return False
        checkpoint = self.jobs[i].best_checkpoint
        monitor = pruning.monitor or (checkpoint.monitor if checkpoint is not None else None)
        value = result.history[-1].get(monitor) if monitor else None
        if pruning.report(None if value is None else float32(value), epoch, monitor):
            result.status = PRUNED
            return True
        return False

    def _state(self, i: int, result: ModelResult) -> ModelState:
        """Model ``i``'s training state now (epochs and steps done so far)."""
        return ModelState(
            result.epochs,
            result.steps,
            self.net.model_state_dict(i),
            self.optimizer.model_state_dict(i),
            self._early_stopping_state(i),
            self.jobs[i].generator.get_state(),
            first_epoch=result.epochs,
        )

    def _finish(self, i: int, result: ModelResult) -> None:
        """The state a model ends with: at the end of its last epoch, or of the moment (interrupted)."""
        result.final = self._state(i, result)
