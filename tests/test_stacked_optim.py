"""StackedOptimizer steps each stacked model bit-identically to its own torch optimizer."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from dllab.stacked.optim import StackedOptimizer
from dllab.training.optim import build_optimizer

S = 4
SHAPES = [(5, 3), (5,), (2, 5), (2,)]


def configs(target: str, *options: dict[str, Any]) -> list[dict[str, Any]]:
    """One config per model, as conf/optimizer writes them (fused: auto unless an option says)."""
    return [{"_target_": f"torch.optim.{target}", "fused": "auto", **o} for o in options]


# Four models each, with different hyperparameters; a repeated one shares a group.
CASES: dict[str, list[dict[str, Any]]] = {
    "sgd-plain": configs("SGD", {"lr": 0.1}, {"lr": 0.05}, {"lr": 0.1}, {"lr": 0.01}),
    "sgd-momentum": configs(
        "SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.05}, {"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "momentum": 0.5}
    ),
    "sgd-nesterov": configs(
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        {"lr": 0.1, "momentum": 0.9},
        {"lr": 0.03, "momentum": 0.5, "nesterov": True},
        {"lr": 0.03, "momentum": 0.5, "nesterov": True},
    ),
    "sgd-decay-dampening": configs(
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.5},
        {"lr": 0.05, "weight_decay": 0.001},
    ),
    "sgd-implementations": configs(
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "maximize": True},
        {"lr": 0.1, "momentum": 0.9, "fused": False},
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "fused": None},
        {"lr": 0.1, "momentum": 0.9, "foreach": True},
    ),
    "adam": configs(
        "Adam",
        {"lr": 1e-3},
        {"lr": 1e-2, "betas": [0.8, 0.99]},
        {"lr": 1e-3},
        {"lr": 3e-2, "betas": [0.5, 0.9], "eps": 1e-6},
    ),
    "adam-decay-amsgrad": configs(
        "Adam",
        {"lr": 1e-2, "weight_decay": 0.01},
        {"lr": 1e-2, "amsgrad": True},
        {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True},
        {"lr": 1e-3},
    ),
    "adam-implementations": configs(
        "Adam",
        {"lr": 1e-2, "fused": False},
        {"lr": 1e-2, "fused": None, "amsgrad": True},
        {"lr": 1e-2, "foreach": True, "weight_decay": 0.01},
        {"lr": 1e-2, "maximize": True},
    ),
    "adamw": configs(
        "AdamW",
        {"lr": 1e-2},
        {"lr": 1e-2, "weight_decay": 0.0},
        {"lr": 3e-3, "weight_decay": 0.1, "amsgrad": True},
        {"lr": 1e-2, "weight_decay": 0.1, "fused": False},
    ),
    "adagrad": configs(
        "Adagrad",
        {"lr": 0.1},
        {"lr": 0.1, "lr_decay": 0.01},
        {"lr": 0.05, "weight_decay": 0.01, "lr_decay": 0.1},
        {"lr": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-6},
    ),
    "adagrad-implementations": configs(
        "Adagrad",
        {"lr": 0.1, "fused": False, "lr_decay": 0.01},
        {"lr": 0.1, "fused": None, "weight_decay": 0.01},
        {"lr": 0.1, "foreach": True},
        {"lr": 0.1, "maximize": True},
    ),
    "rmsprop": configs(
        "RMSprop",
        {"lr": 1e-2},
        {"lr": 1e-2, "momentum": 0.9},
        {"lr": 1e-2, "centered": True, "alpha": 0.9},
        {"lr": 3e-3, "momentum": 0.5, "centered": True},
    ),
    "rmsprop-decay-implementations": configs(
        "RMSprop",
        {"lr": 1e-2, "weight_decay": 0.01, "eps": 1e-6},
        {"lr": 1e-2, "momentum": 0.9, "foreach": True},
        {"lr": 1e-2, "maximize": True, "alpha": 0.5},
        {"lr": 1e-2, "weight_decay": 0.01, "eps": 1e-6},
    ),
    "nadam": configs(  # two 0-d states per param: step and mu_product (starts at 1)
        "NAdam",
        {"lr": 2e-3},
        {"lr": 2e-3, "momentum_decay": 0.01, "betas": [0.8, 0.99]},
        {"lr": 1e-2, "weight_decay": 0.01, "decoupled_weight_decay": True},
        {"lr": 1e-2, "weight_decay": 0.01, "foreach": True, "maximize": True},
    ),
}


class Twins:
    """A stack of S models and the same S models apart, each with its own torch optimizer."""

    def __init__(self, cfgs: Sequence[dict[str, Any]], seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        self.configs = list(cfgs)
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.stacked = [torch.randn(S, *shape, generator=self.gen, dtype=dtype).requires_grad_() for shape in SHAPES]
        self.solo = [[torch.nn.Parameter(p.detach()[i].clone()) for p in self.stacked] for i in range(S)]
        self.optimizer = StackedOptimizer(self.stacked, self.configs)
        self.solo_optimizers = [build_optimizer(c, ps) for c, ps in zip(self.configs, self.solo, strict=True)]

    def feed(self, without: Sequence[int] = (), in_place: bool = False) -> None:
        """The same random gradients to both; none for the params in ``without``.

        ``in_place``: into the stack's gradient tensors (as backward adds into zeroed ones).
        """
        for k, p in enumerate(self.stacked):
            if k in without:
                p.grad = None
                for model in self.solo:
                    model[k].grad = None
                continue
            grads = [torch.randn(SHAPES[k], generator=self.gen, dtype=self.dtype) for _ in range(S)]
            if in_place and p.grad is not None:
                p.grad.copy_(torch.stack(grads))
            else:
                p.grad = torch.stack(grads)
            for model, grad in zip(self.solo, grads, strict=True):
                model[k].grad = grad.clone()

    def step(self, active: Sequence[int] | None = None, without: Sequence[int] = ()) -> None:
        self.feed(without)
        self.optimizer.step(active)
        for i in range(S) if active is None else active:
            self.solo_optimizers[i].step()

    def assert_same(self, models: Sequence[int] = range(S)) -> None:
        for i in models:
            for k, p in enumerate(self.stacked):
                assert torch.equal(p.detach()[i], self.solo[i][k].detach()), f"model {i}, param {k}"

    def assert_same_state(self, models: Sequence[int] = range(S)) -> None:
        for i in models:
            assert_state_dicts_equal(self.optimizer.model_state_dict(i), self.solo_optimizers[i].state_dict())


def assert_state_dicts_equal(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert ours["param_groups"] == theirs["param_groups"]
    assert list(ours["state"]) == list(theirs["state"])
    for index, state in theirs["state"].items():
        assert list(ours["state"][index]) == list(state), f"state keys of param {index}"
        for key, value in state.items():
            mine = ours["state"][index][key]
            assert (mine.dtype, mine.device, mine.shape) == (value.dtype, value.device, value.shape), key
            assert torch.equal(mine, value), f"param {index}: {key}"


@pytest.mark.parametrize("case", list(CASES))
def test_each_model_matches_its_own_torch_optimizer(case: str) -> None:
    twins = Twins(CASES[case])
    twins.assert_same_state()  # Adagrad has state before the first step
    for _ in range(20):
        twins.step()
        twins.assert_same()
    twins.assert_same_state()


@pytest.mark.parametrize("case", ["sgd-nesterov", "adam-decay-amsgrad", "adagrad", "rmsprop", "nadam"])
def test_float64_models(case: str) -> None:
    twins = Twins(CASES[case], dtype=torch.float64)
    for _ in range(10):
        twins.step()
        twins.assert_same()
    twins.assert_same_state()


def test_the_comparison_sees_a_different_learning_rate() -> None:
    """The harness can fail: a stack whose model 1 has another lr than its twin differs."""
    wrong = [dict(c) for c in CASES["adam"]]
    wrong[1]["lr"] = 1.0001e-2
    twins = Twins(CASES["adam"])
    twins.optimizer = StackedOptimizer(twins.stacked, wrong)
    twins.step()
    twins.assert_same([0, 2, 3])
    with pytest.raises(AssertionError, match="model 1"):
        twins.assert_same([1])


def test_implementation_is_the_solo_optimizers() -> None:
    """Fused where build_optimizer picks it (SGD, Adam, AdamW, Adagrad on CPU); RMSprop has none."""
    for case in ("sgd-plain", "adam", "adamw", "adagrad", "rmsprop"):
        twins = Twins(CASES[case])
        for i in range(S):
            solo_group = twins.solo_optimizers[i].param_groups[0]
            assert twins.optimizer.hparams[i]["foreach"] == solo_group["foreach"]
            assert twins.optimizer.hparams[i].get("fused") == solo_group.get("fused")
            if twins.configs[i]["fused"] == "auto":
                assert solo_group.get("fused") is (None if case == "rmsprop" else True)


@pytest.mark.parametrize(("module", "case", "groups"), [("adam", "adam", 3), ("sgd", "sgd-momentum", 3)])
def test_one_functional_call_per_hyperparameter_group(
    monkeypatch: pytest.MonkeyPatch, module: str, case: str, groups: int
) -> None:
    functional_module = importlib.import_module(f"torch.optim.{module}")
    functional = getattr(functional_module, module)
    calls: list[int] = []

    @functools.wraps(functional)
    def counting(params: list[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        calls.append(len(params))
        functional(params, *args, **kwargs)

    monkeypatch.setattr(functional_module, module, counting)
    twins = Twins(CASES[case])
    for _ in range(3):
        twins.feed()
        calls.clear()
        twins.optimizer.step()
        assert len(calls) == groups
        assert sum(calls) == S * len(SHAPES)
        for opt in twins.solo_optimizers:
            opt.step()
        twins.assert_same()


@pytest.mark.parametrize("case", ["sgd-momentum", "adam-decay-amsgrad", "adagrad", "rmsprop", "nadam"])
def test_inactive_models_keep_params_and_state(case: str) -> None:
    twins = Twins(CASES[case])
    for _ in range(3):
        twins.step()
    frozen_params = [p.detach()[1].clone() for p in twins.stacked]
    frozen_state = twins.optimizer.model_state_dict(1)
    for active in ([0, 2, 3], [3, 0], [2]):
        for _ in range(3):
            twins.step(active)
            twins.assert_same()
            for k, p in enumerate(twins.stacked):
                assert torch.equal(p.detach()[1], frozen_params[k])
            assert_state_dicts_equal(twins.optimizer.model_state_dict(1), frozen_state)
    for _ in range(3):
        twins.step()
        twins.assert_same()
    twins.assert_same_state()


def test_model_that_starts_late_gets_torch_first_step() -> None:
    """A model inactive from the start begins its state (SGD's buffer from the gradient) when it joins."""
    twins = Twins(CASES["sgd-momentum"])
    for _ in range(4):
        twins.step([1, 2, 3])
    assert twins.optimizer.model_state_dict(0)["state"] == {}
    for _ in range(4):
        twins.step()
        twins.assert_same()
    twins.assert_same_state()


@pytest.mark.parametrize("case", ["sgd-momentum", "adam-decay-amsgrad", "adagrad", "rmsprop", "nadam"])
def test_params_without_gradient_are_skipped_as_torch_skips_them(case: str) -> None:
    cfgs = CASES[case]
    if case.startswith("sgd"):  # torch's fused SGD fails on a param whose first gradient comes late
        cfgs = [{**c, "fused": False} for c in cfgs]
    twins = Twins(cfgs)
    for n in range(10):
        without = [3] if n < 3 else [1, 2] if n == 5 else []
        twins.step(without=without)
        twins.assert_same()
        twins.assert_same_state()


@pytest.mark.parametrize("case", ["sgd-nesterov", "adam-decay-amsgrad", "adamw", "adagrad", "rmsprop", "nadam"])
def test_model_state_dict_resumes_in_a_solo_optimizer(case: str) -> None:
    twins = Twins(CASES[case])
    for _ in range(7):
        twins.step()
    for i in range(S):  # the solo twins restart from the stack's params and optimizer state
        for k, p in enumerate(twins.stacked):
            twins.solo[i][k] = torch.nn.Parameter(p.detach()[i].clone())
        twins.solo_optimizers[i] = build_optimizer(twins.configs[i], twins.solo[i])
        twins.solo_optimizers[i].load_state_dict(twins.optimizer.model_state_dict(i))
    for _ in range(8):
        twins.step()
        twins.assert_same()
    twins.assert_same_state()


def test_active_as_a_tensor() -> None:
    twins = Twins(CASES["sgd-momentum"])
    for _ in range(3):
        twins.feed()
        twins.optimizer.step(torch.tensor([0, 3]))
        for i in (0, 3):
            twins.solo_optimizers[i].step()
        twins.assert_same([0, 3])


def test_param_names_as_a_named_solo_optimizer_records_them() -> None:
    twins = Twins(CASES["adam"])
    names = [f"layer.{k}" for k in range(len(SHAPES))]
    named = build_optimizer(twins.configs[0], list(zip(names, twins.solo[0], strict=True)))
    twins.solo_optimizers[0] = named
    for _ in range(2):
        twins.step()
    assert_state_dicts_equal(twins.optimizer.model_state_dict(0, names), named.state_dict())


def test_gradients_written_in_place() -> None:
    """Gradient tensors kept across steps (zeroed in place, refilled): each step sees the new values."""
    twins = Twins(CASES["adam-decay-amsgrad"])
    kept = None
    for n in range(8):
        twins.optimizer.zero_grad(set_to_none=False)
        twins.feed(in_place=True, without=[2] if n == 4 else [])
        if n == 1:
            kept = [p.grad for p in twins.stacked]
        if n in (2, 3):
            assert all(p.grad is g for p, g in zip(twins.stacked, kept or [], strict=True))
        twins.optimizer.step()
        for opt in twins.solo_optimizers:
            opt.step()
        twins.assert_same()
    twins.assert_same_state()


def test_zero_grad() -> None:
    twins = Twins(CASES["sgd-plain"])
    twins.feed()
    twins.optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in twins.stacked)
    twins.optimizer.zero_grad()
    assert all(p.grad is None for p in twins.stacked)
    before = [p.detach().clone() for p in twins.stacked]
    twins.optimizer.step()  # nothing to do without gradients
    assert all(torch.equal(p, b) for p, b in zip(twins.stacked, before, strict=True))


