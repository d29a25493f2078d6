"""Pictures of runs and of the lecture's examples, as matplotlib figures.

Pure drawing: every function takes numpy arrays and returns a
:class:`matplotlib.figure.Figure` on matplotlib's non-interactive Agg canvas. Nothing here
imports ``pyplot``, so no window ever opens and no global figure state is kept (figures are
freed with their last reference). :func:`to_rgb` renders a figure to an (H, W, 3) uint8
array, :func:`to_png` to PNG bytes (what the run dir and TensorBoard both get).

What is computed from a model (grids of predictions, test predictions) lives in
:mod:`dllab.pictures.callbacks`; loss landscapes in :mod:`dllab.landscape`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.colors import to_rgb as color_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

# The TensorFlow Playground's colours: orange for -1 (class 0), blue for +1 (class 1).
ORANGE, BLUE, NEUTRAL = "#f59322", "#0877bd", "#e8eaeb"
PLAYGROUND = LinearSegmentedColormap.from_list("playground", [ORANGE, NEUTRAL, BLUE])
CLASS_COLORS = [ORANGE, BLUE, "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
DPI = 80


def fit_title(text: Text, right: float = 0.99, smallest: float = 6.5) -> Text:
    """Shrink a title's font (not below ``smallest`` points) until its one line lies within
    the figure, left of ``right`` (a share of the figure's width); a title that fits keeps its size."""
    figure = text.get_figure()
    if figure is None or not text.get_text():
        return text
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    low, high = 0.01 * figure.bbox.width, right * figure.bbox.width
    while float(text.get_fontsize()) > smallest:
        extent = text.get_window_extent(renderer)
        if extent.x0 >= low and extent.x1 <= high:
            break
        text.set_fontsize(max(smallest, float(text.get_fontsize()) * 0.94))
    return text


def new_figure(
    width: float = 4.0,
    height: float = 4.0,
    dpi: int = DPI,
    left: float = 0.75,
    right: float = 0.2,
    bottom: float = 0.5,
    top: float = 0.35,
    wspace: float = 0.35,
    hspace: float = 0.45,
) -> Figure:
    """A figure on an Agg canvas (never a window); its image is width·dpi × height·dpi pixels.

    Margins are fixed, in inches (a layout engine would double the cost of a picture)."""
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wspace,
        hspace=hspace,
    )
    return figure


def to_rgb(figure: Figure) -> np.ndarray:
    """The rendered figure as an (H, W, 3) uint8 array."""
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, at the figure's own size and dpi."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def save(figure: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG file (parents created) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_png(figure))
    return path


def class_color(index: int) -> str:
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def class_colors(labels: np.ndarray) -> list[str]:
    return [class_color(int(k)) for k in labels]


# --- grids over the input plane ----------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """An even grid over a rectangle of the raw input plane (x1 across, x2 up).

    ``points`` lists the grid row by row from the bottom (x2 ascending), so any per-point
    value reshaped to ``shape`` is an image with ``origin='lower'`` and ``extent``.
    """

    x1: np.ndarray
    x2: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.x2), len(self.x1)

    @property
    def points(self) -> np.ndarray:
        g1, g2 = np.meshgrid(self.x1, self.x2)
        return np.stack([g1.ravel(), g2.ravel()], 1)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return float(self.x1[0]), float(self.x1[-1]), float(self.x2[0]), float(self.x2[-1])

    @property
    def spacing(self) -> tuple[float, float]:
        return float(self.x1[1] - self.x1[0]), float(self.x2[1] - self.x2[0])


def grid_over(points: np.ndarray, resolution: int = 100, margin: float = 0.1) -> Grid:
    """A ``resolution``² grid over the bounding box of ``points`` (n, 2), widened by ``margin``
    of its size on every side: the data's domain, as the Playground shows it."""
    low, high = points.min(0), points.max(0)
    pad = (high - low) * margin + 1e-9
    low, high = low - pad, high + pad
    return Grid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))


# --- raster pictures: the cheap per-epoch images for TensorBoard's step slider ----------------
# Drawn with numpy straight into pixels (no axes, no text), far cheaper than a matplotlib
# figure. The final pictures are full figures.


