"""A table of one's own (CSV; Parquet when pandas has a reader for it) as a source: target
column, task, one-hot categoricals, missing values.

The task follows from the target column unless ``data.task`` says: integer, boolean or
string labels mean classification, floats regression. Missing values are an error that
names the columns and row counts, unless ``data.missing`` asks to drop the rows or fill
the mean.

A table that would train without a word but give a wrong result is refused, naming the
columns: a duplicated column name (pandas would keep the copy as a feature), a numeric
column with a few text cells (it would become a one-hot block), a column that identifies
rows (an ID, free text, the row number), a classification target with one class.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dllab.catalog import AUTO, CLASSIFICATION, REGRESSION, TASKS
from dllab.data.dataset import Dataset
from dllab.data.source import Source, fail, require_text
from dllab.errors import ConfigError
from dllab.field_checks import is_number

log = logging.getLogger(__name__)

MISSING = ("error", "drop", "mean")  # what data.missing does with rows that miss values
# A text column is an ID or free text, not a category, when it has more distinct values than
# this share of its cells and than ID_FLOOR (small tables keep their small categories).
ID_SHARE = 0.5
ID_FLOOR = 20
SHOWN = 3  # offending values (and lines of each) named in an error


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def read_table(path: str | Path, na_values: Sequence[str] = ()):
    """The file as a pandas DataFrame (CSV, or Parquet if pyarrow/fastparquet is installed);
    cells equal to one of ``na_values`` (besides pandas' own NA, n/a, ...) are missing."""
    import pandas as pd

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"data.path={path}: no such file")
    if is_parquet(file):
        try:
            frame = pd.read_parquet(file)
        except ImportError as err:
            raise ConfigError(
                f"data.path={path}: reading Parquet needs pyarrow or fastparquet, which are not installed; "
                "save the table as CSV"
            ) from err
        return frame.mask(frame.isin(list(na_values))) if na_values else frame
    try:
        # the header as written: pandas renames a duplicate y to y.1, which would become a feature
        header = pd.read_csv(file, header=None, nrows=1, dtype=str).iloc[0]
        frame = pd.read_csv(file, na_values=list(na_values))
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise ConfigError(f"data.path={path}: cannot read as CSV: {err}".replace("\n", " ")) from err
    counts = Counter(header.dropna())
    twice = [n for n, k in counts.items() if k > 1]
    if twice:
        places = "; ".join(
            f"{n} (columns {' and '.join(str(i + 1) for i, m in enumerate(header) if m == n)})" for n in twice
        )
        raise ConfigError(
            f"data.path={path}: duplicate column names in the header: {places}; pandas would read each copy "
            "as another column (e.g. y.1), a feature that may be the target itself; rename or remove the copies"
        )
    return frame


def infer_task(column) -> str:
    """Classification for integer, boolean and string labels; regression for floats."""
    import pandas as pd

    return REGRESSION if pd.api.types.is_float_dtype(column) else CLASSIFICATION


