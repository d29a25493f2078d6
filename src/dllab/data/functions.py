"""The 1-D ``function`` set of the universal-approximation demo as a source
(``data=function data.fn=sin|abs|step|square``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dllab.catalog import REGRESSION
from dllab.data.dataset import Dataset
from dllab.data.playground import check_generated
from dllab.data.source import Source, fail

# Inputs of the function set: an even grid over two periods of sin.
FUNCTION_DOMAIN = (-2 * np.pi, 2 * np.pi)

TARGET_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin": np.sin,
    "abs": np.abs,
    "step": lambda x: (x >= 0).astype(np.float64),
    "square": np.square,
}
FORMULAS = {"sin": "sin(x)", "abs": "|x|", "step": "step(x)", "square": "x²"}


@dataclass
class FunctionSet(Source):
    """y = ``fn``(x) on ``n_samples`` inputs, with ``noise`` (0 to 0.5, times the targets' std)."""

    name: str = "function"
    fn: str = "sin"
    n_samples: int = 200
    noise: float = 0.0

    @property
    def task(self) -> str:
        return REGRESSION

    def check(self) -> None:
        if self.fn not in TARGET_FUNCTIONS:
            raise fail("data.fn", self.fn, f"unknown function; choose one of {', '.join(TARGET_FUNCTIONS)}")
        check_generated(self.n_samples, self.noise, " (times the targets' std)")

    def load(self, seed: int) -> Dataset:
        """Inputs on an even grid over FUNCTION_DOMAIN, targets fn(x) plus Gaussian noise; ``points``
        are the raw inputs (n, 1), the same as ``x``: the function set has one feature, x."""
        x = np.linspace(*FUNCTION_DOMAIN, self.n_samples)
        y = TARGET_FUNCTIONS[self.fn](x)
        if self.noise > 0:
            rng = np.random.default_rng(seed)
            y = y + rng.normal(0.0, self.noise * max(float(y.std()), 1e-8), self.n_samples)
        points = x[:, None]
        return Dataset(points.astype(np.float32), y.astype(np.float32)[:, None], REGRESSION, ["x"], points=points)