def png_of(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def colormap_rgb(values: np.ndarray, cmap: str | LinearSegmentedColormap, low: float, high: float) -> np.ndarray:
    """uint8 RGB of ``values`` through a matplotlib colormap scaled to [low, high]."""
    from matplotlib import colormaps

    colormap = colormaps[cmap] if isinstance(cmap, str) else cmap
    scaled = (np.asarray(values, dtype=float) - low) / max(high - low, 1e-12)
    return (colormap(np.clip(scaled, 0, 1))[..., :3] * 255).astype(np.uint8)


def to_pixels(points: np.ndarray, extent: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """(row, column) pixels of data points in an image of ``size`` (rows, columns) covering
    ``extent`` (x from left to right, y from bottom to top)."""
    x0, x1, y0, y1 = extent
    rows, columns = size
    column = (points[:, 0] - x0) / (x1 - x0) * (columns - 1)
    row = (y1 - points[:, 1]) / (y1 - y0) * (rows - 1)
    return np.stack([np.round(row), np.round(column)], 1).astype(int)


def stamp(image: np.ndarray, pixels: np.ndarray, colors: np.ndarray, radius: int = 2) -> None:
    """Draw filled squares of side 2·radius+1 centred on ``pixels`` (clipped to the image)."""
    if not len(pixels):
        return
    colors = np.broadcast_to(np.asarray(colors, dtype=np.uint8), (len(pixels), 3))
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r, c = pixels[:, 0] + dr, pixels[:, 1] + dc
            inside = (r >= 0) & (r < image.shape[0]) & (c >= 0) & (c < image.shape[1])
            image[r[inside], c[inside]] = colors[inside]


def _rgb255(color: str) -> np.ndarray:
    return (np.array(color_rgb(color)) * 255).astype(np.uint8)


def boundary_raster(
    grid: Grid,
    probs: np.ndarray,
    train_points: np.ndarray,
    train_labels: np.ndarray,
    test_points: np.ndarray,
    test_labels: np.ndarray,
    test_predicted: np.ndarray,
    size: int = 256,
) -> np.ndarray:
    """The decision boundary as the Playground's canvas: the background coloured by the
    probability of class +1 (pale), training points, test points with a black rim and
    misclassified test points with a red one. (size, size, 3) uint8."""
    rows = np.linspace(grid.shape[0] - 1, 0, size).round().astype(int)  # top row is the largest x2
    columns = np.linspace(0, grid.shape[1] - 1, size).round().astype(int)
    k = probs.shape[1]
    if k == 2:
        background = colormap_rgb(probs[:, 1].reshape(grid.shape)[rows][:, columns], PLAYGROUND, 0, 1)
    else:
        colors = np.array([color_rgb(class_color(c)) for c in range(k)])
        background = ((probs @ colors).reshape(*grid.shape, 3)[rows][:, columns] * 255).astype(np.uint8)
    image = (0.35 * 255 + 0.65 * background.astype(float)).astype(np.uint8)  # paler, as the Playground's
    palette = np.array([_rgb255(class_color(c)) for c in range(max(k, 2))])
    stamp(image, to_pixels(train_points, grid.extent, (size, size)), palette[train_labels], radius=1)
    test_pixels = to_pixels(test_points, grid.extent, (size, size))
    wrong = test_predicted != test_labels
    rim = np.where(wrong[:, None], _rgb255("#d00000"), np.zeros(3, np.uint8))
    stamp(image, test_pixels, rim, radius=3)
    stamp(image, test_pixels, palette[test_labels], radius=1)
    return image


def surface_raster(grid: Grid, predicted: np.ndarray, true: np.ndarray | None, size: int = 192) -> np.ndarray:
    """2-D regression: the predicted surface next to the true one (when known), one colour scale."""
    panels = [predicted] if true is None else [predicted, true]
    low = float(min(np.min(p) for p in panels))
    high = float(max(np.max(p) for p in panels))
    rows = np.linspace(grid.shape[0] - 1, 0, size).round().astype(int)
    columns = np.linspace(0, grid.shape[1] - 1, size).round().astype(int)
    images = [colormap_rgb(np.reshape(p, grid.shape)[rows][:, columns], "coolwarm", low, high) for p in panels]
    gap = np.full((size, 8, 3), 255, np.uint8)
    return np.concatenate([images[0], gap, images[1]], 1) if len(images) == 2 else images[0]


def curve_raster(
    x: np.ndarray,
    curves: Sequence[tuple[np.ndarray, str]],
    points: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
    size: tuple[int, int] = (200, 400),
) -> np.ndarray:
    """1-D curves (y over x, each a colour) and sample points on a white canvas."""
    image = np.full((*size, 3), 255, np.uint8)
    values = np.concatenate([np.ravel(y) for y, _ in curves] + [np.ravel(py) for _, py, _ in points])
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.05 + 1e-9
    extent = (float(x.min()), float(x.max()), low - pad, high + pad)
    zero = to_pixels(np.array([[x.min(), 0.0]]), extent, size)[0, 0]
    if 0 <= zero < size[0]:
        image[zero, :] = 200
    for px, py, color in points:
        stamp(image, to_pixels(np.stack([np.ravel(px), np.ravel(py)], 1), extent, size), _rgb255(color), radius=1)
    for y, color in curves:
        dense = np.linspace(x.min(), x.max(), size[1] * 3)
        pixels = to_pixels(np.stack([dense, np.interp(dense, x, np.ravel(y))], 1), extent, size)
        stamp(image, pixels, _rgb255(color), radius=1)
    return image


# --- run pictures ------------------------------------------------------------------------


def decision_boundary_figure(
    grid: Grid,
    probs: np.ndarray,
    train_points: np.ndarray,
    train_labels: np.ndarray,
    test_points: np.ndarray,
    test_labels: np.ndarray,
    test_predicted: np.ndarray,
    class_names: Sequence[str] = ("-1", "+1"),
    title: str = "",
    size: float = 4.0,
    dpi: int = DPI,
) -> Figure:
    """The Playground's picture: the background coloured by the predicted class probability
    over the grid (``probs``: (points, classes) in ``grid.points`` order), training points
    as filled dots, test points with a dark rim, misclassified test points crossed out."""
    figure = new_figure(size, size, dpi)
    ax = figure.add_subplot()
    k = probs.shape[1]
    if k == 2:
        image = probs[:, 1].reshape(grid.shape)
        ax.imshow(image, origin="lower", extent=grid.extent, cmap=PLAYGROUND, vmin=0, vmax=1, alpha=0.75, aspect="auto")
    else:  # mix the class colours by probability, paler where the model is unsure
        colors = np.array([color_rgb(class_color(c)) for c in range(k)])
        mixed = probs @ colors
        confidence = probs.max(1, keepdims=True)
        image = (1 - 0.6 * confidence) * 1.0 + 0.6 * confidence * mixed
        ax.imshow(image.reshape(*grid.shape, 3), origin="lower", extent=grid.extent, aspect="auto")
    if len(train_points):
        ax.scatter(
            train_points[:, 0],
            train_points[:, 1],
            c=class_colors(train_labels),
            s=12,
            edgecolors="white",
            linewidths=0.5,
        )
    if len(test_points):
        ax.scatter(
            test_points[:, 0], test_points[:, 1], c=class_colors(test_labels), s=16, edgecolors="black", linewidths=0.8
        )
        wrong = test_predicted != test_labels
        if wrong.any():
            ax.scatter(
                test_points[wrong][:, 0], test_points[wrong][:, 1], marker="x", c="#d00000", s=40, linewidths=1.5
            )
    handles = [
        ax.scatter([], [], c="#999999", s=12, edgecolors="white", label="train"),
        ax.scatter([], [], c="#999999", s=16, edgecolors="black", label="test"),
        ax.scatter(
            [],
            [],
            marker="x",
            c="#d00000",
            s=40,
            label=f"test, misclassified ({int((test_predicted != test_labels).sum())})",
        ),
    ]
    for c, name in enumerate(class_names):
        handles.append(ax.scatter([], [], c=class_color(c), s=12, label=f"class {name}"))
    ax.legend(handles=handles, loc="upper right", fontsize=6, framealpha=0.7)
    ax.set_xlim(grid.extent[:2])
    ax.set_ylim(grid.extent[2:])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    fit_title(ax.set_title(title, fontsize=9))
    return figure


def regression_fit_figure(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    title: str = "",
    surface: Mapping[str, Any] | None = None,
    dpi: int = DPI,
) -> Figure:
    """Predicted against true values with the identity line, and the residual histogram.
    With ``surface`` (the arguments of :func:`surface_panels` but the axes) a second row
    shows the predicted surface next to the true one."""
    figure = new_figure(8.0, 3.6 if surface is None else 7.2, dpi, right=0.2 if surface is None else 0.9, hspace=0.4)
    if surface is None:
        left, right = figure.subplots(1, 2)
    else:
        (left, right), (bottom_left, bottom_right) = figure.subplots(2, 2)
        surface_panels(figure, bottom_left, bottom_right, **surface)
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    residual = y_pred - y_true
    left.scatter(y_true, y_pred, s=10, alpha=0.6, c=BLUE, edgecolors="none")
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    left.plot([low, high], [low, high], c="black", lw=1, ls="--", label="identity")
    left.set_xlabel("true")
    left.set_ylabel("predicted")
    left.legend(fontsize=7, loc="upper left")
    fit_title(left.set_title(title, fontsize=9), right=0.52)
    right.hist(residual, bins=min(40, max(5, len(residual) // 5)), color=ORANGE, alpha=0.85)
    right.axvline(0, c="black", lw=1, ls="--")
    right.set_xlabel("residual (predicted - true)")
    right.set_ylabel("count")
    right.set_title(f"residuals: mean {residual.mean():.3g}, std {residual.std():.3g}", fontsize=9)
    return figure


def surface_panels(
    figure: Figure,
    left: Axes,
    right: Axes,
    grid: Grid,
    predicted: np.ndarray,
    true: np.ndarray | None,
    points: np.ndarray,
    targets: np.ndarray,
    title: str = "",
) -> None:
    """The predicted surface (left) next to the true one (right), on one colour scale.
    Without a known true function the right panel shows the points coloured by target."""
    predicted = predicted.reshape(grid.shape)
    values = [predicted.ravel(), np.ravel(targets)] + ([] if true is None else [np.ravel(true)])
    low = float(min(v.min() for v in values))
    high = float(max(v.max() for v in values))
    style: dict[str, Any] = {
        "origin": "lower",
        "extent": grid.extent,
        "cmap": "coolwarm",
        "vmin": low,
        "vmax": high,
        "aspect": "auto",
    }
    image = left.imshow(predicted, **style)
    left.scatter(points[:, 0], points[:, 1], c="black", s=2, alpha=0.3)
    left.set_title(f"predicted surface {title}".strip(), fontsize=9)
    if true is not None:
        right.imshow(np.reshape(true, grid.shape), **style)
        right.set_title("true surface", fontsize=9)
    else:
        right.scatter(points[:, 0], points[:, 1], c=np.ravel(targets), cmap="coolwarm", vmin=low, vmax=high, s=10)
        right.set_title("data (targets)", fontsize=9)
    for ax in (left, right):
        ax.set_xlim(grid.extent[:2])
        ax.set_ylim(grid.extent[2:])
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    figure.colorbar(image, ax=[left, right], shrink=0.9)


def regression_surface_figure(
    grid: Grid,
    predicted: np.ndarray,
    true: np.ndarray | None,
    points: np.ndarray,
    targets: np.ndarray,
    title: str = "",
    dpi: int = DPI,
) -> Figure:
    """2-D regression: the predicted surface next to the true one."""
    figure = new_figure(8.0, 3.6, dpi, right=0.9)
    left, right = figure.subplots(1, 2)
    surface_panels(figure, left, right, grid, predicted, true, points, targets, title)
    return figure


def function_fit_figure(
    x: np.ndarray,
    predicted: np.ndarray,
    true: np.ndarray,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    title: str = "",
    dpi: int = DPI,
) -> Figure:
    """The learned curve over the true one, with the training and test samples."""
    figure = new_figure(6.0, 3.6, dpi)
    ax = figure.add_subplot()
    ax.scatter(np.ravel(train[0]), np.ravel(train[1]), s=10, c=BLUE, alpha=0.5, label="train", edgecolors="none")
    ax.scatter(np.ravel(test[0]), np.ravel(test[1]), s=14, c="white", edgecolors="black", linewidths=0.7, label="test")
    ax.plot(x, true, c="black", lw=1.2, ls="--", label="true function")
    ax.plot(x, predicted, c=ORANGE, lw=2, label="model")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=7, loc="best")
    fit_title(ax.set_title(title, fontsize=9))
    return figure


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "", dpi: int = DPI) -> Figure:
    """Counts of (true, predicted) pairs; colour is the share of the true class (row)."""
    k = len(class_names)
    size = float(np.clip(1.6 + 0.42 * k, 3.2, 9.0))
    longest = max((len(str(c)) for c in class_names), default=1)
    figure = new_figure(size + 0.8, size, dpi, left=0.45 + 0.07 * longest, bottom=0.45 + 0.05 * longest)
    ax = figure.add_subplot()
    rows = matrix.sum(1, keepdims=True)
    share = matrix / np.where(rows > 0, rows, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if k <= 25:  # counts in the non-empty cells (blank zeros read faster, and draw faster)
        for i, j in zip(*np.nonzero(matrix), strict=True):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7 if k > 10 else 8, color=color)
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=45 if k > 6 and longest > 2 else 0, fontsize=7)
    ax.set_yticks(ticks, [str(c) for c in class_names], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fit_title(ax.set_title(title, fontsize=9))
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return figure


def curves_figure(history: Mapping[str, Sequence[float]], metric: str, title: str = "", dpi: int = DPI) -> Figure:
    """Training and validation loss and ``metric`` per epoch. ``history`` has ``epoch`` and
    ``train/loss``, ``val/loss``, ``train/<metric>``, ``val/<metric>`` (NaN where missing)."""
    epochs = np.asarray(history["epoch"], dtype=float)
    figure = new_figure(8.0, 3.2, dpi)
    axes = figure.subplots(1, 2)
    for ax, name in zip(axes, ("loss", metric), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for stage, color in (("train", BLUE), ("val", ORANGE)):
            values = np.asarray(history.get(f"{stage}/{name}", [math.nan] * len(epochs)), dtype=float)
            shown = np.isfinite(values)
            if shown.any():
                ax.plot(
                    epochs[shown], values[shown], c=color, lw=1.5, marker="." if shown.sum() < 40 else None, label=stage
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fit_title(axes[0].set_title(title, fontsize=9, loc="left"))
    return figure


def lr_find_figure(lrs: np.ndarray, losses: np.ndarray, suggestion: float | None, dpi: int = DPI) -> Figure:
    """The learning-rate range test: smoothed loss against learning rate (log scale)."""
    figure = new_figure(5.0, 3.4, dpi)
    ax = figure.add_subplot()
    ax.plot(lrs, losses, c=BLUE, lw=1.5)
    if suggestion is not None:
        at = int(np.argmin(np.abs(np.log(lrs) - math.log(suggestion))))
        ax.scatter([lrs[at]], [losses[at]], s=60, c="#d00000", zorder=3, label=f"suggestion {suggestion:.3g}")
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate range test", fontsize=9)
    ax.grid(alpha=0.3)
    return figure


# --- sweeps ---------------------------------------------------------------------------------

LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class SweepCurve:
    """One job's validation curves for :func:`sweep_curves_figure`: ``curves`` maps a tag
    (``val/loss``, ``val/acc``) to (epochs, values); ``value`` is the job's value of the
    parameter that colours the lines, ``label`` its legend text, ``style`` an index into
    :data:`LINE_STYLES` (the second swept parameter), ``ok`` False for failed or unfinished
    jobs (drawn thinner and faded)."""

    label: str
    value: str
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]]
    style: int = 0
    ok: bool = True


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def sweep_curves_figure(
    jobs: Sequence[SweepCurve],
    tags: Sequence[str],
    colour_by: str,
    title: str = "",
    per_job_legend: bool = False,
    max_legend: int = 12,
    dpi: int = DPI,
) -> Figure:
    """The validation curves of every job of a sweep overlaid, one panel per tag, coloured by
    the swept value ``colour_by``: a colormap and colorbar for numbers (log-scaled when they
    span a factor of 100 or more), distinct colours and a legend for choices. With
    ``per_job_legend`` (several swept parameters) the legend names each job instead, when
    there are at most ``max_legend`` of them. Panels of positive values that span a factor
    of 100 or more get a log y axis."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    values = [job.value for job in jobs]
    numbers = [_as_number(v) for v in values]
    distinct = sorted(set(values), key=lambda s: (_as_number(s) is None, _as_number(s) or 0.0, s))
    finite = [n for n in numbers if n is not None and math.isfinite(n)]
    continuous = bool(values) and all(n is not None for n in numbers) and len(set(finite)) > 2
    colours: list[Any]
    mappable = None
    if continuous:  # a job whose value is not finite (lr=nan) is grey
        low, high = min(finite), max(finite)
        norm = LogNorm(low, high) if low > 0 and high / low >= 100 else Normalize(low, high)
        cmap = colormaps["viridis"]
        colours = [cmap(norm(n)) if n is not None and math.isfinite(n) else "#999999" for n in numbers]
        mappable = ScalarMappable(norm=norm, cmap=cmap)
    else:
        position = {v: i for i, v in enumerate(distinct)}
        colours = [class_color(position[v]) for v in values]

    handles: list[Line2D] = []
    if per_job_legend and len(jobs) <= max_legend:
        handles = [
            Line2D([], [], c=c, ls=LINE_STYLES[job.style % len(LINE_STYLES)], lw=1.5, label=job.label)
            for job, c in zip(jobs, colours, strict=True)
        ]
    elif not continuous:
        first = {v: c for v, c in zip(values, colours, strict=True)}
        handles = [Line2D([], [], c=first[v], lw=1.5, label=f"{colour_by}={v}") for v in distinct[:max_legend]]
        if len(distinct) > max_legend:
            handles.append(Line2D([], [], c="none", label=f"+{len(distinct) - max_legend} more"))
    for handle in handles:
        text = str(handle.get_label())
        if len(text) > 40:
            handle.set_label(text[:39] + "…")
    longest = max((len(str(h.get_label())) for h in handles), default=0)
    legend_width = 0.6 + 0.05 * longest if handles else 0.0
    colorbar_width = 0.6 if continuous else 0.0  # the colorbar itself takes from the panels
    width = 4.4 * max(1, len(tags)) + 0.7 + legend_width + colorbar_width
    figure = new_figure(width, 3.8, dpi, right=0.25 + legend_width + colorbar_width, top=0.45)
    axes = np.atleast_1d(figure.subplots(1, max(1, len(tags)), squeeze=False)[0])
    for ax, tag in zip(axes, tags, strict=False):
        shown: list[float] = []
        for job, colour in zip(jobs, colours, strict=True):
            if tag not in job.curves:
                continue
            epochs, ys = (np.asarray(a, dtype=float) for a in job.curves[tag])
            finite = np.isfinite(ys)
            if not finite.any():
                continue
            shown += ys[finite].tolist()
            ax.plot(
                epochs[finite],
                ys[finite],
                c=colour,
                ls=LINE_STYLES[job.style % len(LINE_STYLES)],
                lw=1.5 if job.ok else 1.0,
                alpha=0.9 if job.ok else 0.45,
                marker="." if finite.sum() < 30 else None,
                ms=4,
            )
        if shown and min(shown) > 0 and max(shown) / min(shown) >= 100:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(tag)
        ax.grid(alpha=0.3)
    if mappable is not None:
        figure.colorbar(mappable, ax=list(axes), fraction=0.05, pad=0.03, label=colour_by)
    if handles:
        figure.legend(
            handles=handles,
            loc="upper right",
            bbox_to_anchor=(1 - 0.1 / width, 1 - 0.45 / 3.8),
            fontsize=7,
            framealpha=0.8,
        )
    figure.suptitle(title, fontsize=9)
    return figure


# --- loss landscapes and activations ------------------------------------------------------

PATH_COLORS = {"SGD": "#d62728", "SGD+momentum": "#2ca02c", "Adam": "#9467bd"}


def contour_panel(
    ax: Axes,
    a: np.ndarray,
    b: np.ndarray,
    loss: np.ndarray,
    paths: Mapping[str, np.ndarray] | None = None,
    marks: Mapping[str, tuple[float, float]] | None = None,
    levels: int = 25,
) -> None:
    """Filled log-spaced contours of ``loss`` (rows along ``b``, columns along ``a``), with
    optimizer paths and marked points."""
    positive = loss[loss > 0]
    low = float(positive.min()) if positive.size else 1e-8
    high = float(loss.max())
    if high > low * 1.0001:
        steps = np.geomspace(low, high, levels)
        contours = ax.contourf(a, b, np.maximum(loss, low), levels=steps, norm=LogNorm(low, high), cmap="viridis")
        ax.contour(a, b, np.maximum(loss, low), levels=steps[::3], colors="white", linewidths=0.4, alpha=0.5)
    else:
        contours = ax.contourf(a, b, loss, cmap="viridis")
    ax.figure.colorbar(contours, ax=ax, shrink=0.85, format="%.2g")
    for name, path in (paths or {}).items():
        color = PATH_COLORS.get(name, "white")
        ax.plot(path[:, 0], path[:, 1], c=color, lw=1.6, marker=".", ms=3, label=name)
        ax.scatter(path[-1, 0], path[-1, 1], c=color, s=25, edgecolors="white", zorder=3)
    for i, (name, point) in enumerate((marks or {}).items()):
        ax.scatter(
            *point,
            marker="*o"[min(i, 1)],
            s=120,
            c="white" if i == 0 else "#ffcc00",
            edgecolors="black",
            zorder=4,
            label=name,
        )
    ax.set_xlim(a.min(), a.max())
    ax.set_ylim(b.min(), b.max())
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_locator(MaxNLocator(6))


def two_param_figure(cases: Sequence[Mapping[str, object]], dpi: int = DPI) -> Figure:
    """The lecture's example: one contour panel per dataset of y = θ1·x + θ2. Each case has
    ``theta1``, ``theta2``, ``loss`` (grid), ``paths``, ``start``, ``optimum``, ``title``."""
    figure = new_figure(5.0 * len(cases), 4.6, dpi, right=0.7, wspace=0.45)
    axes = np.atleast_1d(figure.subplots(1, len(cases)))
    for ax, case in zip(axes, cases, strict=True):
        contour_panel(
            ax,
            np.asarray(case["theta1"]),
            np.asarray(case["theta2"]),
            np.asarray(case["loss"]),
            paths=case["paths"],  # type: ignore[arg-type]
            marks={"θ* (true)": case["optimum"], "start": case["start"]},  # type: ignore[dict-item]
        )
        ax.set_xlabel("θ1 (slope)")
        ax.set_ylabel("θ2 (intercept)")
        ax.set_title(str(case["title"]), fontsize=9)
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    return figure


def landscape_contour_figure(a: np.ndarray, b: np.ndarray, loss: np.ndarray, title: str = "", dpi: int = DPI) -> Figure:
    """A 2-D slice of a loss around trained weights (at the origin), as contours."""
    figure = new_figure(5.0, 4.4, dpi, left=0.8, right=0.7)
    ax = figure.add_subplot()
    contour_panel(ax, a, b, loss, marks={"trained weights": (0.0, 0.0)})
    ax.set_xlabel("α (direction 1)")
    ax.set_ylabel("β (direction 2)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return figure


def landscape_surface_figure(a: np.ndarray, b: np.ndarray, loss: np.ndarray, title: str = "", dpi: int = DPI) -> Figure:
    """The same slice as a 3-D surface (log of the loss as height)."""
    figure = new_figure(5.0, 4.4, dpi, left=0.1, right=0.3, bottom=0.2, top=0.35)
    ax = figure.add_subplot(projection="3d")
    aa, bb = np.meshgrid(a, b)
    height = np.log10(np.maximum(loss, 1e-12))
    ax.plot_surface(aa, bb, height, cmap="viridis", linewidth=0, antialiased=False, rcount=60, ccount=60)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    ax.set_zlabel("log10 loss")
    ax.set_title(title, fontsize=9)
    return figure


def activations_figure(x: np.ndarray, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], dpi: int = DPI) -> Figure:
    """Each activation (solid) and its derivative (dashed), one small panel each."""
    n = len(curves)
    columns = 4
    rows = -(-n // columns)
    figure = new_figure(3.0 * columns, 2.4 * rows, dpi, left=0.4, bottom=0.35, top=0.3, wspace=0.25)
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=True)).ravel()
    for ax, (name, (y, dy)) in zip(axes, curves.items(), strict=False):
        ax.axhline(0, c="#999999", lw=0.6)
        ax.axvline(0, c="#999999", lw=0.6)
        ax.plot(x, y, c=BLUE, lw=2, label="f(x)")
        ax.plot(x, dy, c=ORANGE, lw=1.5, ls="--", label="f'(x)")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-2.2, 3.2)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure


# --- pictures of a dataset (dllab-data) -------------------------------------------------------

SPLIT_COLORS = {"train": BLUE, "val": ORANGE, "test": "#2ca02c"}


def data_scatter_figure(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str] | None = None,
    title: str = "",
    dpi: int = DPI,
) -> Figure:
    """A 2-D set, one panel per split (``splits``: name -> (points (n, 2), targets)), on the
    same axes: points coloured by class (``class_names`` given) or by the target value on one
    colour scale with a colorbar (regression)."""
    from matplotlib.lines import Line2D

    n = len(splits)
    classification = class_names is not None
    figure = new_figure(3.2 * n + (0.9 if not classification else 0.0), 3.6, dpi, left=0.55, right=0.9, top=0.6)
    axes = np.atleast_1d(figure.subplots(1, n, sharex=True, sharey=True))
    everything = np.concatenate([np.asarray(p, dtype=float) for p, _ in splits.values()])
    values = np.concatenate([np.ravel(v) for _, v in splits.values()])
    low, high = float(values.min()), float(values.max())
    scatter = None
    for ax, (split, (points, targets)) in zip(axes, splits.items(), strict=True):
        points = np.asarray(points, dtype=float)
        if classification:
            ax.scatter(points[:, 0], points[:, 1], c=class_colors(np.asarray(targets)), s=10, edgecolors="none")
        else:
            scatter = ax.scatter(
                points[:, 0], points[:, 1], c=np.ravel(targets), cmap="coolwarm", vmin=low, vmax=high, s=10
            )
        ax.set_title(f"{split}: {len(points)} samples", fontsize=9)
        ax.set_xlabel("x1")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("x2")
    pad = (everything.max(0) - everything.min(0)) * 0.05
    axes[0].set_xlim(everything[:, 0].min() - pad[0], everything[:, 0].max() + pad[0])
    axes[0].set_ylim(everything[:, 1].min() - pad[1], everything[:, 1].max() + pad[1])
    if classification:
        handles = [
            Line2D([], [], ls="", marker="o", c=class_color(i), label=f"class {name}")
            for i, name in enumerate(class_names or [])
        ]
        axes[-1].legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.8)
    elif scatter is not None:
        figure.colorbar(scatter, ax=list(axes), shrink=0.85, label="target")
    figure.suptitle(title, fontsize=10)
    return figure


def data_function_figure(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "", dpi: int = DPI
) -> Figure:
    """A 1-D regression set: y over x, one colour per split."""
    figure = new_figure(6.0, 3.6, dpi)
    ax = figure.add_subplot()
    for split, (x, y) in splits.items():
        ax.scatter(
            np.ravel(x), np.ravel(y), s=12, c=SPLIT_COLORS.get(split, "#7f7f7f"), label=f"{split} ({len(x)})", alpha=0.8
        )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    return figure


def image_grid_figure(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    per_class: int = 8,
    max_classes: int = 10,
    title: str = "",
    dpi: int = DPI,
) -> Figure:
    """The first ``per_class`` images of each class (one row per class, at most
    ``max_classes`` rows), from (N, C, H, W) images with 1 (grey) or 3 (RGB) channels,
    shown on one common intensity scale."""
    images = np.asarray(images, dtype=float)
    labels = np.asarray(labels)
    classes = list(range(min(len(class_names), max_classes)))
    low, high = float(images.min()), float(images.max())
    scaled = (images - low) / max(high - low, 1e-12)
    cell = 0.7
    longest = max((len(str(class_names[c])) for c in classes), default=1)
    left = 0.25 + 0.07 * longest
    figure = new_figure(
        left + cell * per_class + 0.1, cell * len(classes) + 0.55, dpi, left=left, right=0.1, bottom=0.05, top=0.45,
        wspace=0.05, hspace=0.05,
    )  # fmt: skip
    axes = np.atleast_2d(figure.subplots(len(classes), per_class, squeeze=False))
    for row, c in zip(axes, classes, strict=True):
        chosen = np.flatnonzero(labels == c)[:per_class]
        for column, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if column < len(chosen):
                image = scaled[chosen[column]]
                if image.shape[0] == 1:
                    ax.imshow(image[0], cmap="gray_r", vmin=0, vmax=1)
                else:
                    ax.imshow(np.clip(np.transpose(image[:3], (1, 2, 0)), 0, 1))
            else:
                ax.set_axis_off()
        row[0].set_ylabel(str(class_names[c]), rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(title, fontsize=9)
    return figure


def pairs_figure(
    x: np.ndarray,
    y: np.ndarray,
    feature_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    title: str = "",
    dpi: int = DPI,
) -> Figure:
    """A pairs view of a table: histograms of each feature on the diagonal (per class for
    classification), scatter plots of each pair below it; for regression the target is the
    last variable (and colours the points)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y)
    classification = class_names is not None
    names = list(feature_names)
    columns = [x[:, i] for i in range(x.shape[1])]
    if not classification:
        target = np.asarray(y, dtype=float).reshape(len(y), -1)[:, 0]
        columns.append(target)
        names.append("target")
    k = len(columns)
    colours: Any = class_colors(y) if classification else target
    figure = new_figure(1.9 * k + 0.8, 1.9 * k + 0.5, dpi, left=0.7, right=0.15, bottom=0.55, top=0.45)
    axes = np.atleast_2d(figure.subplots(k, k, squeeze=False))
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            ax.tick_params(labelsize=6)
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                if classification:
                    bins = np.histogram_bin_edges(columns[i], bins=20)
                    for c, name in enumerate(class_names or []):
                        ax.hist(columns[i][y == c], bins=bins, color=class_color(c), alpha=0.55, label=str(name))
                else:
                    ax.hist(columns[i], bins=20, color=BLUE, alpha=0.8)
            else:
                ax.scatter(columns[j], columns[i], c=colours, cmap=None if classification else "coolwarm", s=5)
            if i == k - 1:
                ax.set_xlabel(names[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(names[i] if i else "count", fontsize=7)
    if classification and len(class_names or []) <= 12:
        axes[0, 0].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.05, 1.0), title="class", title_fontsize=6)
    figure.suptitle(title, fontsize=9)
    return figure
