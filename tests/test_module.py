"""The LightningModules: the in-memory step loop is exact (accumulation, plain-loop
equivalence), checkpoints hold primitives only, and the Trainer's limits hold."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from dllab.data.datamodule import InMemoryDataModule
from dllab.data.playground import Playground
from dllab.data.sklearn_sets import SklearnSet
from dllab.errors import DivergedError
from dllab.training.epoch_loop import EpochLoop
from dllab.training.module import ClassificationModule, RegressionModule, load_module
from dllab.training.reference_loop import train_reference
from tests.conftest import bare_trainer, mlp

SGD = {"_target_": "torch.optim.SGD", "lr": 0.5}


def trainer(**kwargs) -> L.Trainer:
    return bare_trainer(**({"limit_val_batches": 0} | kwargs))


def fit(batch_size: int, accumulate: int = 1, epochs: int = 1, **module_kwargs) -> ClassificationModule:
    # 203 points -> 142 training samples: not a multiple of 32, so the last group is smaller
    dm = InMemoryDataModule(Playground("circle", n_samples=203), batch_size=batch_size, seed=0, standardize=True)
    dm.setup()
    torch.manual_seed(0)
    module = ClassificationModule(
        dm.input_size,
        dm.output_size,
        net=mlp([16]),
        optimizer=module_kwargs.pop("optimizer", SGD),
        accumulate_grad_batches=accumulate,
        **module_kwargs,
    )
    trainer(max_epochs=epochs).fit(module, dm)
    return module


def params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.fixture(params=[4096, 40], ids=["one-gather", "gather-per-40-samples"])
def gather_span(request, monkeypatch) -> int:
    """The loop gathers samples a span at a time: one span for the whole epoch (the default
    at these sizes) and several, the last one short (142 training samples)."""
    monkeypatch.setattr(EpochLoop, "gather_samples", request.param)
    return request.param


def test_accumulation_matches_the_large_batch_exactly(gather_span: int) -> None:
    large = fit(batch_size=32, accumulate=1)
    accumulated = fit(batch_size=8, accumulate=4)
    untrained = fit(batch_size=8, accumulate=4, epochs=0)
    assert not torch.allclose(params(large), params(untrained))
    assert torch.allclose(params(large), params(accumulated), atol=1e-6)
    small = fit(batch_size=8, accumulate=1)  # same samples, 4x the updates: must differ
    assert not torch.allclose(params(large), params(small), atol=1e-3)


@pytest.mark.parametrize("optimizer", ["torch.optim.SGD", "torch.optim.Adam"])
def test_fast_path_equals_a_plain_training_loop(optimizer: str, gather_span: int) -> None:
    """Same seed, same batch order: the in-memory loop gives the plain loop's parameters."""
    config = {"_target_": optimizer, "lr": 0.05, "fused": False}
    module = fit(batch_size=10, epochs=2, optimizer=config)
    dm = InMemoryDataModule(Playground("circle", n_samples=203), batch_size=10, seed=0, standardize=True)
    dm.setup()
    torch.manual_seed(0)
    reference = ClassificationModule(dm.input_size, dm.output_size, net=mlp([16]))
    opt = getattr(torch.optim, optimizer.rsplit(".", 1)[1])(reference.parameters(), lr=0.05)
    x, y = dm._tensors["train"]
    loader = dm.train_dataloader()
    train_reference(reference.net, F.cross_entropy, opt, x, y, [loader.order(epoch) for epoch in range(2)], 10)
    assert torch.allclose(params(module), params(reference), atol=1e-6)


def test_gather_span_changes_no_result(monkeypatch) -> None:
    """Several gathers an epoch (targets joined for the metrics) or one: same weights, same
    logged training values, also when max_steps cuts an epoch short inside a span."""
    results = []
    for span in (4096, 50):  # 50: spans of 2 groups of 20, the third epoch's last one cut at 100 samples
        monkeypatch.setattr(EpochLoop, "gather_samples", span)
        dm = InMemoryDataModule(Playground("circle", n_samples=203), batch_size=10, seed=0)
        torch.manual_seed(0)
        module = ClassificationModule(2, 2, net=mlp([8]), accumulate_grad_batches=2)
        t = trainer(max_epochs=3, max_steps=21)  # 8 groups an epoch: the third epoch stops after 5
        t.fit(module, dm)
        values = {k: float(v) for k, v in t.callback_metrics.items() if k.startswith("train/")}
        results.append((params(module), values, t.global_step))
    (p1, v1, s1), (p2, v2, s2) = results
    assert s1 == s2 == 21
    assert torch.equal(p1, p2)
    assert set(v1) == {"train/loss", "train/acc", "train/f1"} and v1 == v2


