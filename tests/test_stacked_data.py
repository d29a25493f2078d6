"""A stack of jobs with one data config holds one copy of the data, and trains each model
exactly as a stack of separately built copies does (and so as its solo run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dllab.data.datamodule as datamodule_module
from dllab.stacked.group import StackedGroup, build_job, shared_datamodule
from tests.conftest import compose_train

JOB = ["data=digits", "data.seed=0", "trainer.max_epochs=3", "model.hidden_sizes=[16]", "model.dropout=0.1"]
SEEDS = [["seed=1", "optimizer.lr=0.01"], ["seed=2", "optimizer.lr=0.02"], ["seed=3", "optimizer.lr=0.005"]]


def configs(tmp_path: Path, name: str) -> list:
    return [compose_train([*JOB, *m], tmp_path / f"{name}{i}") for i, m in enumerate(SEEDS)]


def test_jobs_of_one_data_config_share_one_datamodule_and_train_as_if_apart(tmp_path: Path) -> None:
    shared: dict = {}
    together = [build_job(cfg, shared) for cfg in configs(tmp_path, "shared")]
    apart = [build_job(cfg) for cfg in configs(tmp_path, "apart")]
    assert len(shared) == 1 and len({id(job.datamodule) for job in together}) == 1
    assert len({id(job.datamodule) for job in apart}) == 3
    for mine, theirs in zip(together, apart, strict=True):  # the same weights and dropout stream as built alone
        other = theirs.module.net.state_dict()
        for key, value in mine.module.net.state_dict().items():
            assert torch.equal(value, other[key]), key
        assert torch.equal(mine.generator.get_state(), theirs.generator.get_state())
    one, three = StackedGroup(together), StackedGroup(apart)
    x, _ = one.train
    assert x.stride(0) == 0 and x.untyped_storage().nbytes() * 3 == three.train[0].untyped_storage().nbytes()
    for mine, theirs in zip(one.fit(), three.fit(), strict=True):
        # bit for bit here; 1e-6 holds on every CPU (BLAS may round a shared, strided split otherwise)
        for values, other in zip(mine.history, theirs.history, strict=True):
            assert values == pytest.approx(other, rel=1e-6, abs=1e-7)
        assert mine.final is not None and theirs.final is not None
        for key, value in mine.final.net_state.items():
            torch.testing.assert_close(value, theirs.final.net_state[key], rtol=0, atol=1e-6, msg=key)


def test_data_that_draws_from_the_global_generators_is_not_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = datamodule_module.build_datamodule

    def drawing(*args: object, **kwargs: object) -> object:
        torch.rand(1)  # a source of one's own that draws from torch's global generator
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(datamodule_module, "build_datamodule", drawing)
    shared: dict = {}
    assert shared_datamodule(configs(tmp_path, "drawing")[0], shared) is None
    assert list(shared.values()) == [None]  # every job of that data config builds its own
