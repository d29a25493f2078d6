"""The epoch loop on its own (plain PyTorch): equal to the textbook loop, exact accumulation,
step limits, hooks in Lightning's order, and a step count that survives an interrupt."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dllab.training.epoch_loop import EpochLoop, StepHooks
from dllab.training.reference_loop import train_reference


def data(n: int = 53) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return x, (x[:, 0] > 0).long()


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def loop_for(model: nn.Module, optimizer: torch.optim.Optimizer, **options) -> EpochLoop:
    def step(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        output = model(x)
        return F.cross_entropy(output, y), output

    return EpochLoop(step, optimizer, model.parameters, **options)


def params(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(("batch_size", "accumulate"), [(10, 1), (4, 3), (53, 1)])
@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.Adagrad])
@pytest.mark.parametrize("gather", [4096, 12])
def test_equals_the_textbook_loop(batch_size: int, accumulate: int, optimizer: type, gather: int, monkeypatch) -> None:
    """Same weights, same orders: the same parameters to 1e-6, the last, smaller group included
    (53 samples), with spans of whole groups gathered at once or several per epoch."""
    monkeypatch.setattr(EpochLoop, "gather_samples", gather)
    x, y = data()
    orders = [torch.randperm(53, generator=torch.Generator().manual_seed(e)) for e in range(3)]
    fast, slow = net(), net()
    loop = loop_for(fast, optimizer(fast.parameters(), lr=0.05), accumulate=accumulate)
    means = []
    for order in orders:
        result = loop.run(x, y, order, batch_size)
        assert result.steps == -(-53 // (batch_size * accumulate))
        assert sum(result.sizes) == 53 and torch.equal(result.targets, y[order])
        means.append(sum(float(loss) * size for loss, size in zip(result.losses, result.sizes, strict=True)) / 53)
    reference = train_reference(
        slow, F.cross_entropy, optimizer(slow.parameters(), lr=0.05), x, y, orders, batch_size, accumulate
    )
    assert torch.allclose(params(fast), params(slow), atol=1e-6)
    assert means == pytest.approx(reference, abs=1e-6)
    assert not torch.allclose(params(fast), params(net()))


def test_accumulation_equals_the_large_batch() -> None:
    x, y = data()
    order = torch.randperm(53, generator=torch.Generator().manual_seed(1))
    large, accumulated = net(), net()
    loop_for(large, torch.optim.SGD(large.parameters(), lr=0.5)).run(x, y, order, 12)
    loop_for(accumulated, torch.optim.SGD(accumulated.parameters(), lr=0.5), accumulate=4).run(x, y, order, 3)
    assert torch.allclose(params(large), params(accumulated), atol=1e-6)


def test_max_steps_ends_the_epoch_and_every_step_is_counted() -> None:
    x, y = data()
    model = net()
    counted: list[int] = []
    loop = loop_for(model, torch.optim.SGD(model.parameters(), lr=0.1), count_steps=counted.append)
    result = loop.run(x, y, torch.arange(53), 10, max_steps=2)
    assert (result.steps, result.sizes) == (2, [10, 10])
    assert torch.equal(result.targets, y[:20]) and result.outputs.shape == (20, 2)
    assert counted == [2]  # once per epoch without hooks
    assert loop.run(x, y, torch.arange(53), 10, max_steps=0).steps == 0


def test_an_interrupted_epoch_still_counts_its_steps() -> None:
    x, y = data()
    model = net()
    counted: list[int] = []
    calls = 0

    def step(features: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt
        output = model(features)
        return F.cross_entropy(output, target), output

    loop = EpochLoop(step, torch.optim.SGD(model.parameters(), lr=0.1), model.parameters, count_steps=counted.append)
    with pytest.raises(KeyboardInterrupt):
        loop.run(x, y, torch.arange(53), 10)
    assert counted == [3]


def test_hooks_run_in_lightnings_order_and_batch_start_can_end_the_epoch() -> None:
    x, y = data(20)
    model = net()
    events: list[str] = []
    counted: list[int] = []
    hooks = StepHooks(
        batch_start=[lambda batch, i: events.append(f"start {i} {len(batch[0])}") or (-1 if i == 5 else None)],
        before_backward=[lambda loss: events.append("backward")],
        after_backward=[lambda: events.append("backward done")],
        before_optimizer_step=[lambda opt: events.append(f"step grad={model[0].weight.grad is not None}")],
        before_zero_grad=[lambda opt: events.append("zero_grad")],
        batch_end=[lambda out, batch, i: events.append(f"end {i} loss={out['loss'].ndim}")],
    )
    loop = loop_for(model, torch.optim.SGD(model.parameters(), lr=0.1), accumulate=2, hooks=hooks,
                    count_steps=counted.append)  # fmt: skip
    result = loop.run(x, y, torch.arange(20), 4)  # 5 micro-batches: groups of 2, 2, 1
    group = ["backward", "backward done"]
    step = ["step grad=True", "zero_grad"]
    assert events == [
        "start 0 4", *group, "end 0 loss=0",
        "start 1 4", *group, *step, "end 1 loss=0",
        "start 2 4", *group, "end 2 loss=0",
        "start 3 4", *group, *step, "end 3 loss=0",
        "start 4 4", *group, *step, "end 4 loss=0",
    ]  # fmt: skip
    assert counted == [1, 1, 1]  # after each step, so that hooks see the count
    events.clear()
    result = loop.run(x, y, torch.arange(20), 2)  # 10 micro-batches; batch_start returns -1 at the 6th
    assert len(result.losses) == 5 and result.steps == 2  # the 5th micro-batch's group was cut short
    assert all(p.grad is None for p in model.parameters())  # and its gradient does not leak into the next epoch
    assert torch.equal(result.targets, y[:10])
    assert events[-1] == "start 5 2"


def test_clipping_and_a_transform_apply() -> None:
    x, y = data()
    clipped, plain = net(), net()
    grads: list[float] = []
    hooks = StepHooks(before_zero_grad=[lambda opt: grads.append(0.0)])
    big_lr = {"lr": 10.0}
    loop_for(clipped, torch.optim.SGD(clipped.parameters(), **big_lr), clip_val=1e-3, hooks=hooks).run(
        x, y, torch.arange(53), 53
    )
    loop_for(plain, torch.optim.SGD(plain.parameters(), **big_lr)).run(x, y, torch.arange(53), 53)
    moved = (params(clipped) - params(net())).norm()
    assert moved <= 10.0 * 1e-3 + 1e-6 < (params(plain) - params(net())).norm()
    assert grads == [0.0]
    zeroed = net()
    before = copy.deepcopy(zeroed)
    loop_for(zeroed, torch.optim.SGD(zeroed.parameters(), lr=1.0), transform=torch.zeros_like).run(
        x, y, torch.arange(53), 53
    )
    assert torch.allclose(zeroed[0].weight, before[0].weight)  # zero inputs: no gradient for the first layer's weights
