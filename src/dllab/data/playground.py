"""The TensorFlow Playground's 2-D sets as a source: the generators (after the Playground's
dataset.ts), the input features computed from a raw point, and the noise-free surfaces of
the two regression sets (for the pictures)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dllab.catalog import CLASSIFICATION, REGRESSION
from dllab.data.dataset import Dataset
from dllab.data.source import Source, fail
from dllab.field_checks import is_int, is_number

# --- 2-D generators ----------------------------------------------------------------------
# Each returns raw points (n, 2) and labels: +1/-1 for classification, a float for
# regression.


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


Surface = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _regression_set(surface: Surface, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points on [-6, 6]², targets the surface at the jittered points."""
    radius = 6.0
    x = _uniform(rng, -radius, radius, n)
    y = _uniform(rng, -radius, radius, n)
    jx = _uniform(rng, -radius, radius, n) * noise
    jy = _uniform(rng, -radius, radius, n) * noise
    return np.stack([x, y], 1), surface(x + jx, y + jy)


def plane(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return _regression_set(plane_value, n, noise, rng)


def plane_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x + y) / 10.0


MULTIGAUSS_BUMPS = ((-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1))


def multigauss_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Six signed bumps: sign * clamp(1 - d/2, 0, 1); the largest magnitude wins."""
    best = np.zeros_like(x)
    for cx, cy, sign in MULTIGAUSS_BUMPS:
        value = sign * np.clip(1 - np.hypot(x - cx, y - cy) / 2, 0, 1)
        best = np.where(np.abs(value) > np.abs(best), value, best)
    return best


def multigauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return _regression_set(multigauss_value, n, noise, rng)


GENERATORS = {
    "circle": circle,
    "xor": xor,
    "gauss": gauss,
    "spiral": spiral,
    "plane": plane,
    "multigauss": multigauss,
}
REGRESSION_SETS = ("plane", "multigauss")

# Noise-free targets of the regression sets, f(x1, x2).
SURFACES: dict[str, Surface] = {
    "plane": plane_value,
    "multigauss": multigauss_value,
}

# Input features computed from the raw point (x1, x2): names that a command line takes
# unquoted (Hydra's override grammar has no ^), and the Playground's x1^2, x2^2 as well
# (configs saved with them still run).
FEATURES = ("x1", "x2", "x1sq", "x2sq", "x1x2", "sin_x1", "sin_x2")
ALIASES = {"x1^2": "x1sq", "x2^2": "x2sq"}


def feature_name(name: str) -> str:
    """The name in FEATURES of a feature, also when given by its alias."""
    return ALIASES.get(name, name)


def expand_features(points: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """The Playground's input features of raw points (n, 2), one column per name in FEATURES
    (or ALIASES)."""
    x1, x2 = points[:, 0], points[:, 1]
    table = {
        "x1": x1,
        "x2": x2,
        "x1sq": x1 * x1,
        "x2sq": x2 * x2,
        "x1x2": x1 * x2,
        "sin_x1": np.sin(x1),
        "sin_x2": np.sin(x2),
    }
    return np.stack([table[feature_name(name)] for name in features], 1)


def check_generated(n_samples: Any, noise: Any, noise_unit: str = "") -> None:
    """n_samples and noise of a generated set (these 2-D sets, the 1-D function set)."""
    if not is_int(n_samples) or n_samples < 10:
        raise fail("data.n_samples", n_samples, "must be an integer >= 10")
    if not is_number(noise) or not 0 <= noise <= 0.5:
        raise fail("data.noise", noise, f"must be a number in [0, 0.5]{noise_unit}")


@dataclass
class Playground(Source):
    """One of the Playground's 2-D sets (``name`` in GENERATORS): ``n_samples`` points with
    the Playground's ``noise`` (0 to 0.5), as the input ``features`` (names in FEATURES or ALIASES).
    Classification labels -1/+1 become classes 0/1; ``points`` are the raw 2-D points."""

    n_samples: int = 500
    noise: float = 0.0
    features: Sequence[str] = ("x1", "x2")

    @property
    def task(self) -> str:
        return REGRESSION if self.name in REGRESSION_SETS else CLASSIFICATION

    def check(self) -> None:
        if self.name not in GENERATORS:
            raise fail("data.name", self.name, f"unknown Playground set; choose one of {', '.join(GENERATORS)}")
        check_generated(self.n_samples, self.noise)
        features = self.features
        if not isinstance(features, (list, tuple)) or not features:
            raise fail("data.features", features, f"must be a non-empty list of {', '.join(FEATURES)}")
        for feature in features:
            if not isinstance(feature, str) or feature_name(feature) not in FEATURES:
                raise fail("data.features", feature, f"unknown feature; choose from {', '.join(FEATURES)}")
        if len({feature_name(f) for f in features}) != len(features):
            raise fail("data.features", list(features), "lists a feature twice")

    def load(self, seed: int) -> Dataset:
        points, label = GENERATORS[self.name](self.n_samples, self.noise, np.random.default_rng(seed))
        x = expand_features(points, self.features).astype(np.float32)
        names = [feature_name(f) for f in self.features]
        if self.task == CLASSIFICATION:
            y = (label > 0).astype(np.int64)  # -1 -> class 0, +1 -> class 1
            return Dataset(x, y, CLASSIFICATION, names, ["-1", "+1"], points=points)
        return Dataset(x, label.astype(np.float32)[:, None], REGRESSION, names, points=points)
