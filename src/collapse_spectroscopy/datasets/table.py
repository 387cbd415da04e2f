"""The ``table`` source: samples x features from CSV, Parquet or NetCDF, without geography.

* CSV (``.csv``, also compressed ``.csv.gz`` etc.) and Parquet (``.parquet``, ``.pq``):
  one row per sample, one column per feature. A CSV's delimiter is the one of ``,`` ``;``
  tab ``|`` that splits its header into the most fields (:func:`csv_format`); with any
  delimiter but ``,``, numbers written with a decimal comma (``4,9``) are read as such.
  Every row must have as many fields as the header: a row with one more (a delimiter at
  the end of each row) or one fewer is an error naming the line, never a column taken
  for the row index.
* NetCDF (``.nc``, ``.nc4``, ``.netcdf``, ``.cdf``): either data variables that share one
  dimension (each variable a feature), or a single two-dimensional variable
  (samples x features; feature names from the second dimension's coordinate if any).

Every column except the split column (``dataset.split_column``) and the dropped columns
(``dataset.drop_columns``) is a feature and must be numeric; any other column is an
error naming it (drop it explicitly if it is an identifier). A value equal to
``dataset.nodata`` is missing. Rows with a missing or non-finite value in any feature are
dropped, and their number is recorded (``n_rows_dropped_nonfinite`` in the source info,
which ``prepare`` reports in its log and in ``split_summary.json``). A feature holding a
fill value no one declared (``|x| > 1e30``, or an extreme value shared by many rows) is
an error naming the column (:func:`.stack.check_no_undeclared_nodata`).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from collapse_spectroscopy.datasets.rasters import value_in_dtype
from collapse_spectroscopy.datasets.rows import complete_rows, row_counts
from collapse_spectroscopy.datasets.stack import Samples, check_no_undeclared_nodata
from collapse_spectroscopy.errors import InputError

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
# the delimiters a CSV may use, "," first: it wins a tie (a file of one column)
CSV_DELIMITERS = (",", ";", "\t", "|")
# a number written with a decimal comma, as a field of a CSV not delimited by commas
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+([eE][+-]?\d+)?\s*$")


def _text_lines(path: Path):
    """The lines of a (possibly compressed) CSV file, as text; pandas infers the
    compression from the suffix, as :func:`read_frame` does."""
    from pandas.io.common import get_handle

    return get_handle(path, "r", compression="infer", encoding="utf-8", errors="replace")


def _delimiter_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def csv_format(path: str | os.PathLike) -> tuple[str, str]:
    """The delimiter and decimal mark of a CSV file, after checking its field counts.

    The delimiter is the one of :data:`CSV_DELIMITERS` that splits the header into the
    most fields (``,`` for a file of one column); the decimal mark is ``,`` when the
    delimiter is not a comma and a field reads as a number with a decimal comma (``4,9``),
    else ``.``. Read with the wrong delimiter, a semicolon CSV of decimal commas becomes
    one garbage feature (pandas took the extra fields for the row index), so every row
    must then have exactly as many fields as the header.

    Raises
    ------
    InputError
        An empty file, or a row (named by its line) whose number of fields differs from
        the header's.
    """
    path = Path(path)
    with _text_lines(path) as handle:
        lines = iter(handle.handle)
        header = next((line for line in lines if line.strip()), None)
        if header is None:
            raise InputError(f"table {str(path)!r} is empty: expected a header and rows")
        delimiter = max(CSV_DELIMITERS, key=lambda d: len(next(csv.reader([header], delimiter=d))))
        fields = next(csv.reader([header], delimiter=delimiter))
        decimal = "."
        # line numbers count from the header's line 1; blank lines are skipped, as pandas does
        for number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=2):
            if not row:
                continue
            if len(row) != len(fields):
                end = " (a delimiter at the end of the row?)" if row[-1] == "" else ""
                raise InputError(
                    f"table {str(path)!r}: line {number} has {len(row)} fields but the "
                    f"header has {len(fields)} ({', '.join(map(repr, fields))}) with "
                    f"delimiter {_delimiter_name(delimiter)}{end}: expected as many fields "
                    "in every row as in the header"
                )
            if delimiter != "," and decimal == "." and any(map(_DECIMAL_COMMA.match, row)):
                decimal = ","
    return delimiter, decimal


def _read_netcdf(path: Path) -> pd.DataFrame:
    import xarray as xr

    with xr.open_dataset(path) as ds:
        ds = ds.load()
    variables = list(ds.data_vars)
    if not variables:
        raise InputError(f"table {str(path)!r} has no data variables: expected features")
    if len(variables) == 1 and ds[variables[0]].ndim == 2:
        da = ds[variables[0]]
        sample_dim, feature_dim = da.dims
        names = (
            [str(v) for v in da[feature_dim].values]
            if feature_dim in da.coords
            else [f"{variables[0]}_{i}" for i in range(da.sizes[feature_dim])]
        )
        if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.bool_):
            raise InputError(
                f"table {str(path)!r}: variable {variables[0]!r} has dtype "
                f"{da.dtype}: expected numeric values"
            )
        return pd.DataFrame(da.values, columns=names)
    dims = {ds[v].dims for v in variables}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise InputError(
            f"table {str(path)!r}: data variables have dimensions "
            f"{sorted(str(d) for d in dims)}: expected variables sharing one sample "
            "dimension, or a single (sample, feature) variable"
        )
    return pd.DataFrame({v: ds[v].values for v in variables})


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV, Parquet or NetCDF table into a DataFrame (InputError on failure)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"dataset.path: table {str(path)!r} does not exist")
    name = path.name.lower()
    try:
        if name.endswith(CSV_SUFFIXES):
            delimiter, decimal = csv_format(path)
            # index_col=False: a column is never taken for the row index
            return pd.read_csv(path, sep=delimiter, decimal=decimal, index_col=False)
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path)
        if name.endswith(NETCDF_SUFFIXES):
            return _read_netcdf(path)
    except InputError:
        raise
    except Exception as exc:  # pandas/pyarrow/xarray raise many types for a bad file
        raise InputError(
            f"table {str(path)!r} cannot be read ({type(exc).__name__}: {exc}): "
            "expected a readable CSV, Parquet or NetCDF file"
        ) from exc
    raise InputError(
        f"dataset.path: table {str(path)!r} has an unknown format: expected one of "
        f"{', '.join(CSV_SUFFIXES[:1] + PARQUET_SUFFIXES + NETCDF_SUFFIXES)}"
    )


def _numpy_dtype(series: pd.Series) -> np.dtype:
    try:
        return np.dtype(series.dtype)
    except TypeError:  # pandas' own types (nullable Int64, ...) hold no fill value of note
        return np.dtype(np.float64)


def _feature_columns(
    path: Path, df: pd.DataFrame, split_column: str | None, drop: list[str]
) -> list[str]:
    """The feature columns of ``df``: every column but the split and dropped ones, each
    checked to be numeric."""
    columns = list(df.columns)
    missing = [c for c in drop + ([split_column] if split_column else []) if c not in columns]
    if missing:
        raise InputError(
            f"table {str(path)!r} has no column(s) {missing} "
            f"(dataset.split_column / dataset.drop_columns); columns are {columns}"
        )
    features = [c for c in columns if c != split_column and c not in drop]
    if not features:
        raise InputError(
            f"table {str(path)!r} has no feature columns left: expected at least "
            "one numeric column besides the split column and dropped columns"
        )
    bad = [
        c
        for c in features
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
    ]
    if bad:
        kinds = ", ".join(f"{c!r} ({df[c].dtype})" for c in bad)
        raise InputError(
            f"table {str(path)!r} has non-numeric column(s) {kinds}: expected numeric "
            "features only; name the split column with dataset.split_column "
            "(--split-column) and drop identifiers with dataset.drop_columns (--drop-columns)"
        )
    return features


def _feature_values(
    df: pd.DataFrame, features: list[str], nodata: float | None
) -> tuple[np.ndarray, list]:
    """The features as float64, ``nodata`` as NaN, and each column's numpy dtype."""
    x = df[features].to_numpy(dtype=np.float64)
    dtypes = [_numpy_dtype(df[c]) for c in features]
    if nodata is not None:
        for j, dtype in enumerate(dtypes):
            nd = value_in_dtype(nodata, dtype)  # float32 columns: nodata rounded like them
            if nd is not None:
                x[x[:, j] == float(nd), j] = np.nan
    return x, dtypes


