"""User-facing errors: one clear line naming the field, the value and the valid choices."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad setting or bad data, reported as one line before (or instead of) training."""


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""
