"""LightningModules for classification and regression around any network.

:class:`TaskModule` is task-generic: the network (:func:`dllab.models.network.build_network`,
any ``torch.nn.Module`` by ``_target_``), the loss, the optimizer, and :meth:`TaskModule.step`
(one batch: loss and output), the one method to override to change what a batch does. Its
subclasses add the task's metrics. A Trainer step is a whole epoch: ``training_step`` hands
the epoch's :class:`~dllab.data.datamodule.EpochBatch` to an
:class:`~dllab.training.epoch_loop.EpochLoop`, which calls ``step`` per micro-batch and the
optimizer itself (manual optimization), and Lightning's per-step hooks through
:mod:`dllab.training.step_hooks`. Per-epoch values are logged under ``train/`` and ``val/``
(:meth:`TaskModule.log_epoch`), test values under ``test/`` (torchmetrics).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric, MetricCollection, MinMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from dllab import compat
from dllab.catalog import AUTO, CLASSIFICATION, REGRESSION
from dllab.checkpoints import read_checkpoint
from dllab.data.datamodule import EpochBatch
from dllab.errors import ConfigError, DivergedError
from dllab.models.network import DEFAULT_NETWORK, build_network
from dllab.targets import import_class
from dllab.training.epoch_loop import EpochLoop, EpochResult
from dllab.training.losses import build_loss, resolved_loss_name
from dllab.training.optim import build_optimizer, build_scheduler
from dllab.training.rules import diverged_message, epoch_loss
from dllab.training.step_hooks import lightning_step_hooks

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}


class TaskModule(L.LightningModule, ABC):
    """Network, loss, optimizer, the canonical :meth:`step` and the epoch's training loop.

    Every argument is a primitive (numbers, strings, lists, dicts: ``net``, ``loss``,
    ``optimizer`` and ``scheduler`` are configs with a ``_target_``), so checkpoints load with
    ``torch.load(weights_only=True)`` and rebuild the module alone (:func:`load_module`).
    ``input_size``, ``output_size`` and ``image_shape`` (C, H, W of image data, else None) come
    from the data and reach the network where its ``__init__`` takes them.
    """

    task: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # logged per stage, as train/<name>, val/<name>, test/<name>
    main_metric: ClassVar[str]  # logged as val/<main_metric>_best too

    def __init__(
        self,
        input_size: int,
        output_size: int,
        net: Mapping[str, Any] | None = None,
        image_shape: Sequence[int] | None = None,
        loss: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        # Training-only batch augmentation (dllab.data.augmentation), set by dllab-train; only its
        # random-number state goes into checkpoints.
        self.augment: Callable[[Tensor], Tensor] | None = None
        self.net = build_network(net, input_size, output_size, image_shape)
        self.loss_name = resolved_loss_name(self.task, str((loss or {}).get("name", AUTO)))
        self.criterion = build_loss(self.task, loss)
        self.test_metrics = self.make_metrics()
        self.test_loss = MeanMetric()
        self._val_sums: Tensor | None = None  # [loss sum, samples, *epoch_statistics] over val batches
        self.best = self.make_best_tracker()
        self.best.persistent(True)  # val/<metric>_best survives a resume
        self.epoch_loop: EpochLoop | None = None  # made when training starts (the optimizer exists then)

    # --- task-specific pieces ---------------------------------------------------------
    @abstractmethod
    def make_metrics(self) -> MetricCollection:
        """The test metric set of the task (torchmetrics)."""

    @abstractmethod
    def make_best_tracker(self) -> MaxMetric | MinMetric:
        """Tracks val/<main_metric>_best."""

    @abstractmethod
    def epoch_statistics(self, outputs: Tensor, target: Tensor) -> Tensor:
        """What an epoch's metrics need, as one 1-D tensor of sums: the statistics of two sets
        of samples add up to those of both (validation batches, DDP processes). The training
        epoch's go to the host with its losses in a single transfer."""

    @abstractmethod
    def epoch_metrics(self, statistics: Sequence[float], samples: float) -> dict[str, float]:
        """An epoch's metrics (:attr:`metrics`) from :meth:`epoch_statistics` over ``samples``
        samples, as numbers."""

    def prediction(self, output: Tensor) -> Tensor:
        """What the metrics compare with the target: class index or regression output."""
        return output

    # --- one batch --------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One batch: the loss to minimise and the model's output (what the metrics read).

        Training (per micro-batch), validation and test all go through here, so overriding it
        changes what every batch does. The loss must be the batch's mean (accumulation weighs
        it by the batch's share of its group)."""
        output = self(x)
        return self.criterion(output, y), output

    # --- training: one epoch per Trainer step -----------------------------------------
    def on_train_start(self) -> None:
        self.epoch_loop = self.make_epoch_loop()

    def make_epoch_loop(self) -> EpochLoop:
        """The loop with this fit's optimizer, precision scaler, DDP averaging and hooks."""
        trainer = self.trainer
        optimizer = self.optimizers(use_pl_optimizer=False)
        assert isinstance(optimizer, torch.optim.Optimizer)
        world = trainer.world_size
        return EpochLoop(
            self.step,
            optimizer,
            self.parameters,
            accumulate=int(self.hparams["accumulate_grad_batches"]),
            clip_val=self.hparams["gradient_clip_val"],
            clip_algorithm=self.hparams["gradient_clip_algorithm"],
            scaler=getattr(trainer.precision_plugin, "scaler", None),
            average_gradients=(lambda: self._average_gradients(world)) if world > 1 else None,
            transform=self.augment,
            hooks=lightning_step_hooks(trainer, self, TaskModule),
            count_steps=lambda steps: compat.add_optimizer_steps(trainer, steps),
        )

    def training_step(self, batch: EpochBatch, batch_idx: int) -> None:
        """Train one epoch with :attr:`epoch_loop`, then log its loss and metrics."""
        x, y, order, batch_size = batch
        trainer = self.trainer
        loop = self.epoch_loop
        if loop is None or loop.optimizer is not self.optimizers(use_pl_optimizer=False):
            loop = self.epoch_loop = self.make_epoch_loop()  # the tuner fits with optimizers of its own
        first_step = trainer.global_step
        steps_left = max(trainer.max_steps - first_step, 0) if trainer.max_steps >= 0 else None
        result = loop.run(x, y, order, batch_size, max_steps=steps_left)
        if steps_left is not None and result.steps >= steps_left:
            trainer.should_stop = True  # max_steps reached, within the epoch if need be
        if result.losses:
            self._log_training_epoch(result, first_step)
        self._step_scheduler(after_validation=False)

    def _log_training_epoch(self, result: EpochResult, first_step: int) -> None:
        # The epoch's numbers reach the host in one transfer (one sync on an accelerator), and
        # the arithmetic on a handful of numbers is Python's: right after the step loop every
        # further torch op is slow on a CPU, as its code and data are out of the caches.
        statistics = self.epoch_statistics(result.outputs, result.targets)
        # in float32: under 16-true the default dtype is float16 (counts exact to 16.7M samples)
        host = torch.cat([torch.stack(result.losses).float(), statistics.float()]).tolist()
        micro_losses, local = host[: len(result.losses)], host[len(result.losses) :]
        loss_sum, samples = epoch_loss(micro_losses, result.sizes)
        if self.trainer.world_size > 1:  # the whole epoch's sums, as validation adds them up
            loss_sum, samples, *local = self._sum_over_processes([loss_sum, samples, *local])
        values = self.epoch_values("train", loss_sum, samples, local)
        if not math.isfinite(values["train/loss"]):
            self._diverged(values["train/loss"], micro_losses, first_step, int(self.hparams["accumulate_grad_batches"]))
        self.log_epoch(values)

    def epoch_values(
        self, split: str, loss_sum: float, samples: float, statistics: Sequence[float]
    ) -> dict[str, float]:
        """An epoch's ``<split>/<metric>`` and ``<split>/loss`` from its sums (the stack's too)."""
        values = {f"{split}/{k}": v for k, v in self.epoch_metrics(statistics, samples).items()}
        values[f"{split}/loss"] = loss_sum / samples
        return values

    def track_best(self, values: dict[str, float]) -> None:
        """Add ``val/<main_metric>_best`` to a validation epoch's ``values`` (the stack's too)."""
        self.best.update(values[f"val/{self.main_metric}"])
        values[f"val/{self.main_metric}_best"] = float(self.best.compute())

    def log_epoch(self, values: Mapping[str, float]) -> None:
        """Log an epoch's train or val values: into ``trainer.callback_metrics`` (what the
        checkpoint, early stopping, the progress bar, the plateau scheduler and the pruner
        read; as float32 tensors on the CPU) and to every logger at step = epoch, then ask
        the loggers to ``save()`` (dllab's TensorBoard logger writes at most every few seconds).

        Why not ``self.log``: it walks its stored results with ``apply_to_collection`` on every
        call, and every read of ``trainer.callback_metrics`` walks them again; with epochs of a
        few milliseconds that bookkeeping was the largest overhead of a run. The values are
        already the epoch's, computed from sums over all processes. Test metrics still go through ``self.log``,
        since ``trainer.test`` returns them.
        """
        tensors = torch.tensor(list(values.values()), dtype=torch.float32).unbind()
        self.trainer.callback_metrics.update(zip(values, tensors, strict=True))
        for logger in self.trainer.loggers:
            logger.log_metrics(dict(values), step=self.current_epoch + 1)  # epochs done, as the pictures
            logger.save()

    def _sum_over_processes(self, numbers: list[float]) -> list[float]:
        """DDP: the epoch's sums added up over processes in one reduce, in float32 (under 16-true
        the default dtype is float16: 3 digits, inf above 65504). A NaN on any process makes the
        sum NaN everywhere, so every process stops."""
        tensor = torch.tensor(numbers, dtype=torch.float32, device=self.device)
        return self.trainer.strategy.reduce(tensor, reduce_op="sum").tolist()

    def _diverged(self, epoch_loss: float, micro_losses: Sequence[float], first_step: int, accumulate: int) -> None:
        raise DivergedError(
            diverged_message(epoch_loss, micro_losses, first_step, accumulate, self.current_epoch, self._lr())
        )

    def _average_gradients(self, world: int) -> None:
        """DDP: average the accumulated gradients over processes (one coalesced all-reduce)."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def _lr(self) -> float:
        optimizer = self.optimizers(use_pl_optimizer=False)
        assert isinstance(optimizer, torch.optim.Optimizer)
        return float(optimizer.param_groups[0]["lr"])

    def _step_scheduler(self, after_validation: bool) -> None:
        """Epoch-interval schedulers step at the end of the training loop, ReduceLROnPlateau
        after validation: both before the epoch's checkpoint, so a resumed run matches."""
        scheduler = self.lr_schedulers()
        if scheduler is None or isinstance(scheduler, list):
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = (self.hparams["scheduler"] or {}).get("monitor", "val/loss")
            value = self.trainer.callback_metrics.get(monitor)
            if after_validation and value is not None:
                scheduler.step(float(value))
        elif not after_validation:
            scheduler.step()

    # --- Lightning's per-epoch plumbing, cut to what this module needs -----------------
    def on_validation_model_eval(self) -> None:
        self.net.eval()  # only the network has train/eval behaviour (dropout, batch norm)

    def on_validation_model_train(self) -> None:
        self.net.train()

    def on_validation_model_zero_grad(self) -> None:
        pass  # the epoch loop leaves no gradients behind (zero_grad(set_to_none=True) after each step)

    def on_test_model_eval(self) -> None:
        self.net.eval()

    def on_test_model_train(self) -> None:
        self.net.train()

    # --- evaluation: large batches from memory ----------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Adds the batch's loss sum, sample count and :meth:`epoch_statistics` to the epoch's
        sums, on the device, in float32 (counts exact to 16.7M samples). Validation runs every
        epoch, and sums cost less than updating, computing and resetting torchmetrics' metric
        objects each pass; a test checks the values against torchmetrics."""
        x, y = batch
        sums = self.evaluation_sums(*self.step(x, y), y)
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums

    def evaluation_sums(self, loss: Tensor, output: Tensor, y: Tensor) -> Tensor:
        """A validation batch's loss sum, sample count and :meth:`epoch_statistics`, in float32."""
        head = torch.stack([loss.float() * y.shape[0], output.new_full((), y.shape[0], dtype=torch.float32)])
        return torch.cat([head, self.epoch_statistics(output, y).float()])

    def on_validation_epoch_start(self) -> None:
        self._val_sums = None  # nothing left from a pass that stopped early (the batch-size finder's)

    def on_validation_epoch_end(self) -> None:
        sums, self._val_sums = self._val_sums, None
        if sums is None:
            return
        if self.trainer.world_size > 1:  # each process saw its part of the split: add them up
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss_sum, samples, *statistics = sums.tolist()
        values = self.epoch_values("val", loss_sum, samples, statistics)
        if not self.trainer.sanity_checking:
            self.track_best(values)
            self.log_epoch(values)
            self._step_scheduler(after_validation=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        loss, output = self.step(x, y)
        self.test_loss.update(loss, weight=y.shape[0])
        self.test_metrics.update(self.prediction(output), y)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_values(), on_step=False, on_epoch=True, batch_size=1)

    def test_values(self) -> dict[str, Tensor]:
        """The test metrics of the batches seen since the last call (the stack's too)."""
        values = {f"test/{k}": v for k, v in self.test_metrics.compute().items()}
        values["test/loss"] = self.test_loss.compute()
        self.test_metrics.reset()
        self.test_loss.reset()
        return values

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.net(x)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dllab_task"] = self.task
        if type(self) not in MODULES.values():  # a subclass of one's own: rebuilt from its class path
            checkpoint["dllab_module"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["torch_rng_state"] = torch.get_rng_state()  # dropout draws continue after a resume
        if torch.cuda.is_available():
            checkpoint["cuda_rng_states"] = torch.cuda.get_rng_state_all()
        states = getattr(self.augment, "rng_states", None)  # the augmenter draws from its own generators
        if states:
            checkpoint["augment_rng_states"] = {k: v for k, v in states.items() if v is not None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if "cuda_rng_states" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])
        states = getattr(self.augment, "rng_states", None)
        if states is not None and "augment_rng_states" in checkpoint:
            states.update(checkpoint["augment_rng_states"])

    # --- optimizers -------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.hparams["optimizer"] or DEFAULT_OPTIMIZER, self.parameters())
        scheduler = build_scheduler(self.hparams["scheduler"], optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class ClassificationModule(TaskModule):
    """Logits over classes; metrics accuracy and macro F1; tracks val/acc_best."""

    task = CLASSIFICATION
    metrics = ("acc", "f1")
    main_metric = "acc"

    def make_metrics(self) -> MetricCollection:
        k = int(self.hparams["output_size"])
        return MetricCollection(
            {"acc": MulticlassAccuracy(k, average="micro"), "f1": MulticlassF1Score(k, average="macro")}
        )  # the names of ``metrics``

    def make_best_tracker(self) -> MaxMetric:
        return MaxMetric()

    def epoch_statistics(self, outputs: Tensor, target: Tensor) -> Tensor:
        """The confusion matrix, row-major (true class, predicted class), from one ``bincount``."""
        k = int(self.hparams["output_size"])
        return torch.bincount(self.prediction(outputs).add(target, alpha=k), minlength=k * k)

    def epoch_metrics(self, statistics: Sequence[float], samples: float) -> dict[str, float]:
        """Accuracy and macro F1 by torchmetrics' definitions (macro F1 leaves out classes
        neither present nor predicted; a test compares with ``multiclass_accuracy`` and
        ``multiclass_f1_score``): a few sums over the k x k counts, cheaper per epoch than
        calling torchmetrics."""
        k = int(self.hparams["output_size"])
        tp = statistics[:: k + 1]
        true = [sum(statistics[c * k : (c + 1) * k]) for c in range(k)]
        predicted = [sum(statistics[c::k]) for c in range(k)]
        marginals = [t + p for t, p in zip(true, predicted, strict=True)]  # 2 tp + fp + fn per class
        scored = sum(1 for m in marginals if m)
        return {
            "acc": sum(tp) / max(samples, 1),
            "f1": sum(2 * t / m for t, m in zip(tp, marginals, strict=True) if m) / max(scored, 1),
        }

    def prediction(self, output: Tensor) -> Tensor:
        return output.argmax(dim=-1)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return super().predict_step(batch, batch_idx).softmax(dim=-1)


class RegressionModule(TaskModule):
    """Real-valued outputs; metrics MSE, MAE and R²; tracks val/mse_best."""

    task = REGRESSION
    metrics = ("mse", "mae", "r2")
    main_metric = "mse"

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})

    def make_best_tracker(self) -> MinMetric:
        return MinMetric()

    def epoch_statistics(self, outputs: Tensor, target: Tensor) -> Tensor:
        """Per output: the squared residuals' sum, the target's sum and its squares' sum; then the
        absolute residuals' sum (torchmetrics' R2Score and MeanAbsoluteError keep the same, in
        float32 too: R² from raw sums loses digits when the targets' mean is far larger than
        their spread, which data.standardize, on by default, rules out)."""
        outputs, target = outputs.float(), target.float().reshape(outputs.shape)  # 16-true: no float16 sums
        residual = target - outputs
        return torch.cat(
            [
                (residual * residual).sum(0),
                target.sum(0),
                (target * target).sum(0),
                residual.abs().sum().reshape(1),
            ]
        )

    def epoch_metrics(self, statistics: Sequence[float], samples: float) -> dict[str, float]:
        """MSE and MAE over all outputs, R² per output then averaged, by torchmetrics'
        definitions: a near-constant target (total sum of squares within 1e-4 of 0) scores 1
        when predicted within 1e-4, else 0 (a test compares with ``r2_score``). Fewer than 2
        samples have no R² (NaN; torchmetrics raises)."""
        d = int(self.hparams["output_size"])
        rss, sums, squares = statistics[:d], statistics[d : 2 * d], statistics[2 * d : 3 * d]
        elements = max(samples * d, 1)
        scores = []
        for residual, total, square in zip(rss, sums, squares, strict=True):
            tss = square - total * total / samples if samples else 0.0
            if abs(residual) <= 1e-4:
                scores.append(1.0)
            else:
                scores.append(1 - residual / tss if abs(tss) > 1e-4 else 0.0)
        return {
            "mse": sum(rss) / elements,
            "mae": statistics[3 * d] / elements,
            "r2": sum(scores) / d if samples >= 2 else math.nan,
        }