def _table_info(path: Path, complete: np.ndarray, nodata, split_column, drop: list[str]) -> dict:
    """The source info of a table's samples (``complete``: the rows kept)."""
    reason = (
        "a missing or non-finite value"
        + (f" or dataset.nodata = {nodata!r}" if nodata is not None else "")
        + " in a feature column"
    )
    return {
        "table": str(path),
        **row_counts(complete, reason),
        "split_column": split_column,
        "dropped_columns": drop,
    }


def read_table(
    path: str | os.PathLike,
    split_column: str | None = None,
    drop_columns=(),
    nodata: float | None = None,
) -> Samples:
    """Samples of a table: numeric features as float32, plus the split column if given.

    ``nodata`` (``dataset.nodata``) marks missing values, compared in each column's type.

    Raises
    ------
    InputError
        Unreadable file, unknown format, a missing split/drop column, non-numeric feature
        columns (named), or no complete row.
    """
    path = Path(path)
    df = read_frame(path)
    df.columns = [str(c) for c in df.columns]
    drop = list(drop_columns or ())
    features = _feature_columns(path, df, split_column, drop)
    split = df[split_column].to_numpy() if split_column else None
    x, dtypes = _feature_values(df, features, nodata)
    complete = complete_rows(x, f"table {str(path)!r}")
    for j, (c, dtype) in enumerate(zip(features, dtypes, strict=True)):
        check_no_undeclared_nodata(
            x[complete, j].astype(dtype),
            f"table {str(path)!r} column {c!r}",
            among="complete rows",
            tag_hint=False,
        )
    return Samples(
        x=x[complete].astype(np.float32),
        feature_names=features,
        split=None if split is None else split[complete],
        index=np.flatnonzero(complete),
        info=_table_info(path, complete, nodata, split_column, drop),
    )
