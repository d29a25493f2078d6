"""Lightning callbacks that draw a run's pictures (see :mod:`dllab.pictures.plots`), log them to
TensorBoard's IMAGES tab and save them as PNG files in the run dir.

- every ``plots.every_n_epochs`` epochs during fit, under ``plots/<name>`` (the image step is
  the number of epochs done, so TensorBoard's step slider shows the picture forming), as
  raster images drawn with numpy (far cheaper than a matplotlib figure):
  ``decision_boundary`` (2-D classification), ``regression_surface`` (2-D regression),
  ``function_fit`` (the 1-D ``function`` set);
- once after testing, from the tested model (the best checkpoint), under ``final/<name>`` and
  as ``<name>.png`` in the run dir: ``decision_boundary``, ``regression_fit`` (any
  regression; with the predicted and true surfaces for 2-D data), ``function_fit``,
  ``confusion_matrix`` (classification, test split) and ``curves`` (every run).

Grid points go through the data's own preprocessing (the Playground feature expansion and
the training split's scaling, :func:`model_inputs`), and regression outputs are scaled back
to the data's units, so the pictures show what the model does to raw inputs. Every callback
adds the seconds it spends to ``seconds``; ``dllab-train`` reports the sum.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure

from dllab.catalog import CLASSIFICATION, REGRESSION
from dllab.data.functions import FORMULAS, FUNCTION_DOMAIN, TARGET_FUNCTIONS, FunctionSet
from dllab.data.playground import SURFACES, Playground, expand_features
from dllab.pictures import plots
from dllab.training.loggers import run_title

log = logging.getLogger(__name__)

FIT_PREFIX, FINAL_PREFIX = "plots", "final"


# --- from raw inputs to model outputs -------------------------------------------------------


def data_source(datamodule: Any) -> Any:
    """The data source of a datamodule (None for anything else)."""
    return getattr(datamodule, "source", None)


def model_inputs(datamodule: Any, raw: np.ndarray) -> np.ndarray:
    """Raw points (n, 2) of a playground set or inputs (n, 1) of the function set, as the
    model sees them: feature expansion, then the training split's scaling."""
    data = data_source(datamodule)
    x = expand_features(raw, data.features) if isinstance(data, Playground) else raw
    scaling = getattr(datamodule, "scaling", {})
    if "x_mean" in scaling:
        x = (x - scaling["x_mean"]) / scaling["x_std"]
    return np.asarray(x, dtype=np.float32)


def unscale_targets(datamodule: Any, y: np.ndarray) -> np.ndarray:
    """Regression targets or outputs in the data's own units."""
    scaling = getattr(datamodule, "scaling", {})
    if "y_mean" in scaling:
        return y * scaling["y_std"] + scaling["y_mean"]
    return y


@torch.no_grad()
def predict(
    module: torch.nn.Module, x: np.ndarray, image_shape: Sequence[int] | None = None, batch_size: int = 65536
) -> np.ndarray:
    """Model outputs for model inputs ``x`` (rows; images of ``image_shape`` reach the model as
    (N, C, H, W), as in training) in eval mode (the mode is restored): class probabilities for
    classification modules, raw outputs otherwise."""
    was_training = module.training
    module.eval()
    try:
        first = next(module.parameters())  # device and dtype (64-true precision runs in float64)
        outputs = []
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size]).to(first.device, first.dtype)
            out = module(batch if image_shape is None else batch.view(-1, *image_shape)).float()
            if getattr(module, "task", None) == CLASSIFICATION:
                out = out.softmax(-1)
            outputs.append(out.cpu().numpy())
        return np.concatenate(outputs)
    finally:
        module.train(was_training)


