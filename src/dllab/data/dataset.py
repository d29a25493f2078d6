"""The numpy form every source loads into: features, targets, and what they mean.

Splitting, scaling and batching belong to :mod:`dllab.data.datamodule`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dllab.catalog import CLASSIFICATION


@dataclass
class Dataset:
    """Features ``x`` (float32, one row per sample) and targets ``y``.

    Classification targets are int64 class indices; regression targets are float32
    with shape (n, outputs). ``image_shape`` is set for image data (C, H, W): the
    rows of ``x`` are then the flattened images. ``points`` are the raw inputs behind
    the rows, for the pictures: (n, 2) points of a 2-D set, (n, 1) inputs of the 1-D
    function set; None for other data.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    feature_names: list[str]
    class_names: list[str] = field(default_factory=list)
    image_shape: tuple[int, ...] | None = None
    points: np.ndarray | None = None

    @property
    def num_outputs(self) -> int:
        return len(self.class_names) if self.task == CLASSIFICATION else int(self.y.shape[1])
