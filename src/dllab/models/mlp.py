"""The multi-layer perceptron: configurable depth, width, activation, dropout and batch norm."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dllab.models.activations import activation_layer


class MLP(nn.Module):
    """Flatten, then ``len(hidden_sizes)`` blocks of Linear [-> BatchNorm] -> activation
    [-> Dropout], then a Linear head.

    Input: (N, input_size) rows or (N, C, H, W) images with C*H*W == input_size (flattened).
    Output: (N, output_size), logits for classification, values for regression.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(activation_layer(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, output_size))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