def split_points(datamodule: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw inputs and targets (data units) of a split."""
    y = datamodule.arrays[split][1]
    if datamodule.task == REGRESSION:
        y = unscale_targets(datamodule, y)
    return datamodule.points[split], y


# --- TensorBoard -------------------------------------------------------------------------


def log_png(loggers: Iterable[Any], tag: str, png: bytes, step: int, height: int, width: int) -> None:
    """Add PNG bytes to every TensorBoard logger in ``loggers`` as an image summary
    (no decoding and re-encoding: the file and TensorBoard get the same bytes)."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.compat.proto.summary_pb2 import Summary

    from dllab import compat

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            compat.tensorboard_file_writer(logger).add_summary(summary, step)


def log_figure(loggers: Iterable[Any], tag: str, figure: Figure, step: int) -> bytes:
    """Log a figure as PNG to TensorBoard; return the PNG bytes."""
    png = plots.to_png(figure)
    width, height = (round(v * figure.dpi) for v in figure.get_size_inches())
    log_png(loggers, tag, png, step, height, width)
    return png


class PlotCallback(L.Callback, ABC):
    """Base: decides where a picture applies, when to draw it, and where it goes."""

    name: ClassVar[str]
    during_fit: ClassVar[bool] = False  # also drawn every ``every_n_epochs`` epochs
    fit_name: ClassVar[str] = ""  # tag of the during-fit picture, when not ``name``

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 5, resolution: int = 100, dpi: int = plots.DPI):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.resolution = resolution
        self.dpi = dpi
        self.seconds = 0.0
        self.active = False
        self.written: list[Path] = []
        self.surface = False
        # the run's HParams set and the keys its sweep varies (dllab.runs.build.build sets them)
        self.run_hparams: tuple[dict[str, Any], list[str]] | None = None
        self.tested_epoch: int | None = None  # the epoch index of the checkpoint trainer.test loaded
        self.error: str | None = None  # why the picture was not drawn (see not_fatal)

    @abstractmethod
    def applies(self, datamodule: Any) -> bool:
        """Whether this picture fits the run's data."""

    @abstractmethod
    def draw(self, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, final: bool) -> Figure:
        """The full picture (a matplotlib figure), saved at the end."""

    def raster(self, module: L.LightningModule, datamodule: Any) -> np.ndarray:
        """The cheap (H, W, 3) picture logged every ``every_n_epochs`` epochs during fit
        (only pictures with ``during_fit`` draw one)."""
        raise TypeError(f"{type(self).__name__} draws no picture during fit")

    # plumbing
    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        self.active = bool(
            datamodule is not None and not getattr(trainer, "fast_dev_run", False) and self.applies(datamodule)
        )
        self.tested_epoch = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.tested_epoch = checkpoint.get("epoch")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if not (self.active and self.draws_during_fit() and trainer.is_global_zero and done % self.every_n_epochs == 0):
            return
        if not any(type(lg).__name__ == "TensorBoardLogger" for lg in trainer.loggers):
            return
        with self.timed(), self.not_fatal():
            rgb = self.raster(pl_module, trainer.datamodule)  # type: ignore[attr-defined]
            tag = f"{FIT_PREFIX}/{self.fit_name or self.name}"
            log_png(trainer.loggers, tag, plots.png_of(rgb), done, rgb.shape[0], rgb.shape[1])

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.active and trainer.is_global_zero):
            return
        with self.timed(), self.not_fatal():
            figure = self.draw(trainer, pl_module, trainer.datamodule, final=True)  # type: ignore[attr-defined]
            png = log_figure(trainer.loggers, f"{FINAL_PREFIX}/{self.name}", figure, trainer.current_epoch)
            path = self.dirpath / f"{self.name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            self.written.append(path)

    @contextmanager
    def not_fatal(self) -> Iterator[None]:
        """A picture that cannot be drawn or saved (out of memory, a full disk) is a warning,
        and no more pictures of its kind are tried: it must never cost the run its record."""
        try:
            yield
        except Exception as err:
            import matplotlib.pyplot as plt

            plt.close("all")
            self.active = False
            self.error = f"{self.name}: {type(err).__name__}: {err}".strip()
            log.warning("warning: picture %s not drawn (%s: %s); the run goes on", self.name, type(err).__name__, err)

    def draws_during_fit(self) -> bool:
        return self.during_fit

    def title(self, trainer: L.Trainer, final: bool) -> str:
        """What the picture shows, by epochs done: the tested model (the best checkpoint's
        epoch, else the last) or the model during fit."""
        if not final:
            return f"epoch {trainer.current_epoch + 1}"
        done = getattr(trainer, "current_epoch", None) if self.tested_epoch is None else self.tested_epoch + 1
        return "tested" if done is None else f"tested (epoch {done})"

    def run_label(self, datamodule: Any, first: str | None = None) -> str:
        """The run's data and key hyperparameters, one short line (:func:`run_title`):
        ``circle · relu · sgd lr 0.03``; the data name alone when the run's config is unknown."""
        if self.run_hparams:
            return run_title(*self.run_hparams, first=first)
        return first if first is not None else str(getattr(datamodule, "data_name", ""))


