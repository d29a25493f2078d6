"""Reading checkpoints safely: ``weights_only=True`` always, and a clear error naming the
file when one is missing, truncated or not a dllab checkpoint.

Writing is Lightning's: ``TorchCheckpointIO`` saves through an fsspec transaction (a
temporary file moved into place), so a kill during a save never leaves half a
``last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dllab.errors import ConfigError


def read_checkpoint(path: str | Path, field: str = "ckpt_path", map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint's contents; ConfigError naming ``field`` and the file on any problem."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{field}={path}: no such file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, corrupt, or pickled objects beyond primitives
        raise ConfigError(f"{field}={path}: cannot read the checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "dllab_task" not in checkpoint:
        raise ConfigError(f"{field}={path}: not a dllab checkpoint (no state_dict or task)")
    return checkpoint
