"""S networks of one architecture (any ``nn.Module``) as one, through ``torch.func``.

The models' parameters are stacked ([S, *shape] each, :func:`torch.func.stack_module_state`)
and one copy of the network, on the meta device, is called on each model's slice under
``vmap`` (:func:`torch.func.functional_call`): a convolution of S models becomes one grouped
convolution, a linear layer one batched matmul. Backward runs through the batched ops, so the
stacked leaves get each model's gradient and :class:`~dllab.stacked.optim.StackedOptimizer`
steps them as it steps :class:`~dllab.stacked.network.StackedMLP`'s.

Contract: each model trains as its solo run would, but not bit for bit (the forward is the
solo run's; the backward's batched kernels sum in another order, about 1e-9 on a gradient):
its per-epoch values within 1e-5 relative of the solo run's, its final weights within 1e-4,
while training does not amplify rounding (Adam on ReLU networks can: docs/sweeps.md). dllab's
MLP keeps the exact :class:`StackedMLP`.

What cannot stack is refused when the stack is built, before any training, with a ValueError
of one line (the launcher then trains those jobs alone): networks of other classes or other
parameter names or shapes, networks without parameters or with frozen ones, buffers that a
training step changes (batch norm's running statistics), random ops in the forward (dropout:
under ``vmap`` its noise cannot be each solo run's stream), and ops without a ``vmap``
batching rule (torch would loop over the models, slowly): a trial forward and backward on a
small batch at build time catches the last ones by torch's warning or error.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from dllab.models.mlp import MLP
from dllab.stacked.network import StackedMLP

# torch's warning when an op has no batching rule and vmap loops over the batch instead
NO_BATCHING_RULE = re.compile(r"not yet implemented the batching rule for ([\w:]+(?:\.\w+)?)")
RANDOM_MODULES = (nn.modules.dropout._DropoutNd,)
STATEFUL_MODULES = (nn.modules.batchnorm._NormBase,)  # batch and instance norm (running statistics)


def _name(net: nn.Module) -> str:
    return f"{type(net).__module__}.{type(net).__qualname__}"


def architecture(net: nn.Module) -> tuple[type, tuple[tuple[str, tuple[int, ...], torch.dtype], ...]]:
    """What must agree between the models of one stack: the class and its parameters' names,
    shapes and dtypes (in ``parameters()`` order)."""
    return type(net), tuple((n, tuple(p.shape), p.dtype) for n, p in net.named_parameters())


def check_modules(net: nn.Module) -> None:
    """ValueError for what a network's modules say cannot stack: no parameters, frozen ones,
    running statistics, dropout."""
    named = list(net.named_parameters())
    if not named:
        raise ValueError(f"{_name(net)} has no parameters: nothing to train")
    frozen = [n for n, p in named if not p.requires_grad]
    if frozen:
        raise ValueError(f"{_name(net)}'s parameter {frozen[0]} is frozen (requires_grad=False)")
    for path, module in net.named_modules():
        where = f"{_name(net)}'s {path or 'self'} ({type(module).__name__})"
        if isinstance(module, STATEFUL_MODULES) and module.track_running_stats:
            raise ValueError(f"{where} keeps running statistics that training updates (batch norm)")
        if isinstance(module, RANDOM_MODULES) and module.p > 0:
            raise ValueError(f"{where} draws random numbers (dropout): under vmap not its solo run's stream")


class FunctionalStack(nn.Module):
    """The S networks of ``nets`` (one :func:`architecture`) as one, for StackedGroup.

    ``forward`` takes x [S, B, ...] (each model's own samples) and returns [S, B, ...].
    ``sample`` is a small batch of one model's inputs [B, ...] for the trial step that refuses
    what cannot stack (see the module's docstring); the nets themselves are left untouched."""

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
        self.size = len(nets)
        self.generators: list[torch.Generator] | None = None
        self._batched = vmap(self._call, in_dims=(0, 0, 0), randomness="error")
        self._trial(first, sample)

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def train(self, mode: bool = True) -> FunctionalStack:
        self.base.train(mode)
        return super().train(mode)

    def set_generators(self, generators: Sequence[torch.Generator]) -> None:
        """Kept for StackedGroup's interface: a network that draws random numbers does not stack."""
        self.generators = list(generators)

    def forward(self, x: Tensor) -> Tensor:
        params = dict(zip(self.param_names, self.stacked, strict=True))
        buffers = dict(zip(self.buffer_names, self.buffers(), strict=True))
        out = self._batched(params, buffers, x)
        assert isinstance(out, Tensor)
        return out

    def _trial(self, first: nn.Module, sample: Tensor) -> None:
        """One training forward and backward of every model on ``sample`` (gradients dropped
        after), as training will call them: ValueError for an op without a batching rule, a
        random op, a buffer the step changes, or outputs that are not the solo network's."""
        solo = copy.deepcopy(first).train()
        before = {n: b.clone() for n, b in solo.named_buffers()}
        sample = sample.to(next(first.parameters()).device)
        x = sample.unsqueeze(0).expand(self.size, *sample.shape).to(self.stacked[0].device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.train()
            try:
                out = self(x)
                out.float().sum().backward()
            except Exception as err:  # torch's errors under vmap: RuntimeError, NotImplementedError, ...
                if "randomness" in str(err):
                    raise ValueError(
                        f"{_name(first)} draws random numbers in training: under vmap not its solo run's stream"
                    ) from err
                raise ValueError(f"{_name(first)} cannot run under torch.func.vmap: {_first_line(err)}") from err
            finally:
                for p in self.stacked:
                    p.grad = None
            expected = solo(sample)
        for warning in caught:
            found = NO_BATCHING_RULE.search(str(warning.message))
            if found:
                raise ValueError(
                    f"{_name(first)} uses {found.group(1)}, which has no vmap batching rule (torch would loop)"
                )
        changed = [n for n, b in solo.named_buffers() if not torch.equal(b, before[n])]
        if changed:
            raise ValueError(f"{_name(first)}'s buffer {changed[0]} changes in training (running statistics)")
        if out.shape[1:] != expected.shape or not torch.allclose(out[0].detach(), expected, rtol=1e-4, atol=1e-5):
            raise ValueError(f"{_name(first)}'s stacked output is not its own (state that torch.func does not see?)")

    def ordered_parameters(self) -> list[nn.Parameter]:
        """The stacked tensors in a solo network's ``parameters()`` order."""
        return list(self.stacked)

    def model_state_dict(self, index: int) -> dict[str, Tensor]:
        """Model ``index``'s weights as a solo network's ``state_dict()`` (cloned)."""
        tensors = dict(zip(self.param_names, self.stacked, strict=True))
        tensors |= dict(zip(self.buffer_names, self.buffers(), strict=True))
        return {key: tensors[name][index].detach().clone() for key, name in self.state_keys.items()}


def stack_networks(nets: Sequence[nn.Module], sample: Tensor) -> StackedMLP | FunctionalStack:
    """The networks as one: dllab's MLPs by the exact :class:`StackedMLP`, any other networks
    of one architecture by :class:`FunctionalStack` (``sample``: a small batch of inputs for
    its trial step). ValueError, one line, for networks that cannot stack."""
    if all(type(net) is MLP for net in nets):
        return StackedMLP(nets)  # raises for batch norm or differing shapes
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