class DecisionBoundary(PlotCallback):
    """2-D classification: the Playground's picture of the predicted class probability."""

    name = "decision_boundary"
    during_fit = True

    def applies(self, datamodule: Any) -> bool:
        return isinstance(data_source(datamodule), Playground) and datamodule.task == CLASSIFICATION

    def parts(self, module: L.LightningModule, datamodule: Any) -> dict[str, Any]:
        points = datamodule.points
        grid = plots.grid_over(np.concatenate([points[s] for s in points]), self.resolution)
        train_points, train_labels = split_points(datamodule, "train")
        test_points, test_labels = split_points(datamodule, "test")
        return {
            "grid": grid,
            "probs": predict(module, model_inputs(datamodule, grid.points)),
            "train_points": train_points,
            "train_labels": train_labels,
            "test_points": test_points,
            "test_labels": test_labels,
            "test_predicted": predict(module, datamodule.arrays["test"][0]).argmax(1),
        }

    def raster(self, module: L.LightningModule, datamodule: Any) -> np.ndarray:
        return plots.boundary_raster(**self.parts(module, datamodule))

    def draw(self, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, final: bool) -> Figure:
        parts = self.parts(module, datamodule)
        accuracy = float((parts["test_predicted"] == parts["test_labels"]).mean())
        return plots.decision_boundary_figure(
            **parts,
            class_names=datamodule.class_names,
            title=f"{self.run_label(datamodule)} · {self.title(trainer, final)}: acc {accuracy:.3f}",
            dpi=self.dpi,
        )


class RegressionFit(PlotCallback):
    """Regression: predicted vs true on the test split and the residuals; for 2-D data the
    predicted surface next to the true one (also drawn during fit as ``regression_surface``)."""

    name = "regression_fit"
    fit_name = "regression_surface"

    def applies(self, datamodule: Any) -> bool:
        return datamodule.task == REGRESSION

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        datamodule = getattr(trainer, "datamodule", None)
        self.surface = bool(self.active and isinstance(data_source(datamodule), Playground))

    def draws_during_fit(self) -> bool:
        return self.surface

    def surface_parts(self, module: L.LightningModule, datamodule: Any) -> dict[str, Any]:
        points = np.concatenate([datamodule.points[s] for s in datamodule.points])
        grid = plots.grid_over(points, self.resolution, margin=0.0)
        predicted = unscale_targets(datamodule, predict(module, model_inputs(datamodule, grid.points)))[:, 0]
        surface = SURFACES.get(datamodule.source.name)
        true = surface(grid.points[:, 0], grid.points[:, 1]) if surface is not None else None
        train_points, train_targets = split_points(datamodule, "train")
        return {"grid": grid, "predicted": predicted, "true": true, "points": train_points, "targets": train_targets}

    def raster(self, module: L.LightningModule, datamodule: Any) -> np.ndarray:
        parts = self.surface_parts(module, datamodule)
        return plots.surface_raster(parts["grid"], parts["predicted"], parts["true"])

    def draw(self, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, final: bool) -> Figure:
        x_test, y_test = datamodule.arrays["test"]
        y_true = unscale_targets(datamodule, y_test)
        y_pred = unscale_targets(datamodule, predict(module, x_test))
        r2 = 1 - float(((y_pred - y_true) ** 2).sum() / max(((y_true - y_true.mean(0)) ** 2).sum(), 1e-12))
        title = f"{self.run_label(datamodule)} · {self.title(trainer, final)}: R² {r2:.3f}"
        surface = self.surface_parts(module, datamodule) if self.surface else None
        return plots.regression_fit_figure(y_true, y_pred, title=title, surface=surface, dpi=self.dpi)


