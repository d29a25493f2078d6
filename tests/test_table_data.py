"""Tables of one's own: task inference, one-hot categoricals, missing values, and every
error naming what is wrong; the config checks of the new data keys."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dllab.checks import check_config
from dllab.data.datamodule import InMemoryDataModule
from dllab.data.tables import Table, load_table
from dllab.errors import ConfigError
from tests.makedata import make_table


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_string_target_is_classification_with_one_hot_categoricals(tmp_path: Path) -> None:
    data = load_table(make_table(tmp_path / "t.csv"), "species")
    assert data.task == "classification" and data.class_names == ["large", "small"]
    assert data.feature_names == ["height", "weight", "colour_blue", "colour_green", "colour_red"]
    assert data.x.shape == (60, 5) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x[:3, 2:], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])  # red, green, blue
    assert data.y.tolist()[:4] == [1, 0, 1, 0] and data.y.dtype == np.int64


def test_task_follows_from_the_target_unless_set(tmp_path: Path) -> None:
    table = write(tmp_path / "t.csv", "a,b,label,value\n1,2,3,0.5\n2,3,1,1.5\n3,4,3,2.5\n")
    ints = load_table(table, "label")
    assert ints.task == "classification" and ints.class_names == ["1", "3"] and ints.y.tolist() == [1, 0, 1]
    floats = load_table(table, "value")
    assert floats.task == "regression" and floats.y.shape == (3, 1) and floats.y[2, 0] == np.float32(2.5)
    assert floats.feature_names == ["a", "b", "label"]
    forced = load_table(table, "value", task="classification")
    assert forced.task == "classification" and forced.class_names == ["0.5", "1.5", "2.5"]
    words = write(tmp_path / "w.csv", "a,b\n1,x\n2,y\n")
    with pytest.raises(ConfigError, match=r"data\.task=regression: target column b holds .* not numbers"):
        load_table(words, "b", task="regression")


def test_missing_values(tmp_path: Path) -> None:
    table = write(tmp_path / "t.csv", "a,b,c,y\n1,,red,0\n2,5,,1\n,6,blue,0\n4,7,red,1\n5,8,blue,\n")
    with pytest.raises(ConfigError) as info:
        load_table(table, "y")
    assert str(info.value) == (
        f"data.path={table}: missing values in columns a (1 rows), b (1 rows), c (1 rows), y (1 rows); "
        "set data.missing=drop (drop those rows) or data.missing=mean (fill numeric columns with their mean)"
    )
    dropped = load_table(table, "y", missing="drop")
    assert dropped.x.tolist() == [[4.0, 7.0, 1.0]]  # the one complete row; c one-hot with a single category
    filled = load_table(table, "y", missing="mean")  # the row without a target is dropped
    assert filled.x.shape[0] == 4
    assert filled.feature_names == ["a", "b", "c_blue", "c_missing", "c_red"]
    np.testing.assert_allclose(filled.x[:, 0], [1, 2, 7 / 3, 4])
    np.testing.assert_allclose(filled.x[:, 1], [6.0, 5, 6, 7])
    np.testing.assert_array_equal(filled.x[1, 2:], [0, 1, 0])


def test_table_errors_name_the_problem(tmp_path: Path) -> None:
    table = make_table(tmp_path / "t.csv")
    with pytest.raises(
        ConfigError, match=r"data\.target=kind: no such column in .*; columns found: height, weight, colour, species"
    ):
        load_table(table, "kind")
    with pytest.raises(ConfigError, match=f"data.path={tmp_path / 'no.csv'}: no such file"):
        load_table(tmp_path / "no.csv", "species")
    with pytest.raises(ConfigError, match="holds only the target column y; no feature columns"):
        load_table(write(tmp_path / "y.csv", "y\n1\n2\n"), "y")
    with pytest.raises(ConfigError, match="cannot read as CSV"):
        load_table(write(tmp_path / "e.csv", ""), "y")


def test_parquet_needs_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    if importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet"):
        import pandas as pd

        pd.DataFrame({"a": [1.0, 2.0], "y": [0, 1]}).to_parquet(path)
        assert load_table(path, "y").x.shape == (2, 1)
    else:
        path.write_bytes(b"PAR1")
        with pytest.raises(ConfigError, match="reading Parquet needs pyarrow or fastparquet, which are not installed"):
            load_table(path, "y")


def test_csv_datamodule_standardizes_from_train_only(tmp_path: Path) -> None:
    table = make_table(tmp_path / "t.csv", n=100)
    dm = InMemoryDataModule(Table(path=str(table), target="species", task="auto", missing="error"), batch_size=8)
    dm.setup()
    assert dm.task == "classification" and dm.input_size == 5 and dm.image_shape is None
    np.testing.assert_allclose(dm.arrays["train"][0].mean(0), 0, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=csv"], "data.path: required; set data.path=FILE (a CSV table)"),
        (["data=csv", "data.path=t.csv"], "data.target: required; set data.target=COLUMN"),
        (
            ["data=csv", "data.path=t.csv", "data.target=y", "data.missing=zero"],
            "data.missing='zero': unknown; choose one of error, drop, mean",
        ),
        (
            ["data=csv", "data.path=t.csv", "data.target=y", "data.task=ranking"],
            "data.task='ranking': unknown; choose one of auto, classification",
        ),
        (
            ["data=csv", "data.path=t.csv", "data.target=y", "data.task=regression", "loss=hinge"],
            "loss=hinge does not fit data=csv, a regression task",
        ),
        (["data=image_folder"], "data.root: required; set data.root=PATH"),
        (
            ["data=image_folder", "data.root=x", "data.image_size=[0,4]"],
            "data.image_size=[0, 4]: must be a positive integer or [height, width]",
        ),
        (["data=image_folder", "data.root=x", "data.channels=2"], "data.channels=2: choose 1 (grayscale) or 3 (RGB)"),
        (["data=mnist", "data.n_samples=5"], "data.n_samples=5: must be null (all images) or an integer >= 10"),
        (["data=cifar10", "data.download=maybe"], "data.download='maybe': must be true or false"),
    ],
)
def test_checks_of_the_new_data_keys(overrides: list[str], message: str, make_cfg) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(make_cfg(*overrides))
    assert str(info.value).startswith(message)
