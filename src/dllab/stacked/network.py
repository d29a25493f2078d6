"""S multi-layer perceptrons of one shape as one network: every weight is a stacked tensor
[S, out, in] and every layer one batched matmul over the S models.

At the sizes dllab's users sweep, a small MLP's step is bound by per-op overhead (Python,
dispatch, kernel launches), not arithmetic, so S models for the ops of one cost little more
than one. The stack must train each model exactly as it trains alone: :class:`StackedLinear`
computes every product with the same operand order as ``nn.Linear``'s forward and backward,
and dropout draws each model's noise from that model's own generator, as its solo run
draws from the global one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dllab.models.mlp import MLP


class StackedLinear(torch.autograd.Function):
    """``x @ w.T + b`` per model, for x [S, B, in], w [S, out, in], b [S, out].

    Autograd's own backward of ``baddbmm`` forms the weight gradient as ``(x^T g)^T``; a solo
    ``nn.Linear`` forms ``g^T x``. Both are right, but round differently: written out here,
    the gradients are the solo run's, bit for bit."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        if weight.shape[1] == 1:  # one output (a regression head): torch takes a matrix-vector
            # product there, which rounds otherwise than the batched one; as the solo run, per model
            return torch.stack([F.linear(x[i], weight[i], bias[i]) for i in range(weight.shape[0])])
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


def stacked_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    out = StackedLinear.apply(x, weight, bias)
    assert isinstance(out, Tensor)
    return out


class StackedMLP(nn.Module):
    """The S networks of ``nets`` (dllab MLPs of one shape and activation, without batch norm;
    dropout may differ) as one; see :func:`mlp_layout` for what stacks.

    ``forward`` takes x [S, B, ...] (each model's own samples) and returns [S, B, out]. Model
    ``i``'s dropout draws from ``generators[i]`` (set them with :meth:`set_generators`)."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        layouts = [mlp_layout(net) for net in nets]
        if len({(shapes, activation) for shapes, activation, _ in layouts}) != 1:
            raise ValueError("stacked networks must be MLPs of one shape and activation")
        first = nets[0]
        assert isinstance(first, MLP)
        # (a network without hidden layers has none: one Linear)
        self.activation = next((m for m in first.layers if _is_activation(m)), nn.Identity())
        self.dropouts = [dropout for _, _, dropout in layouts]
        # per model, the (weight key, bias key) of each Linear in its solo state_dict: a model
        # without dropout has no Dropout layers, so its keys number differently
        self.names = [
            [(f"{n}.weight", f"{n}.bias") for n, m in net.named_modules() if isinstance(m, nn.Linear)] for net in nets
        ]
        linears = [[m for m in net.modules() if isinstance(m, nn.Linear)] for net in nets]
        weights = [nn.Parameter(torch.stack([ls[k].weight.detach() for ls in linears])) for k in range(len(linears[0]))]
        biases = [nn.Parameter(torch.stack([ls[k].bias.detach() for ls in linears])) for k in range(len(linears[0]))]
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)
        self.generators: list[torch.Generator] | None = None
        self.size = len(nets)

    def set_generators(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(2)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = stacked_linear(h, weight, bias)
            if i < last:
                h = self.activation(h)
                if self.training and any(self.dropouts):
                    h = self._dropout(h)
        return h

    def _dropout(self, h: Tensor) -> Tensor:
        """Each model's ``F.dropout``: noise ``bernoulli(1 - p)`` from its own generator, / (1 - p)."""
        if self.generators is None:
            raise RuntimeError("StackedMLP with dropout needs set_generators() before training")
        noise = torch.ones_like(h)
        for i, p in enumerate(self.dropouts):
            if p > 0:
                noise[i].bernoulli_(1 - p, generator=self.generators[i]).div_(1 - p)
        return h * noise

    def ordered_parameters(self) -> list[nn.Parameter]:
        """The stacked tensors in a solo MLP's ``parameters()`` order (w0, b0, w1, b1, ...)."""
        return [p for pair in zip(self.weights, self.biases, strict=True) for p in pair]

    def model_state_dict(self, index: int) -> dict[str, Tensor]:
        """Model ``index``'s weights as a solo MLP's ``state_dict()`` (cloned)."""
        state = {}
        for (weight_key, bias_key), weight, bias in zip(self.names[index], self.weights, self.biases, strict=True):
            state[weight_key] = weight[index].detach().clone()
            state[bias_key] = bias[index].detach().clone()
        return state


def _is_activation(module: nn.Module) -> bool:
    return not isinstance(module, (nn.Linear, nn.Flatten, nn.Dropout, nn.BatchNorm1d))


def mlp_layout(net: nn.Module) -> tuple[tuple[tuple[int, ...], ...], str, float]:
    """(Linear shapes, activation class, dropout p) of a dllab MLP; ValueError for a network
    that does not stack (another class, batch norm: its statistics would mix the models)."""
    if type(net) is not MLP:
        raise ValueError(f"only dllab.models.mlp.MLP stacks, not {type(net).__module__}.{type(net).__qualname__}")
    modules = list(net.layers)
    if any(isinstance(m, nn.BatchNorm1d) for m in modules):
        raise ValueError("model.batch_norm=true does not stack")
    shapes = tuple(tuple(m.weight.shape) for m in modules if isinstance(m, nn.Linear))
    activations = {type(m).__name__ for m in modules if _is_activation(m)}
    dropouts = {m.p for m in modules if isinstance(m, nn.Dropout)}
    return shapes, ",".join(sorted(activations)), float(next(iter(dropouts), 0.0))
