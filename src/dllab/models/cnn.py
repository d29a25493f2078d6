"""A small convolutional network for image data (digits, MNIST, CIFAR-10, one's own images)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dllab.catalog import POOLING
from dllab.models.activations import activation_layer
from dllab.models.mlp import MLP

POOLING_LAYERS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}  # and "none"


class CNN(nn.Module):
    """``len(channels)`` blocks of Conv2d (same padding) [-> BatchNorm2d] -> activation
    [-> 2x2 pooling], then an :class:`MLP` head over the flattened feature maps
    (``hidden_sizes``, the same activation, ``dropout`` and ``batch_norm``).

    Input: (N, C, H, W) images (as dllab's data path delivers them), or the same images as
    (N, C*H*W) rows; ``image_shape`` is (C, H, W). Output: (N, output_size).
    A block pools only while both sides are at least 2 pixels, so any image size works.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        output_size: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        pooling: str = "max",
        activation: str = "relu",
        hidden_sizes: Sequence[int] = (128,),
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape={list(image_shape)}: a CNN needs images as (channels, height, width)")
        if pooling not in POOLING:
            raise ValueError(f"pooling={pooling!r}: unknown; choose one of {', '.join(POOLING)}")
        self.image_shape = tuple(int(s) for s in image_shape)
        depth, height, width = self.image_shape
        blocks: list[nn.Module] = []
        for size in channels:
            blocks.append(nn.Conv2d(depth, size, kernel_size, padding="same"))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(size))
            blocks.append(activation_layer(activation))
            if pooling != "none" and min(height, width) >= 2:
                blocks.append(POOLING_LAYERS[pooling](2))
                height, width = height // 2, width // 2
            depth = size
        self.features = nn.Sequential(*blocks)
        self.head = MLP(depth * height * width, output_size, hidden_sizes, activation, dropout, batch_norm)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # rows of flattened images
            x = x.unflatten(1, self.image_shape)
        return self.head(self.features(x))
