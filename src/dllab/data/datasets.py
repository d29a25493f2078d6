"""Raw datasets as numpy arrays: the TensorFlow Playground's 2-D generators and the
sets that ship inside scikit-learn (no network).

Every loader returns a :class:`Dataset`; splitting, scaling and batching belong to
:mod:`dllab.data.datamodule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dllab.catalog import CLASSIFICATION, DATASETS, REGRESSION


@dataclass
class Dataset:
    """Features ``x`` (float32, one row per sample) and targets ``y``.

    Classification targets are int64 class indices; regression targets are float32
    with shape (n, outputs). ``image_shape`` is set for image data (C, H, W): the
    rows of ``x`` are then the flattened images.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    feature_names: list[str]
    class_names: list[str] = field(default_factory=list)
    image_shape: tuple[int, ...] | None = None

    @property
    def num_outputs(self) -> int:
        return len(self.class_names) if self.task == CLASSIFICATION else int(self.y.shape[1])


# --- 2-D playground generators -------------------------------------------------------
# Each returns raw points (n, 2) and labels: +1/-1 for classification, a float for
# regression. They follow the TensorFlow Playground's dataset.ts.


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, n)


def circle(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    radius = 5.0
    n_in = n // 2
    n_out = n - n_in
    r = np.concatenate([_uniform(rng, 0, radius * 0.5, n_in), _uniform(rng, radius * 0.7, radius, n_out)])
    angle = _uniform(rng, 0, 2 * np.pi, n)
    x, y = r * np.sin(angle), r * np.cos(angle)
    jx = _uniform(rng, -radius, radius, n) * noise
    jy = _uniform(rng, -radius, radius, n) * noise
    label = np.where(np.hypot(x + jx, y + jy) < radius * 0.5, 1.0, -1.0)
    return np.stack([x, y], 1), label


def xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    padding = 0.3
    x = _uniform(rng, -5, 5, n)
    y = _uniform(rng, -5, 5, n)
    x = x + np.where(x > 0, padding, -padding)
    y = y + np.where(y > 0, padding, -padding)
    jx = _uniform(rng, -5, 5, n) * noise
    jy = _uniform(rng, -5, 5, n) * noise
    label = np.where((x + jx) * (y + jy) >= 0, 1.0, -1.0)
    return np.stack([x, y], 1), label


def gauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    std = np.sqrt(0.5 + 7.0 * noise)  # the Playground's variance scale: 0.5 at noise 0, 4 at 0.5
    n_pos = n // 2
    pos = rng.normal((2.0, 2.0), std, (n_pos, 2))
    neg = rng.normal((-2.0, -2.0), std, (n - n_pos, 2))
    return np.concatenate([pos, neg]), np.concatenate([np.ones(n_pos), -np.ones(n - n_pos)])


def spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    half = n // 2
    points, labels = [], []
    for delta, label, count in ((0.0, 1.0, half), (np.pi, -1.0, n - half)):
        i = np.arange(count)
        r = i / half * 5
        t = 1.75 * i / half * 2 * np.pi + delta
        x = r * np.sin(t) + _uniform(rng, -1, 1, count) * noise
        y = r * np.cos(t) + _uniform(rng, -1, 1, count) * noise
        points.append(np.stack([x, y], 1))
        labels.append(np.full(count, label))
    return np.concatenate(points), np.concatenate(labels)


def plane(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    radius = 6.0
    x = _uniform(rng, -radius, radius, n)
    y = _uniform(rng, -radius, radius, n)
    jx = _uniform(rng, -radius, radius, n) * noise
    jy = _uniform(rng, -radius, radius, n) * noise
    return np.stack([x, y], 1), ((x + jx) + (y + jy)) / 10.0


MULTIGAUSS_BUMPS = ((-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1))


def multigauss_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Six signed bumps: sign * clamp(1 - d/2, 0, 1); the largest magnitude wins."""
    best = np.zeros_like(x)
    for cx, cy, sign in MULTIGAUSS_BUMPS:
        value = sign * np.clip(1 - np.hypot(x - cx, y - cy) / 2, 0, 1)
        best = np.where(np.abs(value) > np.abs(best), value, best)
    return best


def multigauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    radius = 6.0
    x = _uniform(rng, -radius, radius, n)
    y = _uniform(rng, -radius, radius, n)
    jx = _uniform(rng, -radius, radius, n) * noise
    jy = _uniform(rng, -radius, radius, n) * noise
    return np.stack([x, y], 1), multigauss_value(x + jx, y + jy)


GENERATORS = {
    "circle": circle,
    "xor": xor,
    "gauss": gauss,
    "spiral": spiral,
    "plane": plane,
    "multigauss": multigauss,
}


def expand_features(points: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """The Playground's input features of raw points (n, 2), one column per name."""
    x1, x2 = points[:, 0], points[:, 1]
    table = {
        "x1": x1,
        "x2": x2,
        "x1^2": x1 * x1,
        "x2^2": x2 * x2,
        "x1x2": x1 * x2,
        "sin_x1": np.sin(x1),
        "sin_x2": np.sin(x2),
    }
    return np.stack([table[name] for name in features], 1)


def load_playground(
    name: str, n_samples: int, noise: float, features: Sequence[str], seed: int
) -> tuple[Dataset, np.ndarray]:
    """A playground set and its raw 2-D points (for plots of the input plane)."""
    rng = np.random.default_rng(seed)
    points, label = GENERATORS[name](n_samples, noise, rng)
    x = expand_features(points, features).astype(np.float32)
    if DATASETS[name].task == CLASSIFICATION:
        y = (label > 0).astype(np.int64)  # -1 -> class 0, +1 -> class 1
        return Dataset(x, y, CLASSIFICATION, list(features), ["-1", "+1"]), points
    return Dataset(x, label.astype(np.float32)[:, None], REGRESSION, list(features)), points


def load_sklearn(name: str) -> Dataset:
    """A dataset that ships inside scikit-learn (no download)."""
    from sklearn import datasets as skd

    if name == "digits":
        bunch = skd.load_digits()
        x = (bunch.data / 16.0).astype(np.float32)  # pixels 0..16 -> 0..1
        names = [str(c) for c in bunch.target_names]
        return Dataset(x, bunch.target.astype(np.int64), CLASSIFICATION, [], names, (1, 8, 8))
    loader = {
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "diabetes": skd.load_diabetes,
    }[name]
    bunch = loader()
    x = bunch.data.astype(np.float32)
    features = [str(f) for f in bunch.feature_names]
    if DATASETS[name].task == REGRESSION:
        return Dataset(x, bunch.target.astype(np.float32)[:, None], REGRESSION, features)
    names = [str(c) for c in bunch.target_names]
    return Dataset(x, bunch.target.astype(np.int64), CLASSIFICATION, features, names)
