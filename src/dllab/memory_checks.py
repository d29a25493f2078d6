"""Sizes that cannot fit the machine's memory, refused before anything is loaded or built:
the machine's memory (psutil where installed, else the OS's page counts) and the one-line
error naming the field, the estimate and what there is. Torch-free."""

from __future__ import annotations

import os
from typing import Any

from dllab.errors import ConfigError


def machine_memory() -> int | None:
    """This machine's physical memory in bytes; None where it cannot be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def size_text(count: float) -> str:
    """A byte count as people read it: 160 GB, 3.2 MB."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.3g} {unit}"
        count /= 1000
    raise AssertionError("not reached")


def check_fits_memory(field: str, value: Any, needed: int, how: str, fix: str) -> None:
    """ConfigError ``field=value: how = needed, more than this machine's memory; fix`` when
    ``needed`` bytes exceed the machine's memory (an estimate that is a lower bound, so that
    what fits is never refused)."""
    total = machine_memory()
    if total is not None and needed > total:
        raise ConfigError(
            f"{field}={value}: needs at least {how} = {size_text(needed)}, more than this machine's "
            f"{size_text(total)} of memory; {fix}"
        )
