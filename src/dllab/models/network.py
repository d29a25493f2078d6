"""The network of a run, from its ``model`` config: any ``torch.nn.Module`` by ``_target_``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from dllab.errors import ConfigError
from dllab.targets import import_class

DEFAULT_NETWORK: dict[str, Any] = {"_target_": "dllab.models.mlp.MLP"}
# What dllab knows of the data and hands to every network whose __init__ takes it by this name.
DATA_SIZES = ("input_size", "output_size", "image_shape")


def build_network(
    config: Mapping[str, Any] | None,
    input_size: int,
    output_size: int,
    image_shape: Sequence[int] | None = None,
) -> nn.Module:
    """Instantiate ``config['_target_']`` with the config's other keys plus the data's sizes
    (``input_size``, ``output_size``, ``image_shape``) that its ``__init__`` names (all of
    them when it takes ``**kwargs``). On data without images, ``image_shape`` goes only to a
    class that names it, as None (a class that names it without a default needs images: a
    ConfigError). A size set in the config, a key the class does not take, or a class that is
    not an ``nn.Module`` is a ConfigError naming the ``model.`` field."""
    options = dict(config or DEFAULT_NETWORK)
    target = options.pop("_target_", None)
    cls = import_class(target, "model._target_", nn.Module, example="dllab.models.mlp.MLP")
    for key in DATA_SIZES:
        if key in options:
            raise ConfigError(f"model.{key}: comes from the data; remove it from the model config")
    parameters = inspect.signature(cls).parameters
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    known: dict[str, Any] = {"input_size": input_size, "output_size": output_size}
    if image_shape is not None or "image_shape" in parameters:  # None only to a class that names it
        known["image_shape"] = image_shape
    sizes = {k: v for k, v in known.items() if any_keyword or k in parameters}
    if image_shape is None and "image_shape" in parameters and "image_shape" not in _optional(parameters):
        raise ConfigError(f"model._target_={target}: needs images, and this data holds none; use model=mlp")
    unknown = [k for k in options if k not in parameters and not any_keyword]
    if unknown:
        takes = [k for k in parameters if k not in DATA_SIZES and k != "self"]
        raise ConfigError(
            f"model.{unknown[0]}: {cls.__name__} does not take it; it takes {', '.join(takes) or 'no options'}"
        )
    try:
        return cls(**options, **sizes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model={cls.__name__}: {err}") from err


def _optional(parameters: Mapping[str, inspect.Parameter]) -> set[str]:
    return {name for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
