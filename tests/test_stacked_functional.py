"""Networks other than dllab's MLP stacked through torch.func (dllab.stacked.functional): each
model trains as its solo run, bit for bit (batch norm and dropout included); what cannot stack
is refused at build time with one line that says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dllab.models.cnn import CNN
from dllab.runs.fit import train
from dllab.stacked.functional import FunctionalStack
from dllab.stacked.group import StackedGroup, build_job, stack_key, unstackable_reason
from tests.conftest import compose_train
from tests.test_stacked import solo_history

BASE = ["data=digits", "trainer.max_epochs=3", "plots=none", "logger=csv", "threads=1"]
CNN_SMALL = ["model=cnn", "model.channels=[4]", "model.hidden_sizes=[16]"]


class KwargsNet(nn.Module):
    """A user's network that takes whatever the config and the data give (``**kwargs``): a
    convolution over the images, a tanh layer and a linear skip connection."""

    def __init__(self, width: int = 8, **kwargs: Any) -> None:
        super().__init__()
        channels, height, breadth = kwargs["image_shape"]
        self.conv = nn.Conv2d(channels, 2, 3, padding=1)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(2 * height * breadth, width), nn.Tanh())
        self.out = nn.Linear(width, kwargs["output_size"])
        self.skip = nn.Linear(kwargs["input_size"], kwargs["output_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(self.conv(x))) + self.skip(x.flatten(1))


class DropsInForward(KwargsNet):
    """Dropout called as a function in the forward (no module says so)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(super().forward(x), 0.3, self.training)


NETWORKS = {
    "cnn": CNN_SMALL,
    "kwargs": ["model._target_=tests.test_stacked_functional.KwargsNet", "+model.width=12"],
    "cnn_batch_norm": [*CNN_SMALL, "model.batch_norm=true"],
    "cnn_dropout": [*CNN_SMALL, "model.dropout=0.2"],
    "mlp_batch_norm": ["model.hidden_sizes=[16]", "model.batch_norm=true", "model.dropout=0.1"],
    "dropout_in_forward": ["model._target_=tests.test_stacked_functional.DropsInForward"],
}
# per model: its own seed and hyperparameters
OPTIMIZERS = {
    "sgd": [
        ["seed=1", "optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9"],
        ["seed=2", "optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.5"],
        ["seed=3", "optimizer=sgd", "optimizer.lr=0.02", "optimizer.momentum=0.9"],
    ],
    "adam": [
        ["seed=1", "optimizer=adam", "optimizer.lr=0.001"],
        ["seed=2", "optimizer=adam", "optimizer.lr=0.003", "optimizer.weight_decay=0.01"],
    ],
}
CASES = [
    ("cnn", "sgd"),
    ("cnn", "adam"),
    ("kwargs", "adam"),
    ("cnn_batch_norm", "adam"),
    ("cnn_dropout", "sgd"),
    ("mlp_batch_norm", "adam"),
    ("dropout_in_forward", "sgd"),
]


@pytest.mark.parametrize(("network", "optimizer"), CASES)
def test_a_functional_stack_trains_each_model_as_its_solo_run(network: str, optimizer: str, tmp_path: Path) -> None:
    models = OPTIMIZERS[optimizer]
    configs = [compose_train([*BASE, *NETWORKS[network], *m], tmp_path / f"solo{i}") for i, m in enumerate(models)]
    assert len({stack_key(cfg) for cfg in configs}) == 1 and unstackable_reason(configs[0]) is None
    jobs = [build_job(cfg.copy()) for cfg in configs]
    group = StackedGroup(jobs)
    assert isinstance(group.net, FunctionalStack)
    for i, job in enumerate(jobs):  # the stack starts from each model's own weights, keyed as its state_dict
        solo_state = job.module.net.state_dict()
        state = group.net.model_state_dict(i)
        assert list(state) == list(solo_state)
        assert all(torch.equal(state[k], solo_state[k]) for k in state)
        assert [p[i].shape for p in group.net.ordered_parameters()] == [p.shape for p in job.module.parameters()]
    weights = sum(p.numel() * 4 for p in group.net.ordered_parameters())
    assert group.tensor_bytes() > 2 * weights  # weights, gradients, optimizer state, splits
    results = group.fit()
    for cfg, result in zip(configs, results, strict=True):
        solo = train(cfg)
        run_dir = Path(cfg.paths.output_dir)
        assert result.status == solo["status"] and result.epochs == solo["epochs"] == 3
        assert result.steps == solo["global_step"] and result.best is not None
        assert result.best.epoch == solo["best_epoch"]
        history = solo_history(run_dir)
        assert len(history) == len(result.history)
        for theirs, mine in zip(history, result.history, strict=True):
            for key, value in mine.items():
                assert value == pytest.approx(theirs[key], rel=1e-6, abs=1e-7), key  # the CSV's digits
        last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        assert result.final is not None
        assert set(result.final.net_state) == {
            k.removeprefix("net.") for k in last["state_dict"] if k.startswith("net.")
        }
        for key, value in result.final.net_state.items():
            # bit for bit here; 1e-6 holds on every CPU (BLAS may round an unaligned slice otherwise)
            torch.testing.assert_close(value, last["state_dict"][f"net.{key}"], rtol=0, atol=1e-6, msg=key)
    first, second = (r.final.net_state for r in results[:2] if r.final is not None)
    assert all(not torch.equal(first[k], second[k]) for k in first if k.endswith("weight"))  # each model its own