def test_global_step_counts_optimizer_steps_and_max_steps_stops_mid_epoch() -> None:
    dm = InMemoryDataModule(Playground("circle", n_samples=203), batch_size=10, seed=0)
    module = ClassificationModule(2, 2, net=mlp([4]), accumulate_grad_batches=2)
    t = trainer(max_epochs=3)
    t.fit(module, dm)
    assert t.global_step == 3 * 8  # 142 samples / (10 * 2) -> 8 groups per epoch
    module = ClassificationModule(2, 2, net=mlp([4]))
    t = trainer(max_epochs=10, max_steps=20)
    t.fit(module, dm)
    assert t.global_step == 20 and t.current_epoch <= 2


def test_gradient_clipping_bounds_each_update() -> None:
    clipped = fit(batch_size=142, optimizer={"_target_": "torch.optim.SGD", "lr": 1.0}, gradient_clip_val=1e-3)
    start = fit(batch_size=142, epochs=0)
    # one SGD step of lr 1 with a gradient of norm <= 1e-3 moves the parameters by <= 1e-3
    assert 0 < (params(clipped) - params(start)).norm() <= 1e-3 + 1e-7


def test_scheduler_steps_per_epoch() -> None:
    module = fit(
        batch_size=32,
        epochs=3,
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 1, "gamma": 0.5},
    )
    assert module.optimizers().param_groups[0]["lr"] == pytest.approx(0.5 * 0.5**3)


class ValHistory(L.Callback):
    def __init__(self) -> None:
        self.acc: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.acc.append(float(trainer.callback_metrics["val/acc"]))


def test_metrics_logged_per_stage() -> None:
    dm = InMemoryDataModule(SklearnSet("iris"), seed=0)
    module = ClassificationModule(4, 3, net=mlp([16]), optimizer={"_target_": "torch.optim.Adam", "lr": 0.01})
    history = ValHistory()
    t = trainer(max_epochs=30, limit_val_batches=1.0, callbacks=[history])
    t.fit(module, dm)
    logged = set(t.callback_metrics)
    assert {"train/loss", "train/acc", "train/f1", "val/loss", "val/acc", "val/f1", "val/acc_best"} <= logged
    assert len(history.acc) == 30 and float(t.callback_metrics["val/acc_best"]) == pytest.approx(max(history.acc))
    results = t.test(module, dm, verbose=False)[0]
    assert set(results) == {"test/loss", "test/acc", "test/f1"} and results["test/acc"] > 0.8


def test_regression_metrics() -> None:
    dm = InMemoryDataModule(Playground("plane", n_samples=400), batch_size=16, seed=0, standardize=True)
    module = RegressionModule(2, 1, net=mlp([16]), optimizer={"_target_": "torch.optim.Adam", "lr": 0.01})
    t = trainer(max_epochs=20, limit_val_batches=1.0)
    t.fit(module, dm)
    assert {"train/mse", "train/mae", "train/r2", "val/mse", "val/r2", "val/mse_best"} <= set(t.callback_metrics)
    results = t.test(module, dm, verbose=False)[0]
    assert results["test/r2"] > 0.95 and results["test/mse"] < 0.05


def test_checkpoint_holds_primitives_and_reloads(tmp_path: Path) -> None:
    dm = InMemoryDataModule(SklearnSet("wine"), seed=0)
    module = ClassificationModule(
        13,
        3,
        net=mlp([8], activation="tanh"),
        loss={"name": "cross_entropy", "label_smoothing": 0.1},
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "fused": "auto"},
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "gamma": 0.5},
        class_names=["a", "b", "c"],
    )
    t = trainer(max_epochs=2, enable_checkpointing=True, default_root_dir=tmp_path)
    t.fit(module, dm)
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # primitives only, or this raises
    assert checkpoint["hyper_parameters"]["net"]["activation"] == "tanh"
    reloaded = load_module(str(path))
    assert isinstance(reloaded, ClassificationModule) and reloaded.loss_name == "cross_entropy"
    x = torch.randn(4, 13)
    module.eval()
    reloaded.eval()
    assert torch.equal(module(x), reloaded(x))


