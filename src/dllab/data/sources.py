"""Which loader reads a dataset that is not generated or shipped with scikit-learn:
the downloaded image sets, a folder of one's own images, a table of one's own.

The data config's extra keys (``data_dir``, ``root``, ``path``, ...) reach the loader
as keyword arguments; the loaders import pillow or pandas only when they are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dllab.data.datasets import Dataset

# Keys of a data config that only steer augmentation, not loading.
NOT_FOR_LOADING = ("mirror",)


def load_source(name: str, kind: str, source: Mapping[str, Any], n_samples: int | None, seed: int) -> Dataset:
    options = {k: v for k, v in source.items() if k not in NOT_FOR_LOADING}
    if kind == "download":
        from dllab.data.images import load_cifar10, load_idx_dataset

        if name == "cifar10":
            return load_cifar10(n_samples=n_samples, seed=seed, **options)
        return load_idx_dataset(name, n_samples=n_samples, seed=seed, **options)
    if kind == "image_folder":
        from dllab.data.images import load_image_folder

        return load_image_folder(**options)
    if kind == "table":
        from dllab.data.tables import load_table

        return load_table(**options)
    raise ValueError(f"no loader for datasets of kind {kind!r} (data={name})")  # pragma: no cover - catalog bug