def load_table(
    path: str | Path,
    target: str,
    task: str = AUTO,
    missing: str = "error",
    drop_columns: Sequence[str] = (),
    na_values: Sequence[str] = (),
) -> Dataset:
    """Features (categoricals one-hot encoded) and the target column of a table, without the
    ``drop_columns``. The checks run on the table as read, before missing rows are dropped,
    so the lines they name are the file's."""
    import pandas as pd

    frame = read_table(path, na_values)
    if len(frame) == 0:
        columns = ", ".join(map(str, frame.columns))
        raise ConfigError(f"data.path={path}: holds a header ({columns}) and no rows; a table needs data rows")
    if target not in frame.columns:
        raise ConfigError(
            f"data.target={target}: no such column in {path}; columns found: {', '.join(map(str, frame.columns))}"
        )
    frame = _drop_columns(frame, [str(c) for c in drop_columns], target, path)
    if len(frame.columns) < 2:
        raise ConfigError(f"data.path={path}: holds only the target column {target}; no feature columns")
    _check_numbers(frame, path)
    _check_ids(frame, target, path)
    whole = _whole_numbers(frame[target], path, target, na_values)
    frame = _handle_missing(frame, target, missing, path)
    column = frame[target].astype(np.int64) if whole else frame[target]
    task = infer_task(column) if task == AUTO else task
    features = frame.drop(columns=[target])
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if categorical:
        features = pd.get_dummies(features, columns=categorical, dtype=np.float32)
    x = features.to_numpy(dtype=np.float32)
    names = [str(c) for c in features.columns]
    if task == CLASSIFICATION:
        codes, classes = pd.factorize(column, sort=True)
        if len(classes) < 2:
            raise ConfigError(
                f"data.target={target}: holds one class ({classes[0]}) in all {len(column)} rows; "
                "classification needs 2 or more classes"
            )
        return Dataset(x, codes.astype(np.int64), CLASSIFICATION, names, [str(c) for c in classes])
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise ConfigError(
            f"data.task=regression: target column {target} holds {column.dtype} values, not numbers; "
            "use data.task=classification (or auto)"
        )
    return Dataset(x, column.to_numpy(dtype=np.float32)[:, None], REGRESSION, names)


def hydra_list(names: Sequence[str]) -> str:
    """``names`` as a Hydra override's list: quoted where the grammar needs it."""
    plain = re.compile(r"[A-Za-z_][\w\-]*")
    return "[" + ",".join(n if plain.fullmatch(n) else repr(n) for n in names) + "]"


def _drop_columns(frame, drop: list[str], target: str, path: str | Path):
    columns = [str(c) for c in frame.columns]
    unknown = [c for c in drop if c not in columns]
    if unknown:
        raise fail(
            "data.drop_columns", drop, f"no column {', '.join(unknown)} in {path}; columns: {', '.join(columns)}"
        )
    if target in drop:
        raise fail("data.drop_columns", drop, f"drops the target column {target}")
    return frame.drop(columns=[c for c in frame.columns if str(c) in drop])


def _where(path: str | Path, rows: Sequence[int]) -> str:
    """The file's lines of 0-based data rows (the header is line 1 of a CSV); a Parquet file's rows."""
    word, first = ("row", 1) if is_parquet(path) else ("line", 2)
    numbers = [str(i + first) for i in rows[:SHOWN]]
    return f"{word}{'s' * (len(rows) > 1)} {', '.join(numbers)}{', ...' * (len(rows) > SHOWN)}"


def _check_numbers(frame, path: str | Path) -> None:
    """Refuse a column that is numbers but for a few text cells (``?``, ``-``): read as text, it
    would become one one-hot feature per number."""
    import pandas as pd

    problems = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            continue
        numbers = pd.to_numeric(column.astype(object), errors="coerce")
        text = column.notna() & numbers.isna()
        if text.any() and numbers.notna().sum() >= text.sum():  # mostly numbers: the text is the odd one out
            values = column[text]
            shown = [f"{v!r} ({_where(path, values.index[values == v].tolist())})" for v in values.unique()[:SHOWN]]
            others = values.nunique() - SHOWN
            listing = ", ".join(shown) + (f" and {others} other values" if others > 0 else "")
            problems.append((str(name), int(text.sum()), listing, values.unique()[:SHOWN].tolist()))
    if problems:
        named = "; ".join(f"column {n} is numbers but for {k} of {len(frame)} cells: {v}" for n, k, v, _ in problems)
        markers = list(dict.fromkeys(str(m) for *_, found in problems for m in found))
        raise ConfigError(
            f"data.path={path}: {named}; correct those cells in the file, or read them as missing with "
            f"data.na_values={hydra_list(markers)} and data.missing=drop (or mean)"
        )


