"""Tests of tabular sources (datasets/table.py): CSV, Parquet and NetCDF tables, a split
column, dropped rows, non-numeric columns, undeclared fill values, and the advice for an id
column followed through the real workflow.

Everything runs offline on small tables written by the tests.
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.datasets.prepare import prepare
from collapse_spectroscopy.datasets.sources import SourceOptions
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import assert_fails, run_cli
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]


def _table(n=500, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    return pd.DataFrame({"f1": z[:, 0] * 3 + 1, "f2": z[:, 0] + z[:, 1], "f3": z[:, 2]})


@pytest.mark.parametrize("fmt", ["csv", "parquet", "nc", "nc2d"])
def test_table_formats_random_split(tmp_path, fmt, capsys):
    import xarray as xr

    df = _table()
    df.loc[3, "f2"] = np.nan  # incomplete row: dropped
    if fmt == "csv":
        path = tmp_path / "t.csv"
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        path = tmp_path / "t.parquet"
        df.to_parquet(path)
    elif fmt == "nc":
        path = tmp_path / "t.nc"
        # NetCDF3 (scipy engine): readable without h5py or netCDF4 installed.
        xr.Dataset({c: ("sample", df[c].to_numpy()) for c in df}).to_netcdf(path, engine="scipy")
    else:
        path = tmp_path / "t.nc"
        xr.Dataset(
            {"x": (("sample", "feature"), df.to_numpy())}, coords={"feature": list(df.columns)}
        ).to_netcdf(path, engine="scipy")
    rc, stdout, _ = run_cli(
        [
            "prepare",
            "--out",
            tmp_path / "out",
            "--source",
            "table",
            "--path",
            path,
            "--fractions",
            "0.5,0.25,0.25",
        ],
        capsys,
    )
    assert rc == 0, stdout
    ds = load_prepared(tmp_path / "out" / "prepared.npz")
    assert ds.feature_names == ["f1", "f2", "f3"]
    assert [len(ds.x_train), len(ds.x_val), len(ds.x_test)] == [250, 125, 124]
    assert ds.metadata["source_info"]["n_rows_dropped_nonfinite"] == 1
    # the dropped row is said in the log line and in split_summary.json, not only the npz
    assert "(1 of 500 rows dropped: a missing or non-finite value" in stdout
    summary = json.loads((tmp_path / "out" / "split_summary.json").read_text())
    assert summary["dropped_rows"]["count"] == 1 and summary["dropped_rows"]["of"] == 500
    assert (tmp_path / "out" / "split_map.png").is_file()
    assert not (tmp_path / "out" / "split_blocks.csv").exists()


def test_table_split_column(tmp_path, capsys):
    df = _table(90)
    df["part"] = ["train"] * 60 + ["Validation"] * 15 + ["test"] * 15
    df["id"] = [f"s{i}" for i in range(90)]
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    rc, _, err = run_cli(
        [
            "prepare",
            "--out",
            tmp_path / "out",
            "--source",
            "table",
            "--path",
            path,
            "--split-column",
            "part",
            "--drop-columns",
            "id",
        ],
        capsys,
    )
    assert rc == 0, err
    ds = load_prepared(tmp_path / "out" / "prepared.npz")
    assert [len(ds.x_train), len(ds.x_val), len(ds.x_test)] == [60, 15, 15]
    raw = df[["f1", "f2", "f3"]].to_numpy()
    np.testing.assert_allclose(ds.mean, raw[:60].mean(0))
    np.testing.assert_allclose(ds.x_test, (raw[75:] - ds.mean) / ds.std, rtol=1e-5, atol=1e-6)


def test_bad_table_non_numeric_columns(tmp_path, capsys):
    df = _table(20)
    df["site"] = [f"s{i}" for i in range(20)]
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "table", "--path", path],
        capsys,
        tmp_path / "o",
        "non-numeric",
        "'site'",
        "t.csv",
    )


def test_bad_split_column_values(tmp_path):
    df = _table(20)
    df["part"] = ["train"] * 10 + ["holdout"] * 10
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(InputError, match="holdout"):
        prepare(
            tmp_path / "o", SourceOptions(source="table", path=[str(path)], split_column="part")
        )
    assert not (tmp_path / "o").exists()


def test_table_undeclared_fill_and_declared_nodata(tmp_path, capsys):
    df = _table(200)
    df.loc[:19, "f2"] = -9999.0
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    argv = ["prepare", "--out", tmp_path / "o", "--source", "table", "--path", path]
    assert_fails(argv, capsys, tmp_path / "o", "column 'f2'", "-9999.0", "dataset.nodata")
    rc, stdout, err = run_cli([*argv, "--nodata", "-9999"], capsys)
    assert rc == 0, err
    assert "(20 of 200 rows dropped" in stdout and "dataset.nodata = -9999.0" in stdout


@pytest.mark.slow
def test_table_advice_names_real_config_keys(tmp_path, capsys):
    """The advice for an id column names keys the schema accepts, and following it
    through the real workflow (a path with a comma, too) drops the column."""
    df = _table(120)
    df.insert(0, "site", [f"s{i}" for i in range(120)])
    df.loc[7, "f3"] = np.nan
    path = tmp_path / "sites, 2024.csv"  # a comma: one path, not two
    df.to_csv(path, index=False)
    err = assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "table", "--path", path],
        capsys,
        tmp_path / "o",
        "'site'",
    )
    keys = set(re.findall(r"dataset\.(\w+)", err))
    assert keys == {"split_column", "drop_columns"}, err
    schema = settings.load_schema()
    assert keys <= set(schema["$defs"]["run"]["properties"]["dataset"]["properties"])

    config = tiny_config([0.1])
    config["runs"]["tiny"]["dataset"] = {
        "source": "table",
        "path": str(path),
        "drop_columns": ["site"],
    }
    wd = workdir(tmp_path / "wd", config)
    target = "results/tiny/data/prepared.npz"
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1", target],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = wd / "results" / "tiny" / "data"
    assert load_prepared(data / "prepared.npz").feature_names == ["f1", "f2", "f3"]
    summary = json.loads((data / "split_summary.json").read_text())
    assert summary["dropped_rows"]["count"] == 1 and summary["n_samples"] == 119
    log = (wd / "results" / "tiny" / "logs" / "prepare.log").read_text()
    assert "(1 of 120 rows dropped" in log