def test_divergence_stops_the_epoch_it_happens_and_names_the_step() -> None:
    dm = InMemoryDataModule(Playground("circle", n_samples=203), batch_size=10, seed=0)
    module = ClassificationModule(2, 2, net=mlp([4]), optimizer={"_target_": "torch.optim.SGD", "lr": 1e30})
    t = trainer(max_epochs=3)
    with pytest.raises(DivergedError, match=r"loss is nan at optimizer step 2 \(epoch 0\); try a smaller"):
        t.fit(module, dm)
    assert t.current_epoch == 0 and t.global_step == 15  # checked once, at the end of that epoch (142 samples)


class StubStrategy:
    """What ``_sum_over_processes`` needs of a DDP strategy: two processes with the same sums."""

    def __init__(self) -> None:
        self.reduced: list[torch.Tensor] = []

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "sum"
        self.reduced.append(tensor)
        return tensor * 2


def test_ddp_sum_of_epoch_sums_is_float32_under_half_precision() -> None:
    module = ClassificationModule(2, 2, net=mlp([4]))
    strategy = StubStrategy()
    module._trainer = SimpleNamespace(strategy=strategy)  # type: ignore[assignment]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # what 16-true sets inside training_step
    try:
        sums = module._sum_over_processes([70000.0, 0.987654, 1.0])
    finally:
        torch.set_default_dtype(default)
    assert strategy.reduced[0].dtype == torch.float32
    assert sums == [140000.0, pytest.approx(1.975308, rel=1e-6), 2.0]


def test_divergence_on_another_process_is_named_so() -> None:
    module = ClassificationModule(2, 2, net=mlp([4]), accumulate_grad_batches=2)
    module._trainer = SimpleNamespace(current_epoch=3)  # type: ignore[assignment]
    module._lr = lambda: 0.1  # type: ignore[method-assign]
    with pytest.raises(DivergedError, match=r"loss is inf at optimizer step 12 \(epoch 3\)"):
        module._diverged(float("nan"), [0.5, 0.4, float("inf"), float("nan"), 0.3], first_step=10, accumulate=2)
    # every loss here was finite: the mean over processes went NaN elsewhere, by this epoch's last step
    with pytest.raises(DivergedError, match=r"loss is nan on another process by optimizer step 13 \(epoch 3\)"):
        module._diverged(float("nan"), [0.5, 0.4, 0.3, 0.2, 0.1], first_step=10, accumulate=2)


def test_epoch_metrics_equal_torchmetrics_with_absent_classes() -> None:
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    module = ClassificationModule(2, 5, net=mlp([4]))
    generator = torch.Generator().manual_seed(0)
    for trial in range(100):
        n = int(torch.randint(1, 60, (1,), generator=generator))
        used = 1 + trial % 5  # some classes never appear in the target or the predictions
        predictions = torch.randint(0, used, (n,), generator=generator)
        target = torch.randint(0, min(5, used + trial % 2), (n,), generator=generator)
        outputs = torch.nn.functional.one_hot(predictions, 5).float()  # logits whose argmax is the prediction
        got = module.epoch_metrics(module.epoch_statistics(outputs, target).tolist(), n)
        assert got["acc"] == pytest.approx(float(multiclass_accuracy(predictions, target, 5, average="micro")))
        assert got["f1"] == pytest.approx(float(multiclass_f1_score(predictions, target, 5, average="macro")))


