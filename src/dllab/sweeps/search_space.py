"""The search-space syntax of ``hydra.sweeper.params`` (and of sweep overrides on the
command line), as Optuna distributions:

| YAML / override | Optuna |
| --- | --- |
| ``interval(0.1, 0.9)`` | ``FloatDistribution(0.1, 0.9)`` |
| ``tag(log, interval(1e-4, 1e-1))`` | ``FloatDistribution(1e-4, 1e-1, log=True)`` |
| ``int(interval(8, 64))``, ``interval(8, 64)`` | ``IntDistribution(8, 64)`` (``tag(log, ...)``: log) |
| ``range(1, 9, 2)`` | ``IntDistribution(1, 9, step=2)`` (floats: ``FloatDistribution``) |
| ``choice(relu, tanh)``, ``relu,tanh`` | ``CategoricalDistribution`` (lists allowed: ``choice([64],[64,64])``) |

A plain value (``optimizer=adam``) is fixed: every trial gets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer

from dllab.errors import ConfigError

SYNTAX = "interval(a, b), tag(log, interval(a, b)), int(interval(a, b)), range(a, b, step), choice(x, y, ...)"


def parse(overrides: Sequence[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(list(overrides))


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override."""
    import optuna.distributions as d

    key = override.get_key_element()
    value = override.value()
    if override.is_choice_sweep():
        assert isinstance(value, ChoiceSweep)
        choices = list(override.sweep_string_iterator())
        if not choices:
            raise ConfigError(f"hydra.sweeper.params.{key}: choice() has no options; give at least one")
        return d.CategoricalDistribution([_plain(c) for c in choices])
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep) and value.start is not None and value.stop is not None
        step = value.step if value.step is not None else 1
        if any(isinstance(v, float) for v in (value.start, value.stop, step)):
            return d.FloatDistribution(float(value.start), float(value.stop), step=float(step))
        # range(a, b) excludes b, as Python's and Hydra's basic sweeper's do
        return d.IntDistribution(int(value.start), int(value.stop) - int(step), step=int(step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        low, high, log = value.start, value.end, "log" in value.tags
        if low is None or high is None or not low < high:
            raise ConfigError(f"hydra.sweeper.params.{key}: interval({low}, {high}) needs low < high")
        if log and low <= 0:
            raise ConfigError(f"hydra.sweeper.params.{key}: a log interval needs low > 0, got {low}")
        if isinstance(low, int) and isinstance(high, int):
            return d.IntDistribution(low, high, log=log)
        return d.FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(f"hydra.sweeper.params.{key}: {override.get_value_string()} is not a search space; use {SYNTAX}")


def _plain(choice: str) -> str | int | float | bool:
    """Choices keep their override spelling (``[64,64]``, ``relu``); numbers stay numbers."""
    for kind in (int, float):
        try:
            return kind(choice)
        except ValueError:
            pass
    return choice


def override_value(value: Any) -> str:
    """A sampled value as it goes back into an override (``0.001``, ``relu``, ``[64,64]``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(Transformer.encode(value)) if not isinstance(value, str) else value


def search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Distributions by key and fixed overrides, from the config's ``params`` and the
    command line's overrides (a command-line override replaces the config's for its key)."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    by_key: dict[str, Override] = {}
    order: list[str] = []
    for override in parse([*lines, *arguments]):
        key = override.get_key_element()
        if key not in by_key:
            order.append(key)
        by_key[key] = override
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for key in order:
        override = by_key[key]
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    if not space:
        raise ConfigError(
            "hydra.sweeper.params: the search space is empty; give at least one key with a search space "
            f"({SYNTAX}), e.g. hydra.sweeper.params.optimizer.lr='tag(log, interval(1e-4, 1e-1))' "
            "or an override like model.activation=relu,tanh"
        )
    return space, fixed
