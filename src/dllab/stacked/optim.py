"""One optimizer for S models stacked into [S, ...] tensors, each with its own hyperparameters.

torch.optim keeps hyperparameters per parameter group, and a group holds whole tensors: it
cannot give each slice ``stacked[i]`` of a stacked tensor its own learning rate. This
optimizer groups the models by equal hyperparameters and, per group, calls torch's own
functional update (``torch.optim.sgd.sgd``, ``adam.adam``, ``adagrad.adagrad``,
``rmsprop.rmsprop``) once, on the lists of the group's per-model slices, with the
implementation (fused, foreach or for-loop) that ``dllab.training.optim.build_optimizer``
would give the model alone. Every model therefore ends bit-identical to its solo training,
and its state (stacked too, ``[S, ...]``) converts to a solo optimizer's ``state_dict``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import torch
from hydra.utils import get_class
from torch import Tensor

from dllab import compat
from dllab.training.optim import build_optimizer
from dllab.training.optim_checks import check_optimizer_keys


@dataclass(frozen=True)
class Spec:
    """How one torch optimizer class is stepped: its functional update, called as
    ``function(params, grads, *lists, **hyperparameters)``.

    - ``lists``: the update's per-param state lists in its argument order, 0-d ones included
      (one not kept for these hyperparameters is passed empty);
    - ``kept(hp)``: the param-shaped state torch keeps, in its ``state_dict`` order;
    - ``scalars``: the 0-d state per param (name, initial value), before the others in the
      ``state_dict``, on the CPU unless fused or capturable (as torch hosts ``step``);
    - ``initial``: a state that starts at a hyperparameter's value instead of 0;
    - ``eager``: torch makes the state in the constructor, not at a param's first step;
    - ``from_gradient``: a state torch starts as the first gradient (SGD's momentum buffer).
    """

    function: str
    lists: tuple[str, ...]
    kept: Callable[[Mapping[str, Any]], tuple[str, ...]]
    scalars: tuple[tuple[str, float], ...] = (("step", 0.0),)
    initial: Mapping[str, str] = field(default_factory=dict)
    eager: bool = False
    from_gradient: str | None = None


def _rmsprop_state(hp: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        "square_avg",
        *(("momentum_buffer",) if hp["momentum"] > 0 else ()),
        *(("grad_avg",) if hp["centered"] else ()),
    )


_ADAM = Spec(
    "torch.optim.adam.adam",
    ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"),
    lambda hp: ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if hp["amsgrad"] else ())),
)

# The classes StackedOptimizer steps: adding one is one entry. AdamW is Adam with
# ``decoupled_weight_decay=True`` in its param group, which ``adam`` receives.
SUPPORTED: dict[type[torch.optim.Optimizer], Spec] = {
    torch.optim.SGD: Spec(
        "torch.optim.sgd.sgd",
        ("momentum_buffer",),
        lambda hp: ("momentum_buffer",) if hp["momentum"] != 0 else (),
        scalars=(),
        from_gradient="momentum_buffer",
    ),
    torch.optim.Adam: _ADAM,
    torch.optim.AdamW: _ADAM,
    torch.optim.Adagrad: Spec(
        "torch.optim.adagrad.adagrad",
        ("sum", "step"),
        lambda hp: ("sum",),
        initial={"sum": "initial_accumulator_value"},
        eager=True,
    ),
    torch.optim.RMSprop: Spec(
        "torch.optim.rmsprop.rmsprop", ("square_avg", "grad_avg", "momentum_buffer", "step"), _rmsprop_state
    ),
    torch.optim.NAdam: Spec(
        "torch.optim.nadam.nadam",
        ("exp_avg", "exp_avg_sq", "mu_product", "step"),
        lambda hp: ("exp_avg", "exp_avg_sq"),
        scalars=(("step", 0.0), ("mu_product", 1.0)),
    ),
}

# Param-group keys that are not hyperparameters.
GROUP_KEYS = frozenset({"params", "param_names"})


def _supported_names() -> str:
    return ", ".join(f"torch.optim.{cls.__name__}" for cls in SUPPORTED)


def _optimizer_class(config: Mapping[str, Any]) -> type[torch.optim.Optimizer]:
    target = config.get("_target_")
    if not isinstance(target, str):
        raise ValueError(f"optimizer._target_ must name one of {_supported_names()}, got {target!r}")
    try:
        cls = get_class(target)
    except Exception as error:  # hydra raises ImportError or its own errors
        raise ValueError(f"optimizer._target_={target!r} is not a class: {error}") from error
    if cls not in SUPPORTED:
        raise ValueError(
            f"optimizer._target_={target!r} cannot be stacked; StackedOptimizer supports {_supported_names()}"
        )
    return cls


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a hyperparameter value, equal where the values are."""
    if isinstance(value, Tensor):
        return ("tensor", id(value))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _group_key(hparams: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, _frozen(v)) for k, v in hparams.items()))


