"""The noise-free functions behind dllab's regression data: the 1-D ``function`` set of the
universal-approximation demo (``data=function data.fn=sin|abs|step|square``) and the
surfaces of the Playground's 2-D regression sets (for the predicted-vs-true pictures).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dllab.catalog import REGRESSION
from dllab.data.datasets import Dataset, multigauss_value

# Inputs of the function set: an even grid over two periods of sin.
FUNCTION_DOMAIN = (-2 * np.pi, 2 * np.pi)

TARGET_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin": np.sin,
    "abs": np.abs,
    "step": lambda x: (x >= 0).astype(np.float64),
    "square": np.square,
}
FORMULAS = {"sin": "sin(x)", "abs": "|x|", "step": "step(x)", "square": "x²"}

# Noise-free targets of the Playground's 2-D regression sets, f(x1, x2).
SURFACES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "plane": lambda x, y: (x + y) / 10.0,
    "multigauss": multigauss_value,
}


def load_function(fn: str, n_samples: int, noise: float, seed: int) -> tuple[Dataset, np.ndarray]:
    """``n_samples`` inputs on an even grid over FUNCTION_DOMAIN, targets fn(x) plus Gaussian
    noise of ``noise`` times the targets' standard deviation. Returns the dataset and its raw
    inputs (n, 1) (the same as ``x``: the function set has one feature, x)."""
    x = np.linspace(*FUNCTION_DOMAIN, n_samples)
    y = TARGET_FUNCTIONS[fn](x)
    if noise > 0:
        rng = np.random.default_rng(seed)
        y = y + rng.normal(0.0, noise * max(float(y.std()), 1e-8), n_samples)
    points = x[:, None]
    return Dataset(points.astype(np.float32), y.astype(np.float32)[:, None], REGRESSION, ["x"]), points
