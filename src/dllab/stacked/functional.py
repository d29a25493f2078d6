"""S networks of one architecture (any ``nn.Module``) as one, through ``torch.func``.

The models' parameters and buffers are stacked ([S, *shape] each,
:func:`torch.func.stack_module_state`), and one copy of the network, on the meta device, is
called for each model on that model's slices (:func:`torch.func.functional_call`), all in one
autograd graph: one backward gives every stacked leaf each model's gradient, and
:class:`~dllab.stacked.optim.StackedOptimizer` steps them as it steps
:class:`~dllab.stacked.network.StackedMLP`'s. What the stack saves is a solo run's per-step
work around the network (Lightning's loop, one optimizer step per model), not the network's
own arithmetic.

Contract: each model trains as its solo run would, bit for bit on the same machine: every
op of its forward and backward is the solo network's own, on its own tensors. (``vmap`` over
the models was measured too: one grouped convolution for S models runs faster, but its
backward sums in another order, about 1e-9 on a gradient, and Adam on a ReLU CNN amplified
that to 4e-3 in test loss within 5 epochs on 3 of 16 jobs: not the same run.) Batch norm's
running statistics are each model's own slice of the stacked buffers, updated in place;
random ops (dropout) draw from each model's own generator, which holds what the global one
would in its solo run.

Refused when the stack is built, before any training, with a ValueError of one line (the
launcher then trains those jobs alone): networks of other classes or other parameter names or
shapes, networks without parameters or with frozen ones, state the state_dict holds beside
parameters and buffers, random ops on a GPU (the solo run draws from CUDA's generator), and a
network whose stacked output is not its own (a trial forward on a small batch at build time).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from dllab.models.mlp import MLP
from dllab.stacked.network import StackedMLP

RANDOM_MODULES = (nn.modules.dropout._DropoutNd,)


def _name(net: nn.Module) -> str:
    return f"{type(net).__module__}.{type(net).__qualname__}"


def architecture(net: nn.Module) -> tuple[type, tuple[tuple[str, tuple[int, ...], torch.dtype], ...]]:
    """What must agree between the models of one stack: the class and its parameters' names,
    shapes and dtypes (in ``parameters()`` order)."""
    return type(net), tuple((n, tuple(p.shape), p.dtype) for n, p in net.named_parameters())


def check_modules(net: nn.Module) -> None:
    """ValueError for what a network's parameters say cannot stack: none, or frozen ones."""
    named = list(net.named_parameters())
    if not named:
        raise ValueError(f"{_name(net)} has no parameters: nothing to train")
    frozen = [n for n, p in named if not p.requires_grad]
    if frozen:
        raise ValueError(f"{_name(net)}'s parameter {frozen[0]} is frozen (requires_grad=False)")