class FunctionFit(PlotCallback):
    """The 1-D function set: the learned curve over the true function."""

    name = "function_fit"
    during_fit = True

    def applies(self, datamodule: Any) -> bool:
        return isinstance(data_source(datamodule), FunctionSet)

    def curves(self, module: L.LightningModule, datamodule: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.linspace(*FUNCTION_DOMAIN, 400)
        predicted = unscale_targets(datamodule, predict(module, model_inputs(datamodule, x[:, None])))[:, 0]
        return x, predicted, TARGET_FUNCTIONS[datamodule.source.fn](x)

    def raster(self, module: L.LightningModule, datamodule: Any) -> np.ndarray:
        x, predicted, true = self.curves(module, datamodule)
        train_x, train_y = split_points(datamodule, "train")
        return plots.curve_raster(x, [(true, "#222222"), (predicted, plots.ORANGE)], [(train_x, train_y, plots.BLUE)])

    def draw(self, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, final: bool) -> Figure:
        x, predicted, true = self.curves(module, datamodule)
        fn = datamodule.source.fn
        label = self.run_label(datamodule, first=f"y = {FORMULAS[fn]}")
        return plots.function_fit_figure(
            x,
            predicted,
            true,
            split_points(datamodule, "train"),
            split_points(datamodule, "test"),
            title=f"{label} · {self.title(trainer, final)}",
            dpi=self.dpi,
        )


class ConfusionMatrix(PlotCallback):
    """Classification: torchmetrics' confusion matrix of the tested model on the test split."""

    name = "confusion_matrix"

    def applies(self, datamodule: Any) -> bool:
        return datamodule.task == CLASSIFICATION

    def draw(self, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, final: bool) -> Figure:
        from torchmetrics.functional.classification import multiclass_confusion_matrix

        x_test, y_test = datamodule.arrays["test"]
        predicted = torch.from_numpy(predict(module, x_test, datamodule.image_shape).argmax(1))
        names = datamodule.class_names
        matrix = multiclass_confusion_matrix(predicted, torch.from_numpy(y_test), num_classes=len(names)).numpy()
        accuracy = float(np.trace(matrix) / max(matrix.sum(), 1))
        title = f"{self.run_label(datamodule)} · {self.title(trainer, final)}: acc {accuracy:.3f}"
        return plots.confusion_matrix_figure(matrix, names, title=title, dpi=self.dpi)


class LearningCurves(PlotCallback):
    """Training and validation loss and the main metric per epoch, for every run. The
    history is kept in checkpoints, so a resumed run draws all of its epochs."""

    name = "curves"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: dict[str, list[float]] = {"epoch": []}
        self._val_epoch = -1

    def applies(self, datamodule: Any) -> bool:
        return True

    def _keys(self, module: L.LightningModule) -> list[str]:
        metric = getattr(module, "main_metric", "")
        return [f"{stage}/{name}" for stage in ("train", "val") for name in ("loss", metric) if name]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        with self.timed():
            metrics = trainer.callback_metrics
            epoch = trainer.current_epoch + 1
            while self.history["epoch"] and self.history["epoch"][-1] >= epoch:  # resumed: drop redone epochs
                for values in self.history.values():
                    values.pop()
            for key in self._keys(pl_module):
                fresh = key.startswith("train/") or self._val_epoch == trainer.current_epoch
                value = float(metrics[key]) if fresh and key in metrics else math.nan
                self.history.setdefault(key, [math.nan] * len(self.history["epoch"])).append(value)
            self.history["epoch"].append(epoch)

    def draw(self, trainer: L.Trainer, module: L.LightningModule, datamodule: Any, final: bool) -> Figure:
        metric = getattr(module, "main_metric", "loss")
        title = f"{self.run_label(datamodule)} · {len(self.history['epoch'])} epochs"
        return plots.curves_figure(self.history, metric, title=title, dpi=self.dpi)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # A resumed fit starts with no history and gets the checkpoint's; testing the best
        # checkpoint after fit restores callback states too, and must keep all epochs.
        if not self.history["epoch"]:
            self.history = {k: list(v) for k, v in state_dict.get("history", {"epoch": []}).items()}


PLOTS: dict[str, type[PlotCallback]] = {
    "decision_boundary": DecisionBoundary,
    "regression_fit": RegressionFit,
    "function_fit": FunctionFit,
    "confusion_matrix": ConfusionMatrix,
    "curves": LearningCurves,
}


def build_plot_callbacks(
    dirpath: str | Path = ".",
    enabled: bool = True,
    every_n_epochs: int = 5,
    resolution: int = 100,
    dpi: int = plots.DPI,
    **switches: bool,
) -> list[PlotCallback]:
    """The plot callbacks of a ``plots`` config: one per picture switched on (all by default)."""
    if not enabled:
        return []
    unknown = set(switches) - set(PLOTS)
    if unknown:
        raise ValueError(f"plots: unknown pictures {sorted(unknown)}; choose from {', '.join(PLOTS)}")
    return [
        cls(dirpath, every_n_epochs=every_n_epochs, resolution=resolution, dpi=dpi)
        for name, cls in PLOTS.items()
        if switches.get(name, True)
    ]