MODULES: dict[str, type[TaskModule]] = {CLASSIFICATION: ClassificationModule, REGRESSION: RegressionModule}
# Hyperparameters of checkpoints written before networks were chosen by _target_ (always an MLP).
OLD_MLP_KEYS = ("hidden_sizes", "activation", "dropout", "batch_norm")


def module_class(task: str, path: str | None = None) -> type[TaskModule]:
    """dllab's module for ``task``, or the subclass of it that ``path`` names (config key
    ``module``, a class with its own :meth:`TaskModule.step`, say)."""
    base = MODULES[task]
    if not path:
        return base
    cls = import_class(path, "module", example="my_pkg.modules.MyModule")
    if not issubclass(cls, base):
        raise ConfigError(f"module={path}: must be a subclass of {base.__module__}.{base.__name__} for a {task} task")
    return cls


def load_module(ckpt_path: str, map_location: str | torch.device = "cpu") -> TaskModule:
    """Rebuild the right module from a checkpoint alone (``weights_only=True``)."""
    return module_from_checkpoint(read_checkpoint(ckpt_path, map_location=map_location))


def module_from_checkpoint(checkpoint: dict[str, Any]) -> TaskModule:
    """The module of a checkpoint already read (see :func:`dllab.checkpoints.read_checkpoint`),
    also one written before networks were chosen by ``_target_``."""
    hparams = dict(checkpoint["hyper_parameters"])
    if "net" not in hparams:
        hparams["net"] = DEFAULT_NETWORK | {k: hparams.pop(k) for k in OLD_MLP_KEYS if k in hparams}
    module = module_class(checkpoint["dllab_task"], checkpoint.get("dllab_module"))(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    return module