def _scalar_kind(hp: Mapping[str, Any], device: torch.device) -> tuple[torch.dtype, torch.device]:
    """Dtype and device of torch's 0-d state (``step``): on the param's device when fused or capturable."""
    on_device = bool(hp.get("fused")) or bool(hp.get("capturable"))
    return compat.scalar_dtype(is_fused=hp.get("fused")), (device if on_device else torch.device("cpu"))


def _picker(indices: list[int]) -> Callable[[Sequence[Tensor]], list[Tensor]]:
    """``[flat[j] for j in indices]``, fast."""
    if len(indices) == 1:
        (index,) = indices
        return lambda flat: [flat[index]]
    getter = itemgetter(*indices)
    return lambda flat: list(getter(flat))


@dataclass
class _Call:
    """One functional update: the lists of one hyperparameter group's slices."""

    kwargs: dict[str, Any]
    params: list[Tensor]
    grads: Callable[[Sequence[Tensor]], list[Tensor]]  # picks this call's slices from the flat grad list
    states: dict[str, list[Tensor]]
    scalars: dict[str, list[Tensor]]
    fresh: list[tuple[int, int]]  # (model, param) pairs that get their torch state with this step
    first_momentum: bool = False  # SGD's first step: torch's buffers start as None, copied into ours after


