"""What dllab offers, by name: datasets, activations, losses, features.

This module imports nothing heavy, so the config checks that run before torch is
imported (and the ``--help``/``--cfg`` paths) can name every valid choice.
The builders in ``mlp``, ``losses`` and ``datasets`` use the same names, and a
test keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset dllab can load: its task, its kind, and its size when fixed."""

    task: str
    # "playground" (2-D generator), "sklearn" (ships inside scikit-learn), "function" (1-D),
    # "download" (fetched into paths.data_dir), "image_folder" or "table" (one's own files)
    kind: str
    n_samples: int | None = None  # fixed size of a scikit-learn set; generators take n_samples


DATASETS: dict[str, DatasetInfo] = {
    "circle": DatasetInfo(CLASSIFICATION, "playground"),
    "xor": DatasetInfo(CLASSIFICATION, "playground"),
    "gauss": DatasetInfo(CLASSIFICATION, "playground"),
    "spiral": DatasetInfo(CLASSIFICATION, "playground"),
    "plane": DatasetInfo(REGRESSION, "playground"),
    "multigauss": DatasetInfo(REGRESSION, "playground"),
    "iris": DatasetInfo(CLASSIFICATION, "sklearn", 150),
    "wine": DatasetInfo(CLASSIFICATION, "sklearn", 178),
    "breast_cancer": DatasetInfo(CLASSIFICATION, "sklearn", 569),
    "digits": DatasetInfo(CLASSIFICATION, "sklearn", 1797),
    "diabetes": DatasetInfo(REGRESSION, "sklearn", 442),
    "mnist": DatasetInfo(CLASSIFICATION, "download", 70000),
    "fashion_mnist": DatasetInfo(CLASSIFICATION, "download", 70000),
    "cifar10": DatasetInfo(CLASSIFICATION, "download", 60000),
    "image_folder": DatasetInfo(CLASSIFICATION, "image_folder"),
    "csv": DatasetInfo("auto", "table"),  # the task follows from the target column (or data.task)
    "function": DatasetInfo(REGRESSION, "function"),
}

# Datasets of images (rows are flattened (C, H, W) images): the ones augmentation works on.
IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "image_folder")
# Image datasets whose mirror image keeps its class, so horizontal flips are a valid augmentation
# (not digits; image_folder says so in data.mirror).
MIRRORED = ("fashion_mnist", "cifar10")

# Target functions of the 1-D ``function`` set (data.fn), see dllab.data.functions.
FUNCTIONS = ("sin", "abs", "step", "square")

# Input features of the 2-D playground sets, computed from the raw point (x1, x2).
FEATURES = ("x1", "x2", "x1^2", "x2^2", "x1x2", "sin_x1", "sin_x2")

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "leaky_relu", "elu", "silu", "identity")

# Losses that fit each task. Classification accepts "mse" on softmax probabilities
# against one-hot targets, as the TensorFlow Playground trains its classifiers.
LOSSES: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("cross_entropy", "hinge", "mse"),
    REGRESSION: ("mse", "l1", "huber"),
}
ALL_LOSSES = ("cross_entropy", "hinge", "mse", "l1", "huber")
AUTO = "auto"  # loss: the task's standard loss; optimized_metric: the task's main metric

# The metric a run optimizes when ``optimized_metric: auto``, and the direction of each metric.
DEFAULT_METRIC = {CLASSIFICATION: "val/acc", REGRESSION: "val/mse"}
MAXIMIZED = ("acc", "f1", "r2")


def default_loss(task: str) -> str:
    return "cross_entropy" if task == CLASSIFICATION else "mse"


def metric_mode(metric: str) -> str:
    """'max' for accuracy-like metrics, 'min' for losses and errors."""
    leaf = metric.rsplit("/", 1)[-1].removesuffix("_best")
    return "max" if leaf in MAXIMIZED else "min"
