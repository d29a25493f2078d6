"""dllab.sweeps.compose: a multirun's job configs equal Hydra's own, composed fewer times."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from dllab import compat
from dllab.runs.config import config_dir
from dllab.sweeps.compose import ACTIVE, SweepCompositions, compose_as_hydra, compose_once

JOBS = [
    ["seed=0"],
    ["seed=1"],
    ["data=xor", "seed=1"],
    ["seed=2", "data=xor", "model.hidden_sizes=[3,4]"],
    ["optimizer=adam", "optimizer.lr=0.01", "seed=3"],
    ["optimizer.lr=0.01", "optimizer=adam", "seed=4"],  # a value before its group: Hydra applies it after
    ["+extra=1", "~model.dropout", "seed=5"],
    ["experiment=activations", "model.activation=tanh"],
    ["experiment=activations", "model.activation=sigmoid", "data=xor"],
    ["model=cnn", "data=digits", "model.channels=[4]"],
    ["hydra.job.name=other", "seed=6"],
    ["task_name=named", "data.batch_size=16", "trainer.max_epochs=2"],
]


@pytest.fixture
def loader() -> Iterator[Any]:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def master(loader: Any, *overrides: str) -> Any:
    overrides = ("hydra/launcher=stacked", *overrides)
    return loader.load_configuration("train", overrides=list(overrides), run_mode=RunMode.MULTIRUN)


def as_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(config)


def test_each_job_is_composed_as_hydra_composes_it(loader: Any) -> None:
    sweep = master(loader, "hydra.sweep.dir=/tmp/x")
    hydra_load = compat.hydra_sweep_config_loader()
    compositions = SweepCompositions(hydra_load)
    for overrides in JOBS:
        ours = compositions(loader, sweep, overrides)
        theirs = hydra_load(loader, sweep, overrides)
        assert as_yaml(ours) == as_yaml(theirs), overrides
        assert list(ours.hydra.overrides.task) == [o for o in overrides if not o.startswith("hydra.")]
        assert ours.hydra.job.override_dirname == theirs.hydra.job.override_dirname
        # the job's config resolves as Hydra's does (interpolations of swept values included)
        assert OmegaConf.to_container(ours, resolve=False) == OmegaConf.to_container(theirs, resolve=False)
    # the same jobs again (the launcher after the sweeper's batch check): no composition at all
    composed = compositions.composed
    for overrides in JOBS:
        compositions(loader, sweep, overrides)
    assert compositions.composed == composed
    # one composition per distinct set of group choices, not per job
    groups = {tuple(o for o in job if o.split("=")[0].lstrip("+~") in GROUPS) for job in JOBS}
    assert compositions.composed == len(groups)


GROUPS = {"data", "optimizer", "experiment", "model", "hydra.job.name"}  # group choices and Hydra's own keys


def test_a_handed_out_config_is_a_copy(loader: Any) -> None:
    sweep = master(loader)
    compositions = SweepCompositions(compat.hydra_sweep_config_loader())
    first = compositions(loader, sweep, ["seed=0"])
    first.seed = 99
    first.hydra.job.num = 7
    again = compositions(loader, sweep, ["seed=0"])
    assert again.seed == 0 and OmegaConf.is_missing(again.hydra.job, "num")


def test_a_bad_override_fails_as_it_does_in_hydra(loader: Any) -> None:
    sweep = master(loader)
    compositions = SweepCompositions(compat.hydra_sweep_config_loader())
    compositions(loader, sweep, ["seed=0"])  # the base exists: the bad value is applied to it
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        compositions(loader, sweep, ["no_such_key=1"])
    with pytest.raises(ConfigCompositionException):
        compat.hydra_sweep_config_loader()(loader, sweep, ["no_such_key=1"])


def test_compose_once_replaces_hydras_loader_until_given_back() -> None:
    original = compat.hydra_sweep_config_loader()
    compositions = compose_once()
    try:
        assert compose_once() is compositions
        assert len(ACTIVE) == 1
        assert compat.hydra_sweep_config_loader() is not original
    finally:
        compose_as_hydra()
    assert compat.hydra_sweep_config_loader() is original and not ACTIVE
