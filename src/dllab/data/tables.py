"""A table of one's own (CSV; Parquet when pandas has a reader for it) as a source: target
column, task, one-hot categoricals, missing values.

The task follows from the target column unless ``data.task`` says: integer, boolean or
string labels mean classification, floats regression. Missing values are an error that
names the columns and row counts, unless ``data.missing`` asks to drop the rows or fill
the mean.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllab.catalog import AUTO, CLASSIFICATION, REGRESSION, TASKS
from dllab.data.dataset import Dataset
from dllab.data.source import Source, fail, require_text
from dllab.errors import ConfigError

log = logging.getLogger(__name__)

MISSING = ("error", "drop", "mean")  # what data.missing does with rows that miss values


def read_table(path: str | Path):
    """The file as a pandas DataFrame (CSV, or Parquet if pyarrow/fastparquet is installed)."""
    import pandas as pd

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"data.path={path}: no such file")
    if file.suffix.lower() == ".parquet":
        try:
            return pd.read_parquet(file)
        except ImportError as err:
            raise ConfigError(
                f"data.path={path}: reading Parquet needs pyarrow or fastparquet, which are not installed; "
                "save the table as CSV"
            ) from err
    try:
        return pd.read_csv(file)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise ConfigError(f"data.path={path}: cannot read as CSV: {err}".replace("\n", " ")) from err


def infer_task(column) -> str:
    """Classification for integer, boolean and string labels; regression for floats."""
    import pandas as pd

    return REGRESSION if pd.api.types.is_float_dtype(column) else CLASSIFICATION


def load_table(path: str | Path, target: str, task: str = AUTO, missing: str = "error") -> Dataset:
    """Features (categoricals one-hot encoded) and the target column of a table."""
    import pandas as pd

    frame = read_table(path)
    if target not in frame.columns:
        raise ConfigError(
            f"data.target={target}: no such column in {path}; columns found: {', '.join(map(str, frame.columns))}"
        )
    if len(frame.columns) < 2:
        raise ConfigError(f"data.path={path}: holds only the target column {target}; no feature columns")
    frame = _handle_missing(frame, target, missing, path)
    task = infer_task(frame[target]) if task == AUTO else task
    features = frame.drop(columns=[target])
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if categorical:
        features = pd.get_dummies(features, columns=categorical, dtype=np.float32)
    x = features.to_numpy(dtype=np.float32)
    names = [str(c) for c in features.columns]
    column = frame[target]
    if task == CLASSIFICATION:
        codes, classes = pd.factorize(column, sort=True)
        return Dataset(x, codes.astype(np.int64), CLASSIFICATION, names, [str(c) for c in classes])
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise ConfigError(
            f"data.task=regression: target column {target} holds {column.dtype} values, not numbers; "
            "use data.task=classification (or auto)"
        )
    return Dataset(x, column.to_numpy(dtype=np.float32)[:, None], REGRESSION, names)


def _handle_missing(frame, target: str, missing: str, path: str | Path):
    import pandas as pd

    counts = frame.isna().sum()
    counts = counts[counts > 0]
    if counts.empty:
        return frame
    listing = ", ".join(f"{c} ({n} rows)" for c, n in counts.items())
    if missing == "error":
        raise ConfigError(
            f"data.path={path}: missing values in columns {listing}; "
            "set data.missing=drop (drop those rows) or data.missing=mean (fill numeric columns with their mean)"
        )
    if missing == "drop":
        kept = frame.dropna()
    else:  # mean: numeric features get the column mean, categorical ones a category of their own
        kept = frame.dropna(subset=[target]).copy()
        for column in counts.index:
            if column == target:
                continue
            if pd.api.types.is_numeric_dtype(kept[column]):
                kept[column] = kept[column].fillna(kept[column].mean())
            else:
                kept[column] = kept[column].astype(object).fillna("missing")
    log.info("data.missing=%s: missing values in %s; %d of %d rows kept", missing, listing, len(kept), len(frame))
    if kept.empty:
        raise ConfigError(f"data.missing={missing}: no rows of {path} are left")
    return kept.reset_index(drop=True)


@dataclass
class Table(Source):
    """The table at ``path``: column ``target`` is predicted from every other column; ``task``
    (auto: from the target column) and ``missing`` (error, drop, mean) as in :func:`load_table`."""

    name: str = "csv"
    path: str | None = None
    target: str | None = None
    task: str = AUTO  # a field: "auto" until the table is read, or what the config says
    missing: str = "error"

    def check(self) -> None:
        require_text("data.path", self.path, "FILE (a CSV table)")
        require_text("data.target", self.target, "COLUMN (the column to predict)")
        if self.task not in (AUTO, *TASKS):
            raise fail("data.task", self.task, f"unknown; choose one of {', '.join((AUTO, *TASKS))}")
        if self.missing not in MISSING:
            raise fail("data.missing", self.missing, f"unknown; choose one of {', '.join(MISSING)}")

    def load(self, seed: int) -> Dataset:
        assert self.path is not None and self.target is not None  # check() refuses them unset
        return load_table(self.path, self.target, self.task, self.missing)
