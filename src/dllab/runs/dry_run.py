"""A dry run of the user's code before training: one forward and one loss on a few training
samples, right after the data and module are built, so that a network, ``module=`` step,
loss or data source that cannot train fails in one line naming its config key, what came
back and what was expected (exit 2, no run dir), not inside fit with a library's message.

:func:`blame_user_code` does the same for exceptions raised by user code (``__init__``,
``forward``, a data source's ``load``): the class's config key, the error, and the user's
file and line (the innermost frame outside dllab and the libraries it runs on).
"""

from __future__ import annotations

import inspect
import os
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dllab.catalog import CLASSIFICATION
from dllab.errors import ConfigError, DivergedError
from dllab.training.trainer_checks import device_kind

BATCH = 5  # samples of the dry run: few, and seldom a class count (a transposed output shows)
# Frames in these packages are not the user's: an error is placed at the user's line that called them.
LIBRARIES = ("dllab", "torch", "lightning", "torchmetrics", "numpy", "pandas", "sklearn", "PIL", "hydra", "omegaconf")


def dry_run(cfg: DictConfig, datamodule: Any, module: Any) -> None:
    """One forward and one loss (or the ``module=`` subclass's ``step``) on the first training
    samples, on the training device, without gradients, in eval mode (batch norm's running
    statistics untouched), with torch's random state restored: the run then trains exactly
    as without it. Raises a ConfigError naming the field at the first problem."""
    import torch

    from dllab.training.module import TaskModule

    if not any(p.requires_grad for p in module.parameters()):
        raise ConfigError(
            f"{_model_field(cfg)}: has no parameters that require grad; expected at least one "
            "(an nn.Parameter or a layer such as nn.Linear) for the optimizer to step"
        )
    x, y = (t[:BATCH] for t in datamodule.tensors("train"))
    device = training_device(cfg)
    home = next(module.parameters()).device
    modes = [(m, m.training) for m in module.modules()]
    custom_step = type(module).step is not TaskModule.step
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            module.to(device).eval()
            x, y = x.to(device), y.to(device)
            if custom_step:
                try:
                    with blame_user_code(cfg, "module"):
                        returned = module.step(x, y)
                except ConfigError as err:
                    if _reads_its_trainer(err):
                        return  # a step that reads self.trainer runs only in fit: not tried here
                    raise
                loss, output = _step_result(cfg, returned)
                loss_field = f"module={cfg.module}: step's loss"
            else:
                with blame_user_code(cfg, "model._target_"):
                    output = module(x)
                _check_output(cfg, datamodule, output, len(x), f"{_model_field(cfg)}: forward")
                with blame_user_code(cfg, "loss._target_"):
                    loss = module.criterion(output, y)
                loss_field = _loss_field(cfg, module)
            if custom_step:
                _check_output(cfg, datamodule, output, len(x), f"module={cfg.module}: step's output")
            _check_loss(loss, loss_field)
    finally:
        module.to(home)
        for m, training in modes:
            m.training = training


def training_device(cfg: DictConfig) -> Any:
    """The device the Trainer will train on (its first, or this DDP process's, GPU)."""
    import torch

    kind = device_kind(str(cfg.trainer.get("accelerator", "auto")))
    if kind != "cuda":
        return torch.device(kind if kind == "mps" else "cpu")
    devices = cfg.trainer.get("devices", "auto")
    rank = int(os.environ.get("LOCAL_RANK", 0))
    if isinstance(devices, str) and "," in devices:
        devices = [int(d) for d in devices.split(",") if d.strip()]
    if not isinstance(devices, (int, str)):
        return torch.device("cuda", int(list(devices)[rank]))
    return torch.device("cuda", rank)


def _reads_its_trainer(err: ConfigError) -> bool:
    """Lightning's error for ``self.trainer`` of a module that no Trainer holds yet."""
    return isinstance(err.__cause__, RuntimeError) and "is not attached to a `Trainer`" in str(err.__cause__)