class Counting(nn.Module):
    """A buffer that every training forward changes (as batch norm's running statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return self.linear(x)


class RandomWidth(nn.Module):
    """A network whose width its seed decides: the models of one config differ in shape."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        width = int(torch.randint(2, 50, ()).item())
        self.layers = nn.Sequential(nn.Linear(kwargs["input_size"], width), nn.Linear(width, kwargs["output_size"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def small_cnn(**options: Any) -> CNN:
    return CNN([1, 8, 8], 10, [4], **{"hidden_sizes": [16], **options})


def frozen(net: nn.Module) -> nn.Module:
    net.linear.bias.requires_grad_(False)  # type: ignore[union-attr]
    return net


def test_a_buffer_a_step_changes_is_each_models_own() -> None:
    """Running statistics (here a counter) are each model's slice, updated in place; the trial
    forward at build time leaves them as they were."""
    stack = FunctionalStack([Counting(), Counting()], torch.randn(2, 4))
    assert [stack.model_state_dict(i)["calls"].item() for i in range(2)] == [0.0, 0.0]
    stack.train()
    stack(torch.randn(2, 5, 4))
    stack(torch.randn(2, 5, 4))
    assert [stack.model_state_dict(i)["calls"].item() for i in range(2)] == [2.0, 2.0]


@pytest.mark.parametrize(
    ("nets", "reason"),
    [
        (
            lambda: [small_cnn(), small_cnn(hidden_sizes=[8])],
            r"model 1's network differs from model 0's \(parameter head\.layers\.1\.weight: \[8, 64\]",
        ),
        (lambda: [small_cnn(), Counting()], r"model 1's network differs from model 0's \(.*Counting, not .*CNN\)"),
        (lambda: [nn.Flatten(), nn.Flatten()], "torch.nn.modules.flatten.Flatten has no parameters"),
        (lambda: [frozen(Counting()), frozen(Counting())], r"Counting's parameter linear.bias is frozen"),
    ],
    ids=["shapes", "classes", "no_parameters", "frozen"],
)
def test_a_network_that_cannot_stack_says_why_in_one_line(nets: Any, reason: str) -> None:
    built = nets()
    before = [{k: v.clone() for k, v in net.state_dict().items()} for net in built]
    sample = torch.randn(2, 1, 8, 8) if isinstance(built[0], CNN) else torch.randn(2, 4)
    with pytest.raises(ValueError, match=reason) as raised:
        FunctionalStack(built, sample)
    assert "\n" not in str(raised.value)
    for net, state in zip(built, before, strict=True):  # the trial leaves the solo networks as they were
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ([*CNN_SMALL], None),
        ([*CNN_SMALL, "model.batch_norm=true"], None),  # each model its own running statistics
        ([*CNN_SMALL, "model.dropout=0.2"], None),  # each model its own dropout stream
        (["model.dropout=0.2", "model.batch_norm=true"], None),
        (["module=my_modules.Mine"], "module=my_modules.Mine does not stack"),  # its own step: trains alone
    ],
)
def test_what_the_config_says_of_a_network(overrides: list[str], reason: str | None, tmp_path: Path) -> None:
    assert unstackable_reason(compose_train([*BASE, *overrides], tmp_path / "run")) == reason


def test_a_stack_of_networks_that_cannot_stack_is_not_built(tmp_path: Path) -> None:
    """What only the built networks show (here shapes their seeds decide) refuses the stack,
    and the launcher then trains its jobs alone."""
    target = "model._target_=tests.test_stacked_functional.RandomWidth"
    mlp_keys = ["~model.hidden_sizes", "~model.activation", "~model.dropout", "~model.batch_norm"]
    configs = [compose_train([*BASE, target, *mlp_keys, f"seed={s}"], tmp_path / f"run{s}") for s in (1, 2)]
    with pytest.raises(ValueError, match="model 1's network differs from model 0's"):
        StackedGroup([build_job(cfg.copy()) for cfg in configs])


def test_a_module_with_parameters_beside_its_network_does_not_stack(tmp_path: Path) -> None:
    """The solo optimizer steps ``module.parameters()`` (configure_optimizers): a stack steps
    only the network's, so a module with more trains alone."""
    job = build_job(compose_train([*BASE, *CNN_SMALL], tmp_path / "run"))
    job.module.temperature = nn.Parameter(torch.ones(()))
    with pytest.raises(ValueError, match="ClassificationModule has parameters beside its network's"):
        StackedGroup([job])
