"""Classes named by config values (``_target_``, ``module``), imported with one-line errors,
and a config node's keys bound to its class's signature (:func:`check_keys`).

Not ``hydra.utils.get_class``: it logs a multi-line error of its own. Torch-free.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from dllab.errors import ConfigError
from dllab.field_checks import fail


def import_class(path: Any, field: str, base: type | None = None, example: str = "my_pkg.MyClass") -> type:
    """The class ``path`` (``module.Class``) names; a ConfigError naming ``field`` when it is not
    a class path, cannot be imported, or is not a subclass of ``base``."""
    if not isinstance(path, str) or "." not in path:
        kind = f"a {base.__name__} class" if base is not None else "a class"
        raise ConfigError(f"{field}={path!r}: must name {kind}: module.Class, e.g. {example}")
    module, _, attribute = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{field}={path}: cannot import {path} ({err})") from err
    if base is not None and not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(f"{field}={path}: not a subclass of {base.__module__}.{base.__qualname__}")
    if not isinstance(found, type):
        raise ConfigError(f"{field}={path}: not a class")
    return found


def class_keys(cls: type, forwards: tuple[type, Iterable[str]] | None = None) -> tuple[list[str], list[str], bool]:
    """(the keyword names ``cls`` takes, those without a default, whether it takes any key).

    A class taking ``*args`` and ``**kwargs`` hands them on to its base class, whose names it
    takes too; one taking ``**kwargs`` alone checks its keys itself (it takes any key), unless
    ``forwards`` names the class it hands them to and the keys it sets there itself
    (Lightning's TensorBoardLogger: torch's SummaryWriter, less ``log_dir``)."""
    parameters = inspect.signature(cls).parameters
    kinds = {p.kind for p in parameters.values()}
    named = [k for k, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [k for k in named if parameters[k].default is inspect.Parameter.empty]
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        return named, required, False
    base = next((b for b in cls.__mro__[1:] if "__init__" in vars(b)), object)
    if inspect.Parameter.VAR_POSITIONAL not in kinds or base is object:
        if forwards is None:
            return named, required, True
        target, set_by_cls = forwards
        target_named, _, anything = class_keys(target)
        skip = {*named, *set_by_cls, "self"}
        return [*named, *(k for k in target_named if k not in skip)], required, anything
    base_named, base_required, anything = class_keys(base, forwards)
    return [*named, *(k for k in base_named if k not in named)], [*required, *base_required], anything


def check_keys(
    field: str,
    node: Mapping[str, Any],
    cls: type,
    passed: Iterable[str] = (),
    own: Iterable[str] = (),
    owner: str | None = None,
    forwards: tuple[type, Iterable[str]] | None = None,
) -> None:
    """Bind the keys of the config ``node`` at ``field`` to ``cls``'s signature: the first key it
    does not take, or a key it needs and the config lacks, is a ConfigError naming the field and
    listing the class's keys. ``passed``: the parameters dllab passes itself (``params``, the
    data's sizes), neither taken from the config nor listed; ``own``: keys dllab reads itself
    (``fused``, ``monitor``, ``enabled``), taken and listed after the class's; ``forwards``: see
    :func:`class_keys`. Hydra's keys (``_target_``, ``_partial_``, ...) are always taken."""
    passed = tuple(passed)
    named, required, anything = class_keys(cls, forwards)
    takes = [k for k in named if k not in passed and k != "self"]
    own = tuple(k for k in own if k not in takes)
    name = owner or cls.__name__
    if not anything:
        for key in node:
            if key not in (*takes, *own) and not (str(key).startswith("_") and str(key).endswith("_")):
                listed = ", ".join([*takes, *own]) or "none"
                raise fail(f"{field}.{key!s}", node.get(key), f"unknown key of {name}; its keys: {listed}")
    for key in required:
        if key not in passed and node.get(key) is None:
            raise ConfigError(f"{field}.{key}: required by {name}; set {field}.{key}=...")
