"""Reading checkpoints safely: ``weights_only=True`` always, and a clear error naming the
file when one is missing, truncated, holds pickled objects, is not a dllab checkpoint, or
was trained on data of other sizes than those it is about to meet.

Writing is Lightning's: ``TorchCheckpointIO`` saves through an fsspec transaction (a
temporary file moved into place), so a kill during a save never leaves half a
``last.ckpt``.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dllab.errors import ConfigError

# torch names the global it refused in its message; the fallback when it cannot list them itself
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


def read_checkpoint(path: str | Path, field: str = "ckpt_path", map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint's contents; ConfigError naming ``field`` and the file on any problem."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{field}={path}: a directory; give a checkpoint file (<run dir>/checkpoints/best.ckpt)")
    if not path.is_file():
        raise ConfigError(f"{field}={path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols before it refuses them
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, corrupt, not written by torch.save, or pickled objects
        names = pickled_globals(path, err)
        if names:
            raise ConfigError(
                f"{field}={path}: not a plain checkpoint (it holds a pickled {', '.join(names)}, which dllab does "
                "not execute); give a checkpoint written by dllab-train (weights and plain values only)"
            ) from err
        raise ConfigError(
            f"{field}={path}: cannot read the checkpoint, truncated or not written by torch.save ({_first_line(err)})"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "dllab_task" not in checkpoint:
        raise ConfigError(f"{field}={path}: not a dllab checkpoint (no state_dict or task)")
    return checkpoint


def pickled_globals(path: Path, err: BaseException) -> list[str]:
    """The classes and functions that ``torch.load(weights_only=True)`` refused to import for
    the checkpoint: torch lists them without running any (zip checkpoints), else its error
    names the first; empty when the file failed for another reason."""
    import torch

    if not isinstance(err, pickle.UnpicklingError):
        return []
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # an old-format (non-zip) file: torch cannot list them
        names = []
    return names or _REFUSED_GLOBAL.findall(str(err))


def _first_line(err: BaseException) -> str:
    """The exception on one line, without torch's own advice around a refused pickle."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return one_line(type(err).__name__, text.split(". ")[0], limit=160)


def one_line(name: str, text: str, limit: int = 120) -> str:
    """``name: text`` on one line: the first line of ``text``, whitespace collapsed, at most
    ``limit`` characters (``name`` alone when ``text`` is empty)."""
    text = " ".join((text.strip().splitlines() or [""])[0].split())
    return f"{name}: {text}"[:limit] if text else name


def error_line(err: BaseException, limit: int = 120) -> str:
    """``Type: message`` of an exception on one line (see :func:`one_line`)."""
    return one_line(type(err).__name__, str(err), limit)


def check_checkpoint_fits(
    path: str | Path, checkpoint: dict[str, Any], datamodule: Any, field: str = "ckpt_path", data: str | None = None
) -> None:
    """ConfigError when the checkpoint was trained on data of another task or other sizes
    (inputs, outputs, image shape) than ``datamodule``'s (set up), so that loading it fails
    with one line naming both, not with a shape error from deep inside torch. ``data``: how
    to name the data in the message (default ``data=<its name>``)."""
    saved = checkpoint.get("hyper_parameters") or {}
    mine = {
        "task": checkpoint.get("dllab_task"),
        "input_size": saved.get("input_size"),
        "output_size": saved.get("output_size"),
        "image_shape": _shape(saved.get("image_shape")),
    }
    # only what the checkpoint recorded is compared (one of an older dllab may lack a key)
    recorded = ["task", *(k for k in ("input_size", "output_size", "image_shape") if k in saved)]
    theirs = {
        "task": datamodule.task,
        "input_size": datamodule.input_size,
        "output_size": datamodule.output_size,
        "image_shape": _shape(datamodule.image_shape),
    }
    if all(mine[k] == theirs[k] for k in recorded):
        return
    name = data or f"data={datamodule.data_name}"
    raise ConfigError(
        f"{field}={path}: trained with {_sizes(mine)}, but {name} has {_sizes(theirs)}; "
        "a checkpoint fits only data of the task and sizes it was trained with"
    )


def check_checkpoint_network(
    path: str | Path, checkpoint: dict[str, Any], module: Any, field: str = "ckpt_path"
) -> None:
    """ConfigError when the checkpoint's network is not the one the model config builds (other
    layer sizes, other layers), naming the first differing weight and both shapes, instead of
    Lightning's list of every mismatch from inside fit."""
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    built = {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith("net.")}
    net = (checkpoint.get("hyper_parameters") or {}).get("net") or {}
    trained = f"trained with model._target_={net.get('_target_')}" if net.get("_target_") else "its network"
    fix = "give the model config it was trained with (its run's config.yaml), or a checkpoint of this network"
    for key, shape in saved.items():
        if key not in built:
            raise ConfigError(f"{field}={path}: holds {key} {list(shape)}, which the model config has not; {fix}")
        if built[key] != shape:
            raise ConfigError(
                f"{field}={path}: {key} is {list(shape)} in the checkpoint ({trained}) but {list(built[key])} "
                f"in the model config; {fix}"
            )
    missing = [k for k in built if k not in saved]
    if missing:
        raise ConfigError(f"{field}={path}: holds no {missing[0]} {list(built[missing[0]])} of the model config; {fix}")


def _shape(shape: Sequence[int] | None) -> tuple[int, ...] | None:
    return tuple(int(s) for s in shape) if shape else None


def _sizes(fields: dict[str, Any]) -> str:
    images = f" ({'x'.join(map(str, fields['image_shape']))} images)" if fields["image_shape"] else ""
    return f"{fields['input_size']} inputs{images} and {fields['output_size']} outputs ({fields['task']})"


def checkpoint_field(cfg: Any) -> str:
    """How dllab-train's errors name its checkpoint: ``resume`` continues a run, else ``ckpt_path``."""
    return "resume" if cfg.get("resume") else "ckpt_path"