class FunctionalStack(nn.Module):
    """The S networks of ``nets`` (one :func:`architecture`) as one, for StackedGroup.

    ``forward`` takes x [S, B, ...] (each model's own samples) and returns [S, B, ...]; model
    ``i``'s random ops draw from ``generators[i]`` (:meth:`set_generators`). ``sample`` is a
    small batch of one model's inputs [B, ...] for the trial forward that refuses what does not
    stack (see the module's docstring); the nets themselves are left untouched."""

    base: nn.Module

    def __init__(self, nets: Sequence[nn.Module], sample: Tensor) -> None:
        super().__init__()
        if not nets:
            raise ValueError("a stack needs one network or more")
        first = nets[0]
        shape = architecture(first)
        for i, net in enumerate(nets[1:], 1):
            if architecture(net) != shape:
                raise ValueError(f"model {i}'s network differs from model 0's ({_difference(first, net)})")
        for net in nets:
            check_modules(net)
        params, buffers = stack_module_state(list(nets))
        self.param_names = [n for n, _ in first.named_parameters()]
        self.stacked = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.param_names])
        self.buffer_names = list(buffers)
        for k, name in enumerate(self.buffer_names):  # moved with .to(), left out of the state_dict
            self.register_buffer(f"buffer{k}", buffers[name].detach().clone(), persistent=False)
        # each solo state_dict key: the parameter or buffer it is (tied weights have several keys)
        names = {id(t): n for n, t in [*first.named_parameters(), *first.named_buffers()]}
        state = first.state_dict(keep_vars=True)
        extra = [key for key, t in state.items() if id(t) not in names]
        if extra:
            raise ValueError(f"{_name(first)}'s state_dict holds {extra[0]}, neither a parameter nor a buffer")
        self.state_keys = {key: names[id(t)] for key, t in state.items()}
        # the network whose forward is called, on the meta device and no submodule (no memory,
        # not moved by .to(), not in parameters()); train()/eval() set its mode
        object.__setattr__(self, "base", copy.deepcopy(first).to("meta"))
        self.random = any(isinstance(m, RANDOM_MODULES) and m.p > 0 for m in first.modules())
        self.size = len(nets)
        self.generators: list[torch.Generator] | None = None
        self._trial(first, sample)

    def train(self, mode: bool = True) -> FunctionalStack:
        self.base.train(mode)
        return super().train(mode)

    def set_generators(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    def _apply(self, fn, recurse=True):
        moved = super()._apply(fn, recurse)
        if self.random and self.stacked[0].device.type != "cpu":
            raise ValueError(
                f"{_name(self.base)} draws random numbers (dropout): on "
                f"{self.stacked[0].device.type} its solo run draws from that device's generator"
            )
        return moved

    def forward(self, x: Tensor) -> Tensor:
        params = [p.unbind(0) for p in self.stacked]  # views: their backward stacks each model's gradient
        buffers = [b.unbind(0) for b in self.buffers()]  # views: running statistics updated in place
        outputs = []
        for i in range(self.size):
            state = {n: p[i] for n, p in zip(self.param_names, params, strict=True)}
            state |= {n: b[i] for n, b in zip(self.buffer_names, buffers, strict=True)}
            with self._stream(i):
                outputs.append(functional_call(self.base, state, (x[i],)))
        return torch.stack(outputs)

    @contextmanager
    def _stream(self, i: int) -> Iterator[None]:
        """Model ``i``'s random ops in training (dropout, as a module or a function) draw from
        its own generator, which holds what the global one would in its solo run."""
        if not self.training or self.generators is None:
            yield
            return
        generator = self.generators[i]
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(generator.get_state())
            yield
            generator.set_state(torch.get_rng_state())

    def _trial(self, first: nn.Module, sample: Tensor) -> None:
        """One training forward of model 0 on ``sample``, through the stack and alone, from one
        random state and on copies of the buffers: ValueError where they differ (state the
        functional call does not see) or the stack cannot run the network at all."""
        solo = copy.deepcopy(first).train()
        sample = sample.to(next(first.parameters()).device)
        kept = [b.clone() for b in self.buffers()]
        seed = torch.get_rng_state()
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                generator = torch.Generator().manual_seed(0)
                self.set_generators([generator] + [torch.Generator() for _ in range(self.size - 1)])
                self.train()
                x = sample.unsqueeze(0).expand(self.size, *sample.shape).to(self.stacked[0].device)
                try:
                    out = self(x)[0]
                except Exception as err:
                    raise ValueError(f"{_name(first)} cannot be called functionally: {_first_line(err)}") from err
                torch.manual_seed(0)
                expected = solo(sample)
        finally:
            for buffer, before in zip(self.buffers(), kept, strict=True):
                buffer.copy_(before)
            self.generators = None
            torch.set_rng_state(seed)
        # equal here; a tolerance, as a BLAS may round a slice at another alignment in the last bits
        if out.shape != expected.shape or not torch.allclose(out, expected, rtol=1e-5, atol=1e-6):
            raise ValueError(f"{_name(first)}'s stacked output is not its own (state that torch.func does not see?)")

    def ordered_parameters(self) -> list[nn.Parameter]:
        """The stacked tensors in a solo network's ``parameters()`` order."""
        return list(self.stacked)

    def model_state_dict(self, index: int) -> dict[str, Tensor]:
        """Model ``index``'s weights and buffers as a solo network's ``state_dict()`` (cloned)."""
        tensors = dict(zip(self.param_names, self.stacked, strict=True))
        tensors |= dict(zip(self.buffer_names, self.buffers(), strict=True))
        return {key: tensors[name][index].detach().clone() for key, name in self.state_keys.items()}


def stack_networks(nets: Sequence[nn.Module], sample: Tensor) -> StackedMLP | FunctionalStack:
    """The networks as one: dllab's MLPs by the exact :class:`StackedMLP`, any other networks
    of one architecture by :class:`FunctionalStack` (``sample``: a small batch of inputs for
    its trial step). ValueError, one line, for networks that cannot stack."""
    if all(type(net) is MLP and not any(isinstance(m, nn.BatchNorm1d) for m in net.modules()) for net in nets):
        return StackedMLP(nets)  # raises for differing shapes
    return FunctionalStack(nets, sample)


def _difference(first: nn.Module, other: nn.Module) -> str:
    """The first difference of two networks' architectures, in words."""
    if type(first) is not type(other):
        return f"{_name(other)}, not {_name(first)}"
    mine = {n: f"{list(p.shape)} {p.dtype}" for n, p in first.named_parameters()}
    theirs = {n: f"{list(p.shape)} {p.dtype}" for n, p in other.named_parameters()}
    for name in [*mine, *theirs]:
        if mine.get(name) != theirs.get(name):
            return f"parameter {name}: {theirs.get(name, 'none')}, not {mine.get(name, 'none')}"
    return "the order of its parameters"


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
