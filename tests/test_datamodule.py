"""Splits, scaling and the in-memory batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dllab.data.datamodule import InMemoryDataModule, TrainEpochs
from dllab.data.playground import Playground
from dllab.data.sklearn_sets import SklearnSet
from dllab.errors import ConfigError


def rows(array: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in array}


def test_splits_are_disjoint_stratified_and_seeded() -> None:
    dm = InMemoryDataModule(SklearnSet("digits"), val_fraction=0.1, test_fraction=0.2, seed=1, standardize=False)
    dm.setup()
    sizes = {s: len(dm.arrays[s][0]) for s in ("train", "val", "test")}
    assert sizes == {"train": 1258, "val": 180, "test": 359}
    assert not rows(dm.arrays["train"][0]) & rows(dm.arrays["test"][0])
    assert not rows(dm.arrays["val"][0]) & rows(dm.arrays["test"][0])
    full = np.bincount(np.concatenate([dm.arrays[s][1] for s in ("train", "val", "test")])) / 1797
    for split in ("train", "val", "test"):
        share = np.bincount(dm.arrays[split][1], minlength=10) / sizes[split]
        assert np.abs(share - full).max() < 0.02  # stratified: every split keeps the class shares
    again = InMemoryDataModule(SklearnSet("digits"), seed=1, standardize=False)
    again.setup()
    assert np.array_equal(again.arrays["test"][0], dm.arrays["test"][0])
    other = InMemoryDataModule(SklearnSet("digits"), seed=2, standardize=False)
    other.setup()
    assert not np.array_equal(other.arrays["test"][0], dm.arrays["test"][0])


def test_standardization_uses_training_statistics_only() -> None:
    dm = InMemoryDataModule(SklearnSet("wine"), seed=0, standardize=True)
    dm.setup()
    x_train = dm.arrays["train"][0]
    assert np.allclose(x_train.mean(0), 0, atol=1e-4) and np.allclose(x_train.std(0), 1, atol=1e-3)
    raw = InMemoryDataModule(SklearnSet("wine"), seed=0, standardize=False)
    raw.setup()
    mean, std = raw.arrays["train"][0].mean(0), raw.arrays["train"][0].std(0)
    assert np.allclose(dm.arrays["test"][0], (raw.arrays["test"][0] - mean) / std, atol=1e-4)
    assert not np.allclose(dm.arrays["test"][0].mean(0), 0, atol=1e-3)  # test stats were not used


def test_regression_targets_scaled_with_training_statistics() -> None:
    dm = InMemoryDataModule(SklearnSet("diabetes"), seed=0)
    dm.setup()
    y_train = dm.arrays["train"][1]
    assert y_train.shape[1] == 1 and abs(float(y_train.mean())) < 1e-4 and abs(float(y_train.std()) - 1) < 1e-3
    assert dm.task == "regression" and dm.output_size == 1 and dm.input_size == 10


def test_train_loader_yields_one_epoch_in_a_seeded_order() -> None:
    dm = InMemoryDataModule(Playground("circle", n_samples=200), batch_size=10, seed=5)
    loader = dm.train_dataloader()
    (batch,) = list(loader)
    assert batch.batch_size == 10 and batch.x.shape == (140, 2)
    assert sorted(batch.order.tolist()) == list(range(140))
    (again,) = list(loader)  # the next epoch
    stored = dm._tensors["train"][0]
    assert batch.x.data_ptr() == again.x.data_ptr() == stored.data_ptr()  # one copy, not one per epoch
    assert batch.x.untyped_storage().nbytes() == stored.numel() * stored.element_size()  # not a slice of a copy
    assert torch.equal(loader.order(3), loader.order(3))
    assert not torch.equal(loader.order(3), loader.order(4))


def test_ddp_shards_cover_the_epoch_once() -> None:
    x, y = torch.zeros(11, 2), torch.zeros(11, dtype=torch.long)
    shards = [TrainEpochs(x, y, 2, seed=0, epoch=lambda: 0, rank=r, world_size=2).order(0) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(11))


def test_eval_loader_slices_the_whole_split() -> None:
    dm = InMemoryDataModule(SklearnSet("digits"), eval_batch_size=100)
    batches = list(dm.test_dataloader())
    assert [len(b[0]) for b in batches] == [100, 100, 100, 59]


def test_limits_select_fractions_or_batches() -> None:
    dm = InMemoryDataModule(SklearnSet("digits"), batch_size=32, limit_train_batches=3, limit_val_batches=0.5)
    assert len(next(iter(dm.train_dataloader())).order) == 96
    assert sum(len(b[0]) for b in dm.val_dataloader()) == 90


def test_overfit_uses_the_same_samples_for_validation() -> None:
    dm = InMemoryDataModule(SklearnSet("digits"), batch_size=16, overfit_batches=2)
    dm.setup()
    assert np.array_equal(dm.arrays["train"][0], dm.arrays["val"][0]) and len(dm.arrays["train"][0]) == 32


def test_summary_reports_splits_classes_and_ratio() -> None:
    dm = InMemoryDataModule(SklearnSet("iris"), seed=0)
    lines = dm.summary(num_parameters=1000)
    text = "\n".join(lines)
    assert "samples: train 105, val 15, test 30" in text
    assert "classes (3): setosa, versicolor, virginica; balanced in every split (33% each)" in text
    assert "0.10 (105 / 1000)" in text and "warning: fewer than 10" in text
    assert not any(line.startswith("warning") for line in dm.summary(num_parameters=10))


def test_summary_counts_classes_per_split_when_unbalanced() -> None:
    dm = InMemoryDataModule(SklearnSet("wine"), seed=0)  # 59, 71 and 48 samples
    dm.setup()
    lines = dm.summary(num_parameters=10)
    per_split = [line for line in lines if line.startswith("classes in ")]
    assert [line.split(":")[0] for line in per_split] == ["classes in train", "classes in val", "classes in test"]
    train_counts = [int(part.split()[1]) for part in per_split[0].split(": ", 1)[1].split(", ")]
    assert sum(train_counts) == len(dm.arrays["train"][0]) and len(set(train_counts)) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 5000}, "data.batch_size=5000: larger than the training split (1258 samples)"),
        ({"val_fraction": 0.0001}, "data.val_fraction: leaves 0 of 1797 samples in the val split"),
        ({"name": "nope"}, "data.name='nope': unknown scikit-learn set; choose one of iris"),
    ],
)
def test_bad_data_settings_name_the_field(kwargs: dict, message: str) -> None:
    options = {"name": "digits", **kwargs}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        InMemoryDataModule(SklearnSet(options.pop("name")), **options).setup()


def test_nan_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    load = SklearnSet.load

    def with_nan(self: SklearnSet, seed: int):
        data = load(self, seed)
        data.x[7, 2] = np.nan
        return data

    monkeypatch.setattr(SklearnSet, "load", with_nan)
    with pytest.raises(ConfigError, match=r"data=wine: 1 rows hold NaN or inf values \(rows \[7\]"):
        InMemoryDataModule(SklearnSet("wine")).setup()
