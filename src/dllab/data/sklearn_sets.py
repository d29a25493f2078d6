"""The datasets that ship inside scikit-learn as a source (no download)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dllab.catalog import CLASSIFICATION, REGRESSION
from dllab.data.dataset import Dataset
from dllab.data.source import Source, fail

# name -> task; digits are 8x8 images.
SKLEARN_SETS = {
    "iris": CLASSIFICATION,
    "wine": CLASSIFICATION,
    "breast_cancer": CLASSIFICATION,
    "digits": CLASSIFICATION,
    "diabetes": REGRESSION,
}


@dataclass
class SklearnSet(Source):
    """A scikit-learn set by ``name`` (in SKLEARN_SETS); digits as (1, 8, 8) images in [0, 1]."""

    @property
    def task(self) -> str:
        return SKLEARN_SETS[self.name]

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return (1, 8, 8) if self.name == "digits" else None

    def check(self) -> None:
        if self.name not in SKLEARN_SETS:
            raise fail("data.name", self.name, f"unknown scikit-learn set; choose one of {', '.join(SKLEARN_SETS)}")

    def load(self, seed: int) -> Dataset:
        from sklearn import datasets as skd

        bunch = getattr(skd, f"load_{self.name}")()
        if self.name == "digits":
            x = (bunch.data / 16.0).astype(np.float32)  # pixels 0..16 -> 0..1
            names = [str(c) for c in bunch.target_names]
            return Dataset(x, bunch.target.astype(np.int64), CLASSIFICATION, [], names, self.image_shape)
        x = bunch.data.astype(np.float32)
        features = [str(f) for f in bunch.feature_names]
        if self.task == REGRESSION:
            return Dataset(x, bunch.target.astype(np.float32)[:, None], REGRESSION, features)
        names = [str(c) for c in bunch.target_names]
        return Dataset(x, bunch.target.astype(np.int64), CLASSIFICATION, features, names)
