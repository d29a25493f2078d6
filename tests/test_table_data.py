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
    dropped = load_table(table, "y", missing="drop", task="regression")  # one row: one class
    assert dropped.x.tolist() == [[4.0, 7.0, 1.0]]  # the one complete row; c one-hot with a single category
    filled = load_table(table, "y", missing="mean")  # the row without a target is dropped
    assert filled.x.shape[0] == 4
    assert filled.task == "classification" and filled.class_names == ["0", "1"]  # integer labels, read as floats
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
        (
            ["data=csv", "data.path=t.csv", "data.target=y", "data.drop_columns=id"],
            "data.drop_columns='id': must be a list of texts, e.g. data.drop_columns=[id,name]",
        ),
        (
            ["data=csv", "data.path=t.csv", "data.target=y", "data.na_values=[[x]]"],
            "data.na_values=[['x']]: must be a list of texts, e.g. data.na_values=['?']",
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


# --- tables that would train without a word but give a wrong result ----------------------


def rows(n: int, extra=lambda i: "") -> str:
    """n rows of two numeric features and a label 0/1 that follows the first."""
    return "".join(f"{extra(i)}{(i * 37) % 11},{(i * 7) % 5},{(i * 37) % 11 > 5:d}\n" for i in range(n))


def test_one_class_target_is_refused(tmp_path: Path) -> None:
    table = write(tmp_path / "t.csv", "a,b,y\n" + "".join(f"{i * 3 % 7},{i % 3},spam\n" for i in range(30)))
    with pytest.raises(ConfigError) as info:
        load_table(table, "y")
    assert (
        str(info.value)
        == "data.target=y: holds one class (spam) in all 30 rows; classification needs 2 or more classes"
    )


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    table = write(tmp_path / "t.csv", "a,y,y\n" + "".join(f"{i},{i % 2},{i % 2}\n" for i in range(30)))
    with pytest.raises(ConfigError) as info:
        load_table(table, "y")  # read as is, the copy y.1 would be a feature equal to the target
    assert str(info.value).startswith(f"data.path={table}: duplicate column names in the header: y (columns 2 and 3);")
    assert str(info.value).endswith("rename or remove the copies")
    both = write(tmp_path / "b.csv", "a,a,b,b,y\n1,2,3,4,0\n")
    with pytest.raises(ConfigError, match=r"header: a \(columns 1 and 2\); b \(columns 3 and 4\);"):
        load_table(both, "y")


def test_a_numeric_column_with_a_few_text_cells_is_refused(tmp_path: Path) -> None:
    lines = rows(30).splitlines()
    lines[17] = "?" + lines[17][lines[17].index(",") :]  # line 19 of the file: the header is line 1
    lines[20] = "?" + lines[20][lines[20].index(",") :]
    lines[25] = lines[25][: lines[25].rindex(",")] + ",n.a."  # the label of line 27
    table = write(tmp_path / "t.csv", "a,b,y\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_table(table, "y")
    assert str(info.value) == (
        f"data.path={table}: column a is numbers but for 2 of 30 cells: '?' (lines 19, 22); "
        "column y is numbers but for 1 of 30 cells: 'n.a.' (line 27); correct those cells in the file, "
        "or read them as missing with data.na_values=['?','n.a.'] and data.missing=drop (or mean)"
    )
    data = load_table(table, "y", missing="drop", na_values=["?", "n.a."])
    assert data.x.shape == (27, 2) and data.feature_names == ["a", "b"]
    # the label column read as floats for its missing cell is still integer classes, not a regression target
    assert data.task == "classification" and data.class_names == ["0", "1"]
    many = write(tmp_path / "m.csv", "a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)) + "x,0\nw,1\nv,0\nu,1\n")
    with pytest.raises(
        ConfigError,
        match=r"column a is numbers but for 4 of 24 cells: 'x' \(line 22\), 'w' \(line 23\), "
        r"'v' \(line 24\) and 1 other values;",
    ):
        load_table(many, "y")
    categories = write(tmp_path / "c.csv", "a,y\n" + "".join(f"{'red' if i % 3 else 7},{i % 2}\n" for i in range(30)))
    assert load_table(categories, "y").feature_names == ["a_7", "a_red"]  # mostly text: a category


def test_columns_that_identify_rows_are_refused_before_encoding(tmp_path: Path, monkeypatch) -> None:
    import pandas as pd

    ids = write(tmp_path / "ids.csv", "id,a,b,y\n" + rows(30_000, lambda i: f"user{i:05d},"))
    monkeypatch.setattr(pd, "get_dummies", lambda *a, **k: pytest.fail("one-hot encoded an ID column"))
    with pytest.raises(ConfigError) as info:
        load_table(ids, "y")
    assert str(info.value) == (
        f"data.path={ids}: column id (30000 distinct values in 30000 rows, an ID or free text: one-hot encoding "
        "would make a feature of each) identifies rows rather than describing them; drop it with "
        "data.drop_columns=[id]"
    )
    assert load_table(ids, "y", drop_columns=["id"]).feature_names == ["a", "b"]
    monkeypatch.undo()
    numbered = write(tmp_path / "n.csv", "Unnamed: 0,a,b,y\n" + rows(30, lambda i: f"{i},"))
    with pytest.raises(
        ConfigError,
        match=r"column Unnamed: 0 \(the row number 0\.\.29: it tells only where a row "
        r"sits in the file, .* data\.drop_columns=\['Unnamed: 0'\]$",
    ):
        load_table(numbered, "y")
    from_one = write(tmp_path / "o.csv", "n,name,a,b,y\n" + rows(30, lambda i: f"{i + 1},{'ab'[i % 2]}{i},"))
    with pytest.raises(
        ConfigError,
        match=r"columns n \(the row number 1\.\.30: .*\), name \(30 distinct values in 30 "
        r"rows, .*\) identify rows rather than describing them; drop them with data\.drop_columns=\[n,name\]",
    ):
        load_table(from_one, "y")
    # a series whose only input is the step, and a small table's categories, are features
    series = write(tmp_path / "s.csv", "step,value\n" + "".join(f"{i},{i * 0.5 + 1}\n" for i in range(30)))
    assert load_table(series, "value").feature_names == ["step"]
    small = write(tmp_path / "small.csv", "name,a,y\n" + "".join(f"n{i},{i},{i % 2}\n" for i in range(20)))
    assert load_table(small, "y").x.shape == (20, 21)


def test_drop_columns_must_name_feature_columns(tmp_path: Path) -> None:
    table = make_table(tmp_path / "t.csv")
    assert load_table(table, "species", drop_columns=["colour"]).feature_names == ["height", "weight"]
    with pytest.raises(ConfigError) as info:
        load_table(table, "species", drop_columns=["id"])
    assert str(info.value) == (
        f"data.drop_columns=['id']: no column id in {table}; columns: height, weight, colour, species"
    )
    with pytest.raises(ConfigError, match=r"data.drop_columns=\['species'\]: drops the target column species"):
        load_table(table, "species", drop_columns=["species"])
    source = Table(path=str(table), target="species", drop_columns=["weight"])
    assert source.load(seed=0).feature_names == ["height", "colour_blue", "colour_green", "colour_red"]
