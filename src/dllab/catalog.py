"""What dllab offers, by name: datasets, activations, losses.

This module imports nothing heavy, so the config checks that run before torch is
imported (and the ``--help``/``--cfg`` paths) can name every valid choice.
The builders (``dllab.models.activations``, ``dllab.training.losses``) and the data
configs use the same names, and tests keep them in step.
"""

from __future__ import annotations

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


# The built-in datasets (conf/data/<name>.yaml): name -> the source class its config's _target_
# names. Configs saved before sources are upgraded with it (dllab.data.source.upgrade_data_config).
_PLAYGROUND = "dllab.data.playground.Playground"
_SKLEARN = "dllab.data.sklearn_sets.SklearnSet"
_DOWNLOADED = "dllab.data.downloaded_images.DownloadedImages"
BUILTIN_SOURCES: dict[str, str] = {
    "circle": _PLAYGROUND,
    "xor": _PLAYGROUND,
    "gauss": _PLAYGROUND,
    "spiral": _PLAYGROUND,
    "plane": _PLAYGROUND,
    "multigauss": _PLAYGROUND,
    "iris": _SKLEARN,
    "wine": _SKLEARN,
    "breast_cancer": _SKLEARN,
    "digits": _SKLEARN,
    "diabetes": _SKLEARN,
    "mnist": _DOWNLOADED,
    "fashion_mnist": _DOWNLOADED,
    "cifar10": _DOWNLOADED,
    "image_folder": "dllab.data.image_folder.ImageFolder",
    "csv": "dllab.data.tables.Table",
    "function": "dllab.data.functions.FunctionSet",
}

# Pooling of dllab.models.cnn.CNN after each conv block.
POOLING = ("max", "avg", "none")

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "leaky_relu", "elu", "silu", "identity")

# Losses that fit each task. Classification accepts "mse" on softmax probabilities
# against one-hot targets, as the TensorFlow Playground trains its classifiers.
LOSSES: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("cross_entropy", "hinge", "mse"),
    REGRESSION: ("mse", "l1", "huber"),
}
ALL_LOSSES = ("cross_entropy", "hinge", "mse", "l1", "huber")
AUTO = "auto"  # loss: the task's standard loss; optimized_metric: the task's main metric

# The metrics dllab's modules log per task (as train/<name> and val/<name>, with train/loss and
# val/loss), and the main one, also logged as val/<main>_best (dllab.training.module; a test
# keeps them in step). The config checks name them before torch is imported.
METRICS: dict[str, tuple[str, ...]] = {CLASSIFICATION: ("acc", "f1"), REGRESSION: ("mse", "mae", "r2")}
MAIN_METRIC = {CLASSIFICATION: "acc", REGRESSION: "mse"}
# The metric a run optimizes when ``optimized_metric: auto``, and the direction of each metric.
DEFAULT_METRIC = {task: f"val/{metric}" for task, metric in MAIN_METRIC.items()}
MAXIMIZED = ("acc", "f1", "r2")


def default_loss(task: str) -> str:
    return "cross_entropy" if task == CLASSIFICATION else "mse"


def metric_mode(metric: str) -> str:
    """'max' for accuracy-like metrics, 'min' for losses and errors."""
    leaf = metric.rsplit("/", 1)[-1].removesuffix("_best")
    return "max" if leaf in MAXIMIZED else "min"