def _step_result(cfg: DictConfig, returned: Any) -> tuple[Any, Any]:
    import torch

    expected = "expected (loss, output): the batch's mean loss as a scalar tensor and the output tensor"
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        what = _describe(returned)
        if isinstance(returned, (tuple, list)):
            what = f"a {type(returned).__name__} of {len(returned)}"
        raise ConfigError(f"module={cfg.module}: step returned {what}; {expected}")
    loss, output = returned
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(f"module={cfg.module}: step returned ({_describe(loss)}, ...) as its loss; {expected}")
    return loss, output


def _check_output(cfg: DictConfig, datamodule: Any, output: Any, samples: int, field: str) -> None:
    import torch

    width = int(datamodule.output_size)
    if datamodule.task == CLASSIFICATION:
        per = f"{width} class{'es' if width != 1 else ''}"
    else:
        per = f"{width} target{'s' if width != 1 else ''}"
    expected = f"expected one tensor of shape [{samples}, {width}] ({samples} samples x {per} of data={cfg.data.name})"
    if not isinstance(output, torch.Tensor):
        raise ConfigError(f"{field} returned {_describe(output)}; {expected}")
    if tuple(output.shape) != (samples, width):
        raise ConfigError(f"{field} returned shape {list(output.shape)}; {expected}")
    if output.is_floating_point() and not bool(torch.isfinite(output).all()):
        raise ConfigError(f"{field} returned NaN or inf on the first training samples; expected finite values")


def _check_loss(loss: Any, field: str) -> None:
    import torch

    if loss.dim() != 0:
        raise ConfigError(
            f"{field} returned shape {list(loss.shape)}; expected a scalar tensor (the batch's mean, reduction='mean')"
        )
    if not bool(torch.isfinite(loss)):
        raise ConfigError(f"{field} is {loss.item()} on the first training samples; expected a finite number")


def _describe(value: Any) -> str:
    import torch

    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__} ({value!r:.40})"


def _model_field(cfg: DictConfig) -> str:
    return f"model._target_={cfg.model.get('_target_')}"


def _loss_field(cfg: DictConfig, module: Any) -> str:
    target = cfg.loss.get("_target_")
    if target is None:
        target = f"{type(module.criterion).__module__}.{type(module.criterion).__qualname__}"
    return f"loss._target_={target}: the loss"


@contextmanager
def blame_user_code(cfg: DictConfig, default: str) -> Iterator[None]:
    """An exception raised in user code becomes a ConfigError naming the config key of the
    class whose file raised it (``default`` when the file is none of them), the error and the
    user's file and line. Errors of dllab or a library alone (no user frame) pass unchanged."""
    try:
        yield
    except (ConfigError, DivergedError):
        raise
    except Exception as err:
        frame = user_frame(err)
        if frame is None:
            raise
        key = _owner(cfg, frame.filename) or default
        value = cfg.get("module") if key == "module" else _select(cfg, key)
        message = " ".join(str(err).split())
        message = message if len(message) <= 300 else message[:297] + "..."
        raise ConfigError(
            f"{key}={value}: {type(err).__name__}: {message} (in {frame.name}, {frame.filename}:{frame.lineno})"
        ) from err


def user_frame(err: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``err``'s traceback in the user's own code, if any."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not _library_file(f.filename)]
    return frames[-1] if frames else None


def _library_file(filename: str) -> bool:
    path = Path(filename)
    if filename.startswith("<"):
        return True  # generated code (dataclasses, Hydra's instantiate)
    for name in LIBRARIES:
        package = sys.modules.get(name)
        package_file = getattr(package, "__file__", None)
        if package_file and Path(package_file).parent in path.parents:
            return True
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return stdlib in path.parents and "site-packages" not in path.parts


def _owner(cfg: DictConfig, filename: str) -> str | None:
    """The config key whose class is defined in ``filename``: model, module, loss or data."""
    from dllab.targets import import_class

    for key in ("model._target_", "module", "loss._target_", "data._target_"):
        path = cfg.get("module") if key == "module" else _select(cfg, key)
        if not path:
            continue
        try:
            source = inspect.getsourcefile(import_class(str(path), key))
        except (ConfigError, TypeError):
            continue
        if source and Path(source).resolve() == Path(filename).resolve():
            return key
    return None


def _select(cfg: DictConfig, key: str) -> Any:
    group, name = key.split(".", 1)
    node = cfg.get(group)
    return node.get(name) if node is not None else None
