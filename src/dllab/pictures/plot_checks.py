"""The plots group, torch-free: which pictures, how often, how large."""

from __future__ import annotations

from omegaconf import DictConfig

from dllab.field_checks import (
    TEXT,
    apply,
    fail,
    integer,
)

PLOTS = ("decision_boundary", "regression_fit", "function_fit", "confusion_matrix", "curves")
MAX_DPI = 600  # a figure 8 inches wide is 4800 pixels then; far larger ones exhaust the memory
MAX_RESOLUTION = 1000  # grid points per axis of a decision boundary: 10**6 predictions per picture


def check_plots(cfg: DictConfig) -> None:
    """plots.*: the pictures of the run."""
    plots = cfg.get("plots")
    if plots is not None:
        for field, value in plots.items():
            if field in ("enabled", *PLOTS) and not isinstance(value, bool):
                raise fail(f"plots.{field}", value, "must be true or false")
            if field not in ("enabled", "dirpath", "every_n_epochs", "resolution", "dpi", *PLOTS):
                raise fail(f"plots.{field}", value, f"unknown key; pictures are {', '.join(PLOTS)}")
        for field, rule in (
            ("every_n_epochs", integer(1)),
            ("resolution", integer(10, MAX_RESOLUTION, what="grid points per axis")),
            ("dpi", integer(20, MAX_DPI, what="dots per inch")),
            ("dirpath", TEXT),
        ):
            if field in plots:
                apply(f"plots.{field}", plots.get(field), rule)
