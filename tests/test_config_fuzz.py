"""Seeded fuzzing of the config checks: a few hundred overrides over every key of every config
group, valid values and broken ones (wrong type, negative, zero, huge, unknown name, a list where
a number goes, ...), checked at the level of :func:`dllab.checks.check_config` (nothing trains).

The contract: check_config passes, or raises one ConfigError line that starts with the field it
is about, a field the override set (or one of the group it chose). What it passes must then
build: the optimizer and scheduler step once on a tiny network, Lightning's Trainer and the
callbacks construct, and the config resolves, so that passing means something.

Each group option is composed by Hydra once; the key overrides are applied to a copy of it by
Hydra's own override parser and applier (what ``compose`` does with them), which keeps the few
hundred cases cheap.
"""

from __future__ import annotations

import copy
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dllab.checks import TOP_LEVEL_KEYS, check_config, check_targets
from dllab.errors import ConfigError
from dllab.pictures.callbacks import build_plot_callbacks
from dllab.runs.config import config_dir, instantiate_enabled, plain, split_trainer_config
from dllab.training.optim import build_optimizer, build_scheduler

CONF = Path(config_dir())
GROUPS = tuple(key for key in TOP_LEVEL_KEYS if (CONF / key).is_dir())  # the config groups of train.yaml
PRESETS = ("experiment", "hparams_search", "debug")  # whole-config presets: their keys are fuzzed, too
CASES = 300
DEEP = 80  # accepted configs that are built, too (about half of them)
# Broken values of every kind, in Hydra's override syntax.
BROKEN = (
    "abc",
    "-1",
    "0",
    "-7",
    "99999999999999",
    "1e12",
    "-0.5",
    "0.5",
    "2",
    "[1,2]",
    "[]",
    "{a:1}",
    "null",
    "true",
    "false",
    "''",
    "nope",
    "nope.Nope",
    "val/foo",
)
PARSER = OverridesParser.create()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@cache
def composed(context: tuple[str, ...]) -> DictConfig:
    """The config of these group choices, as compose_train makes it (the run dir set later)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=list(context))
    with open_dict(cfg):
        cfg.paths.output_dir = "run"
        cfg.paths.log_dir = "."
    return cfg


def leaves(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """(dotted key, value as written, interpolations unresolved) of every leaf under ``node``."""
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in leaves(v, f"{prefix}.{k}" if prefix else str(k))]
    return [(prefix, node)]


def rendered(value: Any) -> str:
    """A value as a command-line override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(rendered(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{rendered(v)}" for k, v in value.items()) + "}"
    return repr(value)


def valid_like(value: Any) -> list[str]:
    """The value itself and nearby values of its kind."""
    if isinstance(value, bool):
        return ["true", "false"]
    if isinstance(value, int):
        return [str(value), str(value + 1), str(max(1, 2 * value))]
    if isinstance(value, float):
        return [repr(value), repr(value / 2), repr(min(value * 2, 1.0))]
    return [rendered(value)]


def schema() -> list[tuple[tuple[str, ...], str, Any]]:
    """(context overrides, key, value) for every key of every option of every group, the top-level
    keys, and the keys each preset (experiment, hparams_search, debug) changes."""
    base = OmegaConf.to_container(composed(()), resolve=False)
    assert isinstance(base, dict)
    entries: list[tuple[tuple[str, ...], str, Any]] = [((), k, v) for k, v in base.items() if k not in GROUPS]
    for group in GROUPS:
        for option in options(group):
            context = (f"{group}={option}",)
            tree = OmegaConf.to_container(composed(context), resolve=False)
            assert isinstance(tree, dict)
            entries += [(context, k, v) for k, v in leaves(tree.get(group), group)]
    unchanged = set(map(repr, leaves(base, "")))
    for group in PRESETS:
        for option in options(group):
            context = (f"{group}={option}",)
            tree = OmegaConf.to_container(composed(context), resolve=False)
            entries += [(context, k, v) for k, v in leaves(tree, "") if repr((k, v)) not in unchanged]
    return [(c, k, v) for c, k, v in entries if k]


def generate(rng: random.Random) -> list[list[str]]:
    """CASES override lists: a key of a group option (or a preset) set to a valid or broken value,
    a key unknown to its group or the top level, or a key deleted."""
    by_part: dict[str, list[tuple[tuple[str, ...], str, Any]]] = {}
    for context, key, value in schema():  # drawn part by part, so that small groups (paths) get their turn
        part = context[0].partition("=")[0] if context else "top level"
        by_part.setdefault(part, []).append((context, key, value))
    cases = []
    for _ in range(CASES):
        context, key, value = rng.choice(by_part[rng.choice(sorted(by_part))])
        roll = rng.random()
        if roll < 0.08:  # a key its group (or the top level) does not have
            parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
            override = f"+{parent}nope_key={rng.choice(BROKEN)}"
        elif roll < 0.12:
            override = f"~{key}"
        elif roll < 0.45:
            override = f"{key}={rng.choice(valid_like(value))}"
        else:
            override = f"{key}={rng.choice(BROKEN)}"
        cases.append([*context, override])
    return cases


def configured(overrides: list[str], run_dir: Path) -> DictConfig | None:
    """The config ``dllab-train`` would compose from ``overrides``, writing into ``run_dir``; None
    where Hydra refuses them (an unknown key without +, say: Hydra's own error, see test_bad_input)."""
    *groups, key_override = overrides
    cfg = copy.deepcopy(composed(tuple(groups)))
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(run_dir), str(run_dir.parent)
    try:
        ConfigLoaderImpl._apply_overrides_to_config(PARSER.parse_overrides([key_override]), cfg)
    except (HydraException, OmegaConfBaseException):
        return None
    return cfg


FIELD = re.compile(r"^[\w.\[\]]+")


def about(message: str, overrides: list[str]) -> bool:
    """Whether an error's first field is one an override set, or of a group an override chose."""
    match = FIELD.match(message)
    if match is None:
        return False
    field = match.group().split("[")[0]
    keys = [o.lstrip("+~").partition("=")[0] for o in overrides]
    related = {k.split(".")[0] for k in keys}
    related |= {k for k in keys if "/" not in k}
    return any(field == k or field.startswith(k + ".") or k.startswith(field + ".") for k in keys) or (
        field.split(".")[0] in related
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[str], DictConfig | None, str | None]]:
    """(overrides, the config or None if Hydra refused it, check_config's error or None)."""
    run_dir = tmp_path_factory.mktemp("fuzz") / "logs" / "run"
    results = []
    for overrides in generate(random.Random(0)):
        cfg = configured(overrides, run_dir)
        error = None
        if cfg is not None:
            try:
                check_config(cfg)
            except ConfigError as err:
                error = str(err)
            except Exception as err:  # a check that crashed: reported as not one clear line
                error = f"{type(err).__name__} (not a ConfigError):\n{err}"
        results.append((overrides, cfg, error))
    return results


