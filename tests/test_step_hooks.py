"""Lightning's per-step hooks fire where Lightning fires them, per micro-batch and optimizer
step, for callbacks and for the module; ``step`` is the one place that changes what a batch does."""

from __future__ import annotations

from collections import Counter
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor

from dllab.data.datamodule import EpochBatch, InMemoryDataModule
from dllab.data.playground import Playground
from dllab.errors import ConfigError
from dllab.training.module import ClassificationModule, module_class
from tests.conftest import bare_trainer, mlp

SGD = {"_target_": "torch.optim.SGD", "lr": 0.1}


def circle() -> InMemoryDataModule:
    return InMemoryDataModule(Playground("circle", n_samples=203), batch_size=10, seed=0)  # 142 training samples


class Recorder(L.Callback):
    """Counts every per-step hook and what it saw."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.batch_indices: list[int] = []
        self.steps_at_batch_end: list[int] = []
        self.saw_epoch_batch = False

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.calls["batch_start"] += 1
        self.saw_epoch_batch |= isinstance(batch, EpochBatch)
        x, y = batch
        assert x.shape[0] == y.shape[0] <= 10
        self.batch_indices.append(batch_idx)

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        assert loss.requires_grad
        self.calls["before_backward"] += 1

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert all(p.grad is not None for p in pl_module.parameters())
        self.calls["after_backward"] += 1

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        assert isinstance(optimizer, torch.optim.Optimizer)
        self.calls["before_optimizer_step"] += 1

    def on_before_zero_grad(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self.calls["before_zero_grad"] += 1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.calls["batch_end"] += 1
        self.saw_epoch_batch |= isinstance(batch, EpochBatch)
        assert set(outputs) == {"loss"}
        self.steps_at_batch_end.append(trainer.global_step)


def test_callback_hooks_fire_per_micro_batch_and_per_optimizer_step() -> None:
    recorder = Recorder()
    module = ClassificationModule(2, 2, net=mlp([8]), optimizer=SGD, accumulate_grad_batches=2)
    trainer = bare_trainer(max_epochs=2, callbacks=[recorder], limit_val_batches=0)
    trainer.fit(module, circle())
    micro, steps = 2 * 15, 2 * 8  # 142 samples: 15 micro-batches of 10, 8 groups of 2 an epoch
    assert recorder.calls == {
        "batch_start": micro, "before_backward": micro, "after_backward": micro,
        "before_optimizer_step": steps, "before_zero_grad": steps, "batch_end": micro,
    }  # fmt: skip
    assert recorder.batch_indices == list(range(15)) * 2
    assert not recorder.saw_epoch_batch  # Lightning's own once-an-epoch call is not passed on
    assert recorder.steps_at_batch_end[:4] == [0, 1, 1, 2]  # global_step is current inside the epoch
    assert trainer.global_step == steps


class CountingModule(ClassificationModule):
    """A module that overrides hooks itself, and ends each epoch after 3 batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        self.calls["batch_start"] += 1
        return -1 if batch_idx == 3 else None

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.calls["before_optimizer_step"] += 1

    def on_after_backward(self) -> None:
        self.calls["after_backward"] += 1


def test_module_hooks_fire_and_batch_start_can_end_the_epoch() -> None:
    module = CountingModule(2, 2, net=mlp([8]), optimizer=SGD)
    trainer = bare_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(module, circle())
    assert module.calls == {"batch_start": 2 * 4, "after_backward": 2 * 3, "before_optimizer_step": 2 * 3}
    assert trainer.global_step == 2 * 3


class PenalisedModule(ClassificationModule):
    """Overrides ``step`` alone: the loss gains an L2 penalty on the outputs."""

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss, output = super().step(x, y)
        return loss + 10.0 * output.pow(2).mean(), output


def test_overriding_step_changes_training_validation_and_test() -> None:
    results = {}
    for cls in (ClassificationModule, PenalisedModule):
        torch.manual_seed(0)
        module = cls(2, 2, net=mlp([8]), optimizer=SGD)
        trainer = bare_trainer(max_epochs=3)
        dm = circle()
        trainer.fit(module, dm)
        val = float(trainer.callback_metrics["val/loss"])
        test = trainer.test(module, dm, verbose=False)[0]
        logits = module(torch.as_tensor(dm.arrays["test"][0])).detach()
        results[cls] = (val, test["test/loss"], float(logits.abs().mean()))
    (val, test, size), (val_p, test_p, size_p) = results[ClassificationModule], results[PenalisedModule]
    assert val_p > val and test_p > test  # validation and test losses include the penalty
    assert size_p < size  # training minimised it: smaller logits


def test_the_module_class_is_a_config_choice() -> None:
    assert module_class("classification") is ClassificationModule
    assert module_class("classification", f"{__name__}.PenalisedModule") is PenalisedModule
    with pytest.raises(ConfigError, match=r"must be a subclass of dllab\.training\.module\.RegressionModule"):
        module_class("regression", f"{__name__}.PenalisedModule")
    with pytest.raises(ConfigError, match=r"module=nowhere\.Module: cannot import nowhere\.Module"):
        module_class("classification", "nowhere.Module")


def test_a_default_run_has_no_per_step_hooks(make_cfg) -> None:
    """dllab's default callbacks (checkpoints, lr monitor, bar, ...) override per-step hooks that
    do nothing as configured: the loop calls none of them."""
    from dllab.runs.config import instantiate_enabled
    from dllab.training.step_hooks import lightning_step_hooks

    module = ClassificationModule(2, 2, net=mlp([4]))
    for overrides, batch_starts in (((), 0), (("callbacks.lr_monitor.logging_interval=step",), 1)):
        callbacks = instantiate_enabled(make_cfg(*overrides).callbacks)
        assert {type(c).__name__ for c in callbacks} >= {"BestCheckpoint", "LearningRateMonitor", "LastCheckpoint"}
        trainer = bare_trainer(callbacks=callbacks, enable_checkpointing=True, enable_progress_bar=True)
        hooks = lightning_step_hooks(trainer, module, ClassificationModule)
        assert len(hooks.batch_start) == batch_starts  # a monitor that logs per step is called per step
        assert not hooks.batch_end and not hooks.before_optimizer_step and not hooks.before_backward


class OwnOptimizerStep(ClassificationModule):
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)


def test_what_the_loop_does_itself_cannot_be_overridden_and_says_so() -> None:
    with pytest.raises(ConfigError, match=r"OwnOptimizerStep\.optimizer_step: not called, since dllab's epoch loop"):
        bare_trainer(limit_val_batches=0).fit(OwnOptimizerStep(2, 2, net=mlp([4])), circle())