def _check_ids(frame, target: str, path: str | Path) -> None:
    """Refuse feature columns that identify rows rather than describe them: text with a
    distinct value in most cells (one-hot encoding makes a feature per value: a 30,000-value
    ID, 30,000 features), and integers equal to the row number (they tell only where a row
    sits in the file, and leak the label when the file is sorted by it). The row number
    is kept when it is the only feature: a series such as ``step,value`` is a function of it."""
    import pandas as pd

    features = [c for c in frame.columns if c != target]
    found = []
    for name in features:
        column = frame[name]
        if pd.api.types.is_integer_dtype(column) and len(features) > 1 and len(column) > ID_FLOOR:
            values = column.to_numpy()
            start = int(values[0])
            if start in (0, 1) and np.array_equal(values, np.arange(start, start + len(values))):
                found.append(
                    (
                        str(name),
                        f"the row number {start}..{start + len(values) - 1}: it tells only where a row sits in "
                        "the file, and leaks the label if the file is sorted by it",
                    )
                )
        elif not pd.api.types.is_numeric_dtype(column):
            distinct, cells = column.nunique(), int(column.notna().sum())
            if distinct > max(ID_FLOOR, ID_SHARE * cells):
                found.append(
                    (
                        str(name),
                        f"{distinct} distinct values in {cells} rows, an ID or free text: "
                        "one-hot encoding would make a feature of each",
                    )
                )
    if found:
        many = len(found) > 1
        listing = ", ".join(f"{n} ({why})" for n, why in found)
        raise ConfigError(
            f"data.path={path}: column{'s' * many} {listing} {'identify' if many else 'identifies'} rows "
            f"rather than describing them; drop {'them' if many else 'it'} with "
            f"data.drop_columns={hydra_list([n for n, _ in found])}"
        )


def _whole_numbers(column, path: str | Path, target: str, na_values: Sequence[str]) -> bool:
    """Whether a target that pandas read as floats holds integers (class labels) as written:
    pandas reads an integer column with a missing cell as floats, which would make it a
    regression target once the rows without a label are dropped."""
    import pandas as pd

    if not pd.api.types.is_float_dtype(column) or not column.isna().any() or is_parquet(path):
        return False
    as_written = pd.read_csv(
        Path(path).expanduser(), usecols=[target], na_values=list(na_values), dtype_backend="numpy_nullable"
    )[target]
    return pd.api.types.is_integer_dtype(as_written)


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
    """The table at ``path``: column ``target`` is predicted from every other column but the
    ``drop_columns``; ``task`` (auto: from the target column), ``missing`` (error, drop, mean)
    and ``na_values`` (cells read as missing) as in :func:`load_table`."""

    name: str = "csv"
    path: str | None = None
    target: str | None = None
    task: str = AUTO  # a field: "auto" until the table is read, or what the config says
    missing: str = "error"
    drop_columns: Sequence[str] = ()
    na_values: Sequence[str] = ()

    def check(self) -> None:
        require_text("data.path", self.path, "FILE (a CSV table)")
        require_text("data.target", self.target, "COLUMN (the column to predict)")
        if self.task not in (AUTO, *TASKS):
            raise fail("data.task", self.task, f"unknown; choose one of {', '.join((AUTO, *TASKS))}")
        if self.missing not in MISSING:
            raise fail("data.missing", self.missing, f"unknown; choose one of {', '.join(MISSING)}")
        for field, example in (("drop_columns", "[id,name]"), ("na_values", "['?']")):
            value = getattr(self, field)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) or is_number(v) for v in value):
                raise fail(f"data.{field}", value, f"must be a list of texts, e.g. data.{field}={example}")

    def load(self, seed: int) -> Dataset:
        assert self.path is not None and self.target is not None  # check() refuses them unset
        drop = [str(c) for c in self.drop_columns]  # a header of digits reads as a number in an override
        return load_table(self.path, self.target, self.task, self.missing, drop, list(self.na_values))
