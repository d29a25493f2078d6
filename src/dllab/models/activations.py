"""Activation layers by name: the names of :data:`dllab.catalog.ACTIVATIONS` (a test keeps the
two in step), shared by every network dllab builds."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def activation_layer(name: str) -> nn.Module:
    """A fresh activation layer; ValueError naming the valid choices for an unknown name."""
    if name not in ACTIVATION_LAYERS:
        raise ValueError(f"activation={name!r}: unknown; choose one of {', '.join(ACTIVATION_LAYERS)}")
    return ACTIVATION_LAYERS[name]()
