"""Classes named by config values (``_target_``, ``module``), imported with one-line errors.

Not ``hydra.utils.get_class``: it logs a multi-line error of its own. Torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from dllab.errors import ConfigError


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