def test_regression_epoch_metrics_equal_torchmetrics_and_add_up_over_parts() -> None:
    from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

    generator = torch.Generator().manual_seed(0)
    for trial in range(60):
        d = 1 + trial % 3
        module = RegressionModule(2, d, net=mlp([4]))
        n = int(torch.randint(2, 50, (1,), generator=generator))
        target = 3 + 2 * torch.randn(n, d, generator=generator)
        outputs = target + torch.randn(n, d, generator=generator) * (trial % 4) / 2  # trial % 4 == 0: exact
        if trial % 5 == 0:  # a constant target: torchmetrics' special cases, missed (0) and met (1)
            target[:, 0] = 1.5
            if trial % 10 == 0:
                outputs[:, 0] = 1.5
        got = module.epoch_metrics(module.epoch_statistics(outputs, target).tolist(), n)
        assert got["mse"] == pytest.approx(float(mean_squared_error(outputs, target)), rel=1e-5, abs=1e-6)
        assert got["mae"] == pytest.approx(float(mean_absolute_error(outputs, target)), rel=1e-5, abs=1e-6)
        assert got["r2"] == pytest.approx(float(r2_score(outputs, target)), rel=1e-4, abs=1e-4)
        # the statistics of two parts add up to the whole's (validation batches, DDP processes)
        k = n // 2
        parts = module.epoch_statistics(outputs[:k], target[:k]) + module.epoch_statistics(outputs[k:], target[k:])
        assert module.epoch_metrics(parts.tolist(), n) == pytest.approx(got, rel=1e-4, abs=1e-5)
    assert math.isnan(module.epoch_metrics(module.epoch_statistics(outputs[:1], target[:1]).tolist(), 1)["r2"])


class FinalNet(L.Callback):
    """Keeps a copy of the network as it was validated in the last epoch."""

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.net = copy.deepcopy(pl_module.net).eval()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_validation_values_equal_torchmetrics_over_several_batches(task: str) -> None:
    """Validation adds up its statistics over batches (here 4, the last one short)."""
    name, eval_batch_size = ("iris", 4) if task == "classification" else ("diabetes", 12)
    dm = InMemoryDataModule(SklearnSet(name), seed=0, batch_size=16, eval_batch_size=eval_batch_size, standardize=True)
    dm.setup()
    module_class = ClassificationModule if task == "classification" else RegressionModule
    module = module_class(dm.input_size, dm.output_size, net=mlp([8]), optimizer=SGD | {"lr": 0.05})
    final = FinalNet()
    t = trainer(max_epochs=3, limit_val_batches=1.0, callbacks=[final])
    t.fit(module, dm)
    x, y = dm.val_dataloader().x, dm.val_dataloader().y
    assert 3 * eval_batch_size < len(y) < 4 * eval_batch_size
    with torch.no_grad():
        output = final.net(x)
    expected = {"val/loss": float(module.criterion(output, y))}
    metrics = module.make_metrics()  # torchmetrics, as the test stage uses
    expected |= {f"val/{k}": float(v) for k, v in metrics(module.prediction(output), y).items()}
    got = {k: float(t.callback_metrics[k]) for k in expected}
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


class ModeProbe(L.Callback):
    """Records whether the network is in train mode in each stage's batches."""

    def __init__(self) -> None:
        self.seen: dict[str, set[bool]] = {"train": set(), "val": set(), "test": set()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen["train"].add(pl_module.net.training)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen["val"].add(pl_module.net.training)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen["test"].add(pl_module.net.training)


def test_network_is_in_eval_mode_only_for_evaluation() -> None:
    dm = InMemoryDataModule(SklearnSet("iris"), seed=0)
    module = ClassificationModule(4, 3, net=mlp([16], dropout=0.5))
    probe = ModeProbe()
    t = trainer(max_epochs=3, limit_val_batches=1.0, num_sanity_val_steps=1, callbacks=[probe])
    t.fit(module, dm)
    t.test(module, dm, verbose=False)
    assert probe.seen == {"train": {True}, "val": {False}, "test": {False}}


def test_batches_on_the_device_pass_through_and_others_move() -> None:
    dm = InMemoryDataModule(SklearnSet("iris"), seed=0)
    dm.setup()
    epoch = next(iter(dm.train_dataloader()))
    assert dm.transfer_batch_to_device(epoch, torch.device("cpu"), 0) is epoch
    x, y = next(iter(dm.val_dataloader()))
    on_meta = dm.transfer_batch_to_device((x, y), torch.device("meta"), 0)
    assert [t.device.type for t in on_meta] == ["meta", "meta"]