def test_every_refusal_is_one_line_about_the_override(outcomes: list) -> None:
    bad = [(o, e) for o, _, e in outcomes if e is not None and ("\n" in e or not about(e, o))]
    assert not bad, "\n".join(f"{' '.join(o)} -> {e}" for o, e in bad)


def test_the_fuzz_covers_both_outcomes_and_every_group(outcomes: list) -> None:
    refused = [e for _, cfg, e in outcomes if e is not None]
    accepted = [cfg for _, cfg, e in outcomes if cfg is not None and e is None]
    assert len(refused) > CASES // 4 and len(accepted) > CASES // 10
    touched = {o[-1].lstrip("+~").split(".")[0].partition("=")[0] for o, _, _ in outcomes}
    assert set(GROUPS) <= touched


def built(cfg: DictConfig) -> None:
    """What dllab-train builds from the config before it loads data: the optimizer and scheduler
    (stepped once on a tiny network), the Trainer, the callbacks and pictures; and the whole
    config resolved, as it is saved."""
    OmegaConf.to_container(cfg, resolve=True)
    net = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(plain(cfg.optimizer), net.parameters())
    scheduler = build_scheduler(plain(cfg.scheduler), optimizer)
    net(torch.ones(4, 3)).square().mean().backward()
    optimizer.step()
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(1.0)
    elif scheduler is not None:
        scheduler.step()
    assert all(torch.isfinite(p).all() for p in net.parameters())
    trainer_kwargs, _, _ = split_trainer_config(cfg.trainer)
    instantiate(trainer_kwargs, logger=False, enable_checkpointing=False)
    instantiate_enabled(cfg.get("callbacks"))
    instantiate_enabled(cfg.get("logger"))
    if cfg.get("plots"):
        build_plot_callbacks(**plain(cfg.plots))


def test_what_the_checks_pass_builds(outcomes: list) -> None:
    """A sample of the accepted configs builds. check_targets (the classes named by _target_,
    which check_config cannot import) may still refuse one, in one line about the override."""
    accepted = [(o, cfg) for o, cfg, e in outcomes if cfg is not None and e is None]
    sample = random.Random(1).sample(accepted, min(DEEP, len(accepted)))
    failures = []
    for overrides, cfg in sample:
        try:
            check_targets(cfg)
        except ConfigError as err:
            if "\n" in str(err) or not about(str(err), overrides):
                failures.append(f"{' '.join(overrides)} -> check_targets: {err}")
            continue
        try:
            built(cfg)
        except Exception as err:  # anything: the checks let it through
            failures.append(f"{' '.join(overrides)} -> {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)
