"""The logger group, torch-free: each entry a class by ``_target_``, and for the loggers dllab
ships, the values of their keys. Their key names are bound to the classes' signatures once torch
is imported."""

from __future__ import annotations

from omegaconf import DictConfig

from dllab.field_checks import (
    BOOL,
    NON_NEGATIVE,
    TEXT,
    TEXT_OR_NULL,
    Rule,
    apply,
    entries,
    fail,
    integer,
    is_int,
)

# The loggers conf/logger ships, whose values these rules describe.
LOGGERS = ("dllab.training.loggers.TensorBoardLogger", "lightning.pytorch.loggers.CSVLogger")
LOGGER_RULES: dict[str, Rule] = {
    "save_dir": TEXT,
    "name": (lambda v: v is None or isinstance(v, str), "must be a text or null"),
    "version": (
        lambda v: v is None or isinstance(v, str) or (is_int(v) and v >= 0),
        "must be null (the next free number), a number >= 0 or a text",
    ),
    "prefix": (lambda v: isinstance(v, str), "must be a text"),
    "sub_dir": TEXT_OR_NULL,
    "log_graph": BOOL,
    "default_hp_metric": BOOL,
    "flush_seconds": NON_NEGATIVE,
    "flush_logs_every_n_steps": integer(1),
}


def check_loggers(cfg: DictConfig) -> None:
    """Each entry of the logger group: a class with a ``_target_`` (or null); for the loggers
    dllab ships, valid values. No logger at all (``logger=[]``, ``~logger``) is fine."""
    loggers = cfg.get("logger")
    if loggers is None:
        return
    if not isinstance(loggers, DictConfig):
        raise fail("logger", loggers, "must be a mapping of loggers (logger=tensorboard, csv, many or [])")
    for field, node, target in entries(cfg, "logger", "a logger"):
        if target not in LOGGERS:
            continue
        for key in node:
            if key in LOGGER_RULES:
                apply(f"{field}.{key!s}", node.get(key), LOGGER_RULES[str(key)])