def test_mixed_targets_are_refused() -> None:
    mixed = CASES["adam"][:2] + CASES["adamw"][:2]
    with pytest.raises(ValueError, match=r"optimizer\._target_"):
        StackedOptimizer([torch.zeros(S, 2, requires_grad=True)], mixed)


def test_unknown_argument_is_refused() -> None:
    bad = configs("SGD", *[{"lr": 0.1, "momentun": 0.9}] * S)
    with pytest.raises(ValueError, match=r"momentun.*SGD"):
        StackedOptimizer([torch.zeros(S, 2, requires_grad=True)], bad)


def test_fused_for_rmsprop_is_refused() -> None:
    with pytest.raises(ValueError, match="fused"):
        StackedOptimizer([torch.zeros(S, 2, requires_grad=True)], configs("RMSprop", *[{"fused": True}] * S))


def test_unsupported_optimizer_is_refused() -> None:
    lbfgs = [{"_target_": "torch.optim.LBFGS", "lr": 1.0}] * S
    with pytest.raises(ValueError, match=r"LBFGS.*torch\.optim\.SGD, torch\.optim\.Adam, .*torch\.optim\.RMSprop"):
        StackedOptimizer([torch.zeros(S, 2, requires_grad=True)], lbfgs)


def test_invalid_hyperparameter_is_refused_as_torch_refuses_it() -> None:
    with pytest.raises(ValueError, match="Invalid learning rate"):
        StackedOptimizer([torch.zeros(S, 2, requires_grad=True)], configs("Adam", *[{"lr": -1.0}] * S))


def test_shape_and_index_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \[S=4"):
        StackedOptimizer([torch.zeros(3, 2, requires_grad=True)], CASES["adam"])
    twins = Twins(CASES["adam"])
    twins.feed()
    with pytest.raises(IndexError):
        twins.optimizer.step([0, 4])
    with pytest.raises(IndexError):
        twins.optimizer.model_state_dict(-1)
