"""Data sources chosen by ``_target_``: building one from a data config (unknown keys, bad
targets, unset fields refused), configs saved before sources, the config checks staying
torch-free, and a source of one's own, outside the package, trained end to end."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dllab.data.config_checks import check_data
from dllab.data.datamodule import InMemoryDataModule, build_datamodule
from dllab.data.dataset import Dataset
from dllab.data.playground import Playground
from dllab.data.sklearn_sets import SklearnSet
from dllab.data.source import DATAMODULE_KEYS, source_of, upgrade_data_config
from dllab.data.tables import Table
from dllab.errors import ConfigError
from tests.conftest import run_cli, run_dirs
from tests.makedata import make_table

DATAMODULE = {
    "batch_size": 10,
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "seed": 3,
    "standardize": True,
    "eval_batch_size": 8192,
}


def test_datamodule_keys_are_the_datamodule_signature() -> None:
    """The torch-free split of a data config knows the DataModule's keys without importing it."""
    trainer_limits = {"limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches"}
    parameters = [p for p in inspect.signature(InMemoryDataModule).parameters if p not in trainer_limits]
    assert parameters == ["source", *DATAMODULE_KEYS]


def test_build_datamodule_splits_the_config_between_source_and_datamodule() -> None:
    data = {"_target_": "dllab.data.playground.Playground", "name": "xor", "n_samples": 100, "noise": 0.1}
    dm = build_datamodule(data | DATAMODULE, limit_train_batches=2)
    assert dm.source == Playground("xor", n_samples=100, noise=0.1)
    assert (dm.batch_size, dm.seed, dm.limits["train"], dm.data_name) == (10, 3, 2, "xor")
    dm.setup()
    assert sum(len(dm.arrays[s][0]) for s in ("train", "val", "test")) == 100
    assert dm.points["train"].shape == (70, 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"_target_": "dllab.data.sklearn_sets.SklearnSet", "name": "iris", "num_workers": 0, "shuffle": True},
            "data.num_workers, data.shuffle: unknown keys of data=iris; valid: name "
            "(dllab.data.sklearn_sets.SklearnSet), batch_size, val_fraction, test_fraction, seed, standardize, "
            "eval_batch_size (the DataModule)",
        ),
        (
            {"_target_": "dllab.data.nowhere.Source", "name": "iris"},
            "data._target_=dllab.data.nowhere.Source: cannot import dllab.data.nowhere.Source "
            "(No module named 'dllab.data.nowhere')",
        ),
        (
            {"_target_": "dllab.data.playground.Nope", "name": "iris"},
            "data._target_=dllab.data.playground.Nope: cannot import dllab.data.playground.Nope "
            "(module 'dllab.data.playground' has no attribute 'Nope')",
        ),
        (
            {"_target_": "dllab.data.playground.expand_features", "name": "x"},
            "data._target_=dllab.data.playground.expand_features: not a subclass of dllab.data.source.Source",
        ),
        ({"name": "iris"}, "data._target_=None: must name a Source class: module.Class, e.g. my_data.Moons"),
        ({"_target_": "dllab.data.playground.Playground"}, "data.name: required by dllab.data.playground.Playground"),
    ],
)
def test_bad_source_configs_are_one_line(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        source_of(data | DATAMODULE)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_required_field_left_unset_is_named_by_the_source() -> None:
    data = OmegaConf.create({"_target_": "dllab.data.tables.Table", "name": "csv", "path": "???", "target": "???"})
    assert source_of(data) == Table(path=None, target=None)
    with pytest.raises(ConfigError, match=r"^data\.path: required; set data\.path=FILE \(a CSV table\)$"):
        check_data(OmegaConf.merge(data, DATAMODULE))


def test_a_source_field_may_not_take_a_datamodule_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "clashing.py").write_text(
        "from dataclasses import dataclass\nfrom dllab.data.sklearn_sets import SklearnSet\n\n\n"
        "@dataclass\nclass Seeded(SklearnSet):\n    seed: int = 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"data\._target_=clashing\.Seeded: field seed is a DataModule key"):
        source_of({"_target_": "clashing.Seeded", "name": "iris"})


def test_loaded_images_must_have_the_promised_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    load = SklearnSet.load

    def wrong_shape(self: SklearnSet, seed: int) -> Dataset:
        data = load(self, seed)
        data.image_shape = (1, 4, 16)
        return data

    monkeypatch.setattr(SklearnSet, "load", wrong_shape)
    promise = r"data=digits: SklearnSet\.image_shape is \(1, 8, 8\), the loaded images are \(1, 4, 16\)"
    with pytest.raises(ConfigError, match=promise):
        InMemoryDataModule(SklearnSet("digits")).setup()


def test_loaded_labels_must_hold_two_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source of one's own may load one class; the metrics would fail inside fit."""
    load = SklearnSet.load

    def setosa_only(self: SklearnSet, seed: int) -> Dataset:
        data = load(self, seed)
        data.x, data.y = data.x[data.y == 0], data.y[data.y == 0]
        return data

    monkeypatch.setattr(SklearnSet, "load", setosa_only)
    one_class = r"^data=iris: every sample is of one class \(setosa\); classification needs 2 or more classes$"
    with pytest.raises(ConfigError, match=one_class):
        InMemoryDataModule(SklearnSet("iris")).setup()


# --- configs saved before sources --------------------------------------------------------


def old_data_configs(tmp_path: Path) -> dict[str, dict]:
    """Data configs as run dirs saved them before sources: _target_ the DataModule, resolved."""
    common = DATAMODULE | {"_target_": "dllab.datamodule.InMemoryDataModule"}
    return {
        "circle": common | {"name": "circle", "n_samples": 120, "noise": 0.1, "features": ["x1", "x2", "x1x2"]},
        "digits": common | {"name": "digits"},
        "csv": common
        | {"name": "csv", "path": str(make_table(tmp_path / "t.csv")), "target": "species", "task": "auto"}
        | {"missing": "error"},
    }


@pytest.mark.parametrize("name", ["circle", "digits", "csv"])
def test_old_data_configs_are_upgraded(name: str, tmp_path: Path) -> None:
    old = old_data_configs(tmp_path)[name]
    source = {
        "circle": Playground("circle", n_samples=120, noise=0.1, features=["x1", "x2", "x1x2"]),
        "digits": SklearnSet("digits"),
        "csv": Table(path=old.get("path"), target="species"),
    }[name]
    upgraded = upgrade_data_config(old)
    assert upgraded._target_ == f"{type(source).__module__}.{type(source).__name__}"
    assert {k: v for k, v in upgraded.items() if k != "_target_"} == {k: v for k, v in old.items() if k != "_target_"}
    check_data(OmegaConf.create(old))  # the checks take the old form as it is
    dm = build_datamodule(old)
    assert dm.source == source and dm.seed == 3
    dm.setup()
    assert dm.task == "classification" and dm.batch_size == 10


def test_a_new_config_is_left_as_it_is_and_an_old_unknown_name_is_refused() -> None:
    new = OmegaConf.create({"_target_": "dllab.data.sklearn_sets.SklearnSet", "name": "iris"})
    assert upgrade_data_config(new) is new
    with pytest.raises(ConfigError, match=r"data\.name='moons': unknown dataset; choose one of circle, xor"):
        upgrade_data_config({"_target_": "dllab.datamodule.InMemoryDataModule", "name": "moons"})


# --- the config checks import no torch ---------------------------------------------------

TORCH_FREE = """
import sys
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from dllab.checks import check_config
from dllab.runs.config import config_dir

for overrides in ([], ["data=circle"], ["data=mnist", "augmentation=light"], ["data=image_folder", "data.root=x"]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    check_config(cfg)
assert "torch" not in sys.modules, "torch imported"
print("torch-free")
"""


def test_config_checks_import_no_torch() -> None:
    result = subprocess.run([sys.executable, "-c", TORCH_FREE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "torch-free", result.stderr


# --- a source of one's own ---------------------------------------------------------------

# docs/extending.md's recipe ("A dataset of your own"), file for file.
MY_DATA_PY = '''\
"""my_data.py: a dataset of my own for dllab."""

from dataclasses import dataclass

import numpy as np

from dllab.data.dataset import Dataset
from dllab.data.source import Source, fail


@dataclass
class Moons(Source):
    """scikit-learn's two interleaving half moons; the fields are the config keys."""

    n_samples: int = 400
    noise: float = 0.1

    @property
    def task(self) -> str:
        return "classification"

    def check(self) -> None:
        if not 0 <= self.noise <= 1:
            raise fail("data.noise", self.noise, "must be a number in [0, 1]")

    def load(self, seed: int) -> Dataset:
        from sklearn.datasets import make_moons

        x, y = make_moons(self.n_samples, noise=self.noise, random_state=seed)
        return Dataset(x.astype(np.float32), y.astype(np.int64), "classification", ["x1", "x2"], ["upper", "lower"])
'''

MOONS_YAML = """\
# conf/data/moons.yaml: the source (_target_ and its fields) and, from dllab's
# _base/datamodule.yaml, the DataModule's keys (batch_size, val_fraction, ...).
defaults:
  - /_base/datamodule@_here_

_target_: my_data.Moons
name: moons
n_samples: 400
noise: 0.1
"""

COMMAND = "dllab-train data=moons hydra.searchpath=[file://conf] trainer.max_epochs=2 threads=1"


def write_my_data(folder: Path) -> None:
    (folder / "my_data.py").write_text(MY_DATA_PY)
    (folder / "conf" / "data").mkdir(parents=True)
    (folder / "conf" / "data" / "moons.yaml").write_text(MOONS_YAML)


def test_own_source_checks_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_my_data(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = OmegaConf.merge(OmegaConf.load(tmp_path / "conf" / "data" / "moons.yaml"), DATAMODULE)
    del data["defaults"]
    source = source_of(data)
    assert type(source).__name__ == "Moons" and source.task == "classification" and source.image_shape is None
    loaded = source.load(seed=0)
    assert isinstance(loaded, Dataset) and loaded.x.shape == (400, 2)
    data.noise = 2
    with pytest.raises(ConfigError, match=r"^data.noise=2: must be a number in \[0, 1\]$"):
        check_data(data)


@pytest.mark.slow
def test_own_source_trains_end_to_end(tmp_path: Path) -> None:
    write_my_data(tmp_path)
    command, *args = COMMAND.split()
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    result = run_cli(command, *args, cwd=tmp_path, env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.parent.parent.name == "moons"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["test"]["test/acc"] > 0.6  # two classes: chance is 0.5
    assert OmegaConf.load(run_dir / "config.yaml").data._target_ == "my_data.Moons"
    result = run_cli(command, *args, "+data.num_workers=0", cwd=tmp_path, env={"PYTHONPATH": path})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: data.num_workers: unknown key of data=moons; valid: name, n_samples, noise (my_data.Moons), "
        "batch_size, val_fraction, test_fraction, seed, standardize, eval_batch_size (the DataModule)"
    )