class StackedOptimizer:
    """Steps S stacked models, model i exactly as ``build_optimizer(configs[i], ...)`` alone would.

    ``params`` are the stacked leaf tensors, each ``[S, *shape]``, model i's tensor being
    ``stacked[i]``; ``configs`` one optimizer config per model (dllab's format, the same
    ``_target_`` for all). The params must stay the same tensors (the optimizer holds views).
    """

    def __init__(self, params: Sequence[Tensor], configs: Sequence[Mapping[str, Any]]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("StackedOptimizer needs at least one parameter tensor")
        self.configs = [dict(c) for c in configs]
        self.size = len(self.configs)
        if self.size == 0:
            raise ValueError("StackedOptimizer needs one optimizer config per model, got none")
        for p in self.params:
            if p.dim() == 0 or p.shape[0] != self.size:
                raise ValueError(f"stacked parameters must have shape [S={self.size}, ...], got {list(p.shape)}")
        classes = [_optimizer_class(c) for c in self.configs]
        self.optimizer_class = classes[0]
        if any(cls is not self.optimizer_class for cls in classes):
            targets = sorted({str(c["_target_"]) for c in self.configs})
            raise ValueError(f"optimizer._target_ must be the same for all stacked models, got {targets}")
        for config in self.configs:
            check_optimizer_keys(config, self.optimizer_class)  # as the solo run's checks (a ValueError)
        self.spec = spec = SUPPORTED[self.optimizer_class]
        module, name = spec.function.rsplit(".", 1)
        self._function: Callable[..., None] = getattr(importlib.import_module(module), name)
        self._function_args = set(inspect.signature(self._function).parameters)
        self._scalar_names = tuple(name for name, _ in spec.scalars)
        self._has_complex = any(torch.is_complex(p) for p in self.params)

        # Per-model hyperparameters: the param group torch itself builds from the config.
        dummies = [torch.nn.Parameter(torch.zeros(1, dtype=p.dtype, device=p.device), False) for p in self.params]
        self.hparams: list[dict[str, Any]] = []
        for config in self.configs:
            group = build_optimizer(config, dummies).param_groups[0]
            self.hparams.append({k: v for k, v in group.items() if k not in GROUP_KEYS})
            if group.get("differentiable"):
                raise ValueError("optimizer.differentiable=true cannot be stacked (the update runs without autograd)")

        with torch.no_grad():
            self._param_slices = [p.detach().unbind(0) for p in self.params]
            self._state: dict[str, list[Tensor]] = {}
            self._state_slices: dict[str, list[tuple[Tensor, ...]]] = {}
            for hp in self.hparams:
                for key in spec.kept(hp):
                    self._ensure_state(key)
            self._scalar_store: dict[tuple[str, torch.dtype, torch.device], list[Tensor]] = {}
            # name -> model -> param: 0-d views into the stores
            self._scalars: dict[str, list[list[Tensor]]] = {
                n: [[] for _ in range(self.size)] for n in self._scalar_names
            }
            # (model, param) pairs without torch state yet: torch creates it at the first step
            # with a gradient, unless eager (in its constructor)
            self._fresh = [[not spec.eager] * len(self.params) for _ in range(self.size)]
            for i in range(self.size):
                self._place_scalars(i)
                for k in range(len(self.params)):
                    self._reset_state(i, k)
        self._regroup()
        self._grads: list[Tensor] = []  # the gradients whose slices _grad_flat holds
        self._grad_pointers: list[int] = []
        self._grad_flat: list[Tensor] = []

    # -- storage ---------------------------------------------------------------------------

    def _ensure_state(self, key: str) -> None:
        if key not in self._state:
            tensors = [torch.zeros_like(p, memory_format=torch.preserve_format).detach() for p in self.params]
            self._state[key] = tensors
            self._state_slices[key] = [t.unbind(0) for t in tensors]

    def _place_scalars(self, i: int) -> None:
        """Give model i its 0-d state tensors (views) where torch keeps them for its hyperparameters."""
        for name, scalars in self._scalars.items():
            for p, param in enumerate(self.params):
                dtype, device = _scalar_kind(self.hparams[i], param.device)
                store = self._scalar_store.setdefault((name, dtype, device), [])
                while len(store) <= p:
                    store.append(torch.zeros(self.size, dtype=dtype, device=device))
                scalars[i].append(store[p][i])

    def _reset_state(self, i: int, p: int) -> None:
        """Model i's state for param p as torch initialises it."""
        for key, slices in self._state_slices.items():
            hp_name = self.spec.initial.get(key)
            init = self.hparams[i].get(hp_name, 0) if hp_name else 0
            if torch.is_complex(slices[p][i]):
                init = complex(init, init)
            slices[p][i].fill_(init)
        for name, init in self.spec.scalars:
            self._scalars[name][i][p].fill_(init)

    def _regroup(self) -> None:
        """Group the models by equal hyperparameters; drop the cached step plan."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, hp in enumerate(self.hparams):
            groups.setdefault(_group_key(hp), []).append(i)
        self._groups = list(groups.values())
        self._plan_key: tuple[Any, ...] | None = None
        self._plan: list[_Call] = []

    # -- stepping --------------------------------------------------------------------------

    def _kwargs(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = {k: v for k, v in hp.items() if k in self._function_args}
        if "betas" in hp:
            kwargs["beta1"], kwargs["beta2"] = hp["betas"]
        if "has_complex" in self._function_args:
            kwargs["has_complex"] = self._has_complex
        return kwargs

    def _models(self, active: Sequence[int] | None) -> list[int]:
        if active is None:
            return list(range(self.size))
        models = sorted({int(i) for i in active})
        if models and (models[0] < 0 or models[-1] >= self.size):
            raise IndexError(f"active models must be in [0, {self.size}), got {list(active)}")
        return models

    def _build_plan(self, active: Sequence[int] | None, with_grad: tuple[bool, ...]) -> list[_Call]:
        chosen = set(self._models(active))
        params = [p for p, has in enumerate(with_grad) if has]
        offset = {p: k * self.size for k, p in enumerate(params)}  # of param p's grads in the flat list
        calls: list[_Call] = []
        for members in self._groups:
            models = [i for i in members if i in chosen]
            if not models:
                continue
            hp = self.hparams[models[0]]
            pairs = [(i, p) for i in models for p in params]
            parts = [(pairs, False)]
            if self.spec.from_gradient in self.spec.kept(hp):
                # torch starts the state from the gradient where there is none: a call of its own.
                parts = [
                    ([(i, p) for i, p in pairs if not self._fresh[i][p]], False),
                    ([(i, p) for i, p in pairs if self._fresh[i][p]], True),
                ]
            keys = self.spec.kept(hp)
            kwargs = self._kwargs(hp)
            for part, first in parts:
                if not part:
                    continue
                calls.append(
                    _Call(
                        kwargs=kwargs,
                        params=[self._param_slices[p][i] for i, p in part],
                        grads=_picker([offset[p] + i for i, p in part]),
                        states={k: [self._state_slices[k][p][i] for i, p in part] for k in keys},
                        scalars={n: [self._scalars[n][i][p] for i, p in part] for n in self._scalar_names},
                        fresh=[(i, p) for i, p in part if self._fresh[i][p]],
                        first_momentum=first,
                    )
                )
        return calls

    def _run(self, call: _Call, grads: list[Tensor]) -> None:
        s = call.states
        if self._has_complex:  # torch's complex path may replace list entries with real views
            s = {k: list(v) for k, v in s.items()}
        arguments = {**s, **call.scalars}
        lists: list[list[Any]] = [arguments.get(k, []) for k in self.spec.lists]
        started = self.spec.from_gradient
        if call.first_momentum and started is not None:  # torch makes the state: copied into ours after
            index = self.spec.lists.index(started)
            lists[index] = [None] * len(call.params)
            self._function(call.params, grads, *lists, **call.kwargs)
            compat.foreach_copy_(s[started], [b for b in lists[index] if b is not None])
        else:
            self._function(call.params, grads, *lists, **call.kwargs)

    def step(self, active: Sequence[int] | None = None) -> None:
        """Step the models in ``active`` (all when None); the others keep params and state as they are.

        A stacked tensor whose ``.grad`` is None is skipped for every model, as torch skips it.
        """
        grads = [p.grad for p in self.params]
        with_grad = tuple(g is not None for g in grads)
        if not any(with_grad):
            return
        key = (None if active is None else tuple(int(i) for i in active), with_grad)
        if key != self._plan_key:
            self._plan = self._build_plan(key[0], with_grad)
            self._plan_key = key
        flat = self._grad_slices([g for g in grads if g is not None])
        fresh = False
        with torch.no_grad():
            for call in self._plan:
                self._run(call, call.grads(flat))
                for i, p in call.fresh:
                    self._fresh[i][p] = False
                    fresh = True
        if fresh:  # the pairs now have state: SGD's next call differs, so plan again
            self._plan_key = None

    def _grad_slices(self, grads: list[Tensor]) -> list[Tensor]:
        """The per-model slices of the gradients, param-major; reused while they are the same tensors.

        Gradients zeroed in place (``zero_grad(set_to_none=False)``) stay the same tensors, as
        backward then adds into them: their slices are taken once, not at every step.
        """
        pointers = [g.data_ptr() for g in grads]
        cached = self._grads
        if pointers != self._grad_pointers or any(g is not c for g, c in zip(grads, cached, strict=True)):
            self._grads, self._grad_pointers = grads, pointers
            self._grad_flat = [s for g in grads for s in g.unbind(0)]
        return self._grad_flat

    def state_bytes(self) -> int:
        """Memory of the stacked optimizer state (moments, sums, momentum buffers)."""
        return sum(t.numel() * t.element_size() for tensors in self._state.values() for t in tensors)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (or zero them in place), as ``torch.optim.Optimizer.zero_grad``."""
        if set_to_none:
            self._grads, self._grad_pointers, self._grad_flat = [], [], []
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().requires_grad_(False).zero_()

    # -- one model's torch state_dict ------------------------------------------------------

    def model_state_dict(self, i: int, param_names: Sequence[str] | None = None) -> dict[str, Any]:
        """What ``state_dict()`` of model i's solo optimizer would return (tensors cloned).

        ``param_names``: the names a solo optimizer built on named parameters would record.
        """
        self._check_model(i)
        hp = self.hparams[i]
        keys = self.spec.kept(hp)
        state: dict[int, dict[str, Any]] = {}
        for p in range(len(self.params)):
            if self._fresh[i][p]:
                continue
            entry: dict[str, Any] = {name: self._scalars[name][i][p].clone() for name in self._scalar_names}
            for key in keys:
                entry[key] = self._state_slices[key][p][i].clone()
            if entry:
                state[p] = entry
        group: dict[str, Any] = {**copy.deepcopy(hp), "params": list(range(len(self.params)))}
        if param_names is not None:
            if len(param_names) != len(self.params):
                raise ValueError(f"{len(param_names)} param_names for {len(self.params)} parameters")
            group["param_names"] = list(param_names)
        return {"state": state, "param_groups": [group]}

    def _check_model(self, i: int) -> None:
        if not 0 <= i < self.size:
            raise IndexError(f"model {i} is not in [0, {self.size})")
