"""``dllab-data``: look at a dataset before training on it.

::

    dllab-data                           # the default data (digits) and model (MLP 64-64)
    dllab-data data=circle data.noise=0.2
    dllab-data data=digits model.hidden_sizes=[16] out=digits.png

The config is composed from ``conf/train.yaml`` exactly as ``dllab-train`` composes it, so
every ``data=`` option and ``data.*``/``model.*`` override works and bad values give the same
errors. It prints the data report a run logs before training (samples per split, classes
per split, features, training samples per model parameter for the configured model and the
warning under the rule of thumb of 10) and writes a picture of the data: the splits of a 2-D
set as scatter plots coloured by class or target, the 1-D function set as y over x, images
as a grid of samples per class, other tables as a pairs view of the first features and the
target. The picture goes to ``<paths.log_dir>/data/<name>.png`` unless ``out=FILE`` says
otherwise. Nothing is trained: no Lightning Trainer is made.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from dllab.catalog import CLASSIFICATION
from dllab.errors import ConfigError
from dllab.hydra_help import install as install_help
from dllab.runs.config import config_dir, plain, verbose_errors

# Hydra settings of this command: no run dir, no .hydra/ and no log file; logs to stdout.
HYDRA_OVERRIDES = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout")
PAIRS_FEATURES = 4  # features shown in the pairs view of a table
IMAGES_PER_CLASS = 8
IMAGE_CLASSES = 10  # rows of the image grid at most


def report(cfg: DictConfig, out: str | None = None) -> tuple[list[str], Path]:
    """The data report's lines and the path of the picture written."""
    import torch

    from dllab.checks import check_config
    from dllab.data.datamodule import build_datamodule
    from dllab.models.network import build_network
    from dllab.pictures import plots

    check_config(cfg)
    check_out(out)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    datamodule = build_datamodule(cfg.data)
    datamodule.setup()
    image_shape = datamodule.image_shape
    torch.manual_seed(cfg.seed)
    net = build_network(plain(cfg.model), datamodule.input_size, datamodule.output_size, image_shape)
    num_parameters = sum(p.numel() for p in net.parameters() if p.requires_grad)
    lines = [*datamodule.summary(num_parameters), f"model: {model_name(cfg)}, {num_parameters} parameters"]
    figure = data_figure(datamodule, plots)
    path = Path(out) if out else Path(cfg.paths.log_dir) / "data" / f"{datamodule.data_name}.png"
    try:
        plots.save(figure, path)
    except OSError as err:  # a read-only or full place: the report is still printed
        raise NotWritten(lines, f"{path}: not written ({err.strerror or err}); give a writable out=<file>.png") from err
    return lines, path


class NotWritten(Exception):
    """The report's picture could not be written; its lines are still shown."""

    def __init__(self, lines: list[str], message: str) -> None:
        super().__init__(message)
        self.lines = lines


def check_out(out: str | None) -> None:
    """``out=FILE``: a .png file (the picture is written as PNG), not a folder, under no file."""
    if out is None:
        return
    path = Path(out)
    if not out or path.suffix.lower() != ".png":
        raise ConfigError(f"out={out}: must be a file name ending in .png (the picture is a PNG)")
    if path.is_dir():
        raise ConfigError(f"out={out}: is a folder; give a file, e.g. out={path / 'data.png'}")
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"out={out}: {folder} is a file, not a folder")
            break


def model_name(cfg: DictConfig) -> str:
    target = str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1]
    hidden = cfg.model.get("hidden_sizes")
    activation = cfg.model.get("activation")
    details = [f"hidden sizes {list(hidden)}" if hidden is not None else "", str(activation or "")]
    return " ".join([target, *[d for d in details if d]])


def raw_splits(datamodule: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's features and targets in the data's own units (the scaling undone)."""
    scaling = datamodule.scaling
    splits = {}
    for split, (x, y) in datamodule.arrays.items():
        if "x_mean" in scaling:
            x = x * scaling["x_std"] + scaling["x_mean"]
        if "y_mean" in scaling:
            y = y * scaling["y_std"] + scaling["y_mean"]
        splits[split] = (x, y)
    return splits


def data_figure(datamodule: Any, plots: Any) -> Any:
    """The picture that fits the data: 2-D points, a 1-D function, images, or a table."""
    data = datamodule.dataset
    classification = data.task == CLASSIFICATION
    splits = raw_splits(datamodule)
    title = f"data={datamodule.data_name} ({data.task})"
    if datamodule.points and next(iter(datamodule.points.values())).shape[1] in (1, 2):
        points = {s: (datamodule.points[s], splits[s][1]) for s in splits}
        if next(iter(datamodule.points.values())).shape[1] == 2:
            return plots.data_scatter_figure(points, data.class_names if classification else None, title=title)
        return plots.data_function_figure(points, title=title)
    if data.image_shape is not None:
        x, y = splits["train"]
        images = x.reshape(-1, *data.image_shape)
        return plots.image_grid_figure(
            images, y, data.class_names, per_class=IMAGES_PER_CLASS, max_classes=IMAGE_CLASSES, title=title
        )
    x = np.concatenate([splits[s][0] for s in splits])
    y = np.concatenate([splits[s][1] for s in splits])
    return plots.pairs_figure(
        x[:, :PAIRS_FEATURES],
        y,
        data.feature_names[:PAIRS_FEATURES],
        data.class_names if classification else None,
        title=title,
    )


def split_out(argv: list[str]) -> tuple[list[str], str | None]:
    """``out=FILE`` is this command's own option, not a config key."""
    out = None
    rest = []
    for arg in argv:
        if arg.startswith("out="):
            out = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, out


_OUT: dict[str, str | None] = {"out": None}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        lines, path = report(cfg, _OUT["out"])
    except ConfigError as err:
        if verbose_errors(cfg):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except NotWritten as err:
        print("\n".join(err.lines))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:  # as dllab-train: one line, the traceback with verbose=true
        if verbose_errors(cfg):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 or verbose=true for the traceback)", file=sys.stderr)
        sys.exit(1)
    for line in lines:
        print(line)
    print(f"picture: {path}")


def main() -> None:
    """Console entry point of ``dllab-data`` (also ``python -m dllab.data_report``)."""
    argv, _OUT["out"] = split_out(sys.argv[1:])
    if any(arg in ("-m", "--multirun") for arg in argv):
        print("error: dllab-data reports one dataset; run it once per data= option", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv, *HYDRA_OVERRIDES]
    install_help()  # --help lists the config groups in one pass, without conf/_base
    _hydra_main()


if __name__ == "__main__":
    main()
