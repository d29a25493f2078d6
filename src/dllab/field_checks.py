"""The pieces every config check is built of, torch-free: the one-line error of a bad field,
value rules (integers, numbers, choices, booleans, texts) and reading a field by its dotted
path. The checks beside each component (``*_checks.py``) and :mod:`dllab.checks` use them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeGuard

from omegaconf import DictConfig, ListConfig

from dllab.errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]  # (is the value allowed, what is allowed)

# The key dllab reads itself on each entry of the callbacks and logger groups (and drops
# before the class is built, dllab.runs.config.instantiate_enabled).
ENTRY_OWN_KEYS = ("enabled",)


def fail(field: str, value: Any, allowed: str) -> ConfigError:
    """The error of a bad setting: ``field=value: allowed``."""
    return ConfigError(f"{field}={value!r}: {allowed}")


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_list(value: Any) -> bool:
    return isinstance(value, (list, ListConfig))


def get(cfg: DictConfig, field: str) -> Any:
    """The value at a dotted path; None where a part is missing (a deleted key reads as unset)."""
    node: Any = cfg
    for part in field.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


def integer(low: int, high: int | None = None, null: bool = False, what: str = "") -> Rule:
    """Integers in [low, high]; ``what`` says what the number means."""
    span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    allowed = f"must be {'null or ' if null else ''}{span}{f' ({what})' if what else ''}"
    return (lambda v: (null and v is None) or (is_int(v) and low <= v and (high is None or v <= high))), allowed


def real(ok: Callable[[float], bool], allowed: str, null: bool = False) -> Rule:
    return (lambda v: (null and v is None) or (is_number(v) and ok(v))), allowed


def one_of(*choices: Any, null: bool = False) -> Rule:
    shown = ", ".join(str(c) for c in choices)
    return (lambda v: (null and v is None) or (isinstance(v, (str, bool)) and v in choices)), (
        f"unknown; choose one of {shown}{', or null' if null else ''}"
    )


BOOL: Rule = (lambda v: isinstance(v, bool), "must be true or false")
BOOL_OR_NULL: Rule = (lambda v: v is None or isinstance(v, bool), "must be true, false or null")
TEXT: Rule = (lambda v: isinstance(v, str) and bool(v), "must be a non-empty text")
TEXT_OR_NULL: Rule = (lambda v: v is None or (isinstance(v, str) and bool(v)), "must be null or a non-empty text")
NON_NEGATIVE: Rule = real(lambda v: v >= 0, "must be a number >= 0")


def apply(field: str, value: Any, rule: Rule) -> None:
    ok, allowed = rule
    if not ok(value):
        raise fail(field, value, allowed)


def check_int(cfg: DictConfig, field: str, low: int, allowed: str | None = None) -> None:
    value = get(cfg, field)
    if not is_int(value) or value < low:
        raise fail(field, value, allowed or f"must be an integer >= {low}")


def check_number(cfg: DictConfig, field: str, ok: Callable[[float], bool], allowed: str) -> None:
    value = get(cfg, field)
    if not is_number(value) or not ok(value):
        raise fail(field, value, allowed)


def check_choice(cfg: DictConfig, field: str, choices: Iterable[str]) -> None:
    value = get(cfg, field)
    choices = tuple(choices)
    if value not in choices:
        raise fail(field, value, f"unknown; choose one of {', '.join(choices)}")


def unknown_keys(group: str, node: DictConfig, keys: Sequence[str], owner: str) -> None:
    """Refuse the first key of ``node`` that is not in ``keys`` (nor ``_target_``): for the
    groups dllab reads itself (paths, tuner, augmentation); a class's keys are bound to its
    signature (:func:`dllab.targets.check_keys`)."""
    unknown = [k for k in node if k not in (*keys, "_target_")]
    if unknown:
        listed = ", ".join(keys) if keys else "none"
        raise fail(f"{group}.{unknown[0]!s}", node.get(unknown[0]), f"unknown key of {owner}; its keys: {listed}")


def entries(cfg: DictConfig, group: str, kind: str) -> Iterator[tuple[str, DictConfig, str]]:
    """(field, node, target) of each entry of a group of classes by name (callbacks, logger):
    a mapping with a ``_target_`` or null (skipped), ``enabled`` true or false."""
    for name in cfg.get(group) or {}:
        node = cfg[group].get(name)
        if node is None:
            continue
        field = f"{group}.{name!s}"
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if not isinstance(target, str) or "." not in target:
            raise fail(field, node, f"must be {kind}: a mapping with a _target_ (its class), or null")
        for key in ENTRY_OWN_KEYS:
            if key in node:
                apply(f"{field}.{key}", node.get(key), BOOL)
        yield field, node, target


def short(target: str) -> str:
    return target.rsplit(".", 1)[-1]


SEED_MAX = 2**32 - 1  # Lightning's seed_everything and numpy take seeds in [0, 2**32 - 1]


def check_seed(field: str, value: Any) -> None:
    if not is_int(value) or not 0 <= value <= SEED_MAX:
        raise fail(field, value, f"must be a non-negative integer up to {SEED_MAX} (2**32 - 1, the seed range)")
