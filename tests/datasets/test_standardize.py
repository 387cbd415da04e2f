"""Tests of ``dataset.standardize`` (datasets/standardize.py): features, global and none
against numpy computations of their own, for a table and for arrays; a constant feature
under each mode; and the files of a default run, which the key leaves as they were.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.datasets import standardize
from collapse_spectroscopy.datasets.prepare import prepare
from collapse_spectroscopy.datasets.sources import SourceOptions
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import assert_fails, run_cli

SPLITS = ("train", "val", "test")
MODES = ("features", "global", "none")


def test_the_modes_are_the_schemas():
    prop = settings.key_schema("dataset.standardize")
    assert list(standardize.MODES) == prop["enum"] == list(MODES)
    assert standardize.DEFAULT_MODE == prop["default"] == "features"


def _values(n=240, seed=0) -> np.ndarray:
    """(n, 4) features of very different means and scales, float64 values that float32
    holds exactly (a source holds its samples as float32)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 300.0] + [0.0, -5.0, 2.0, 1000.0]
    return x.astype(np.float32).astype(np.float64)


def _source(kind: str, x: np.ndarray, folder) -> SourceOptions:
    if kind == "table":
        path = folder / "t.csv"
        pd.DataFrame(x, columns=[f"f{j}" for j in range(x.shape[1])]).to_csv(path, index=False)
    else:
        path = folder / "a.npy"
        np.save(path, x)
    return SourceOptions(source=kind, path=[str(path)])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["table", "arrays"])
def test_each_mode_is_its_numpy_computation(tmp_path, kind, mode):
    x = _values()
    source = _source(kind, x, tmp_path)
    prepare(tmp_path / "out", source, standardize=mode)
    ds = load_prepared(tmp_path / "out" / "prepared.npz")
    train = x[ds.index["train"]]
    if mode == "features":
        mean, std = train.mean(axis=0), train.std(axis=0)
    elif mode == "global":
        mean, std = np.full(4, np.mean(train)), np.full(4, np.std(train))
    else:
        mean, std = np.zeros(4), np.ones(4)
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds.std, std, rtol=1e-12)
    assert ds.mean.shape == ds.std.shape == (4,)
    for name in SPLITS:
        expected = (x[ds.index[name]] - mean) / std
        np.testing.assert_allclose(ds.split(name), expected, rtol=1e-5, atol=1e-5)
    if mode == "features":  # today's behaviour: unit variance per feature on the training split
        np.testing.assert_allclose(ds.x_train.astype(np.float64).std(axis=0), 1.0, rtol=1e-5)
    doc = json.loads((tmp_path / "out" / "standardization.json").read_text())
    assert doc.get("standardize", "features") == mode
    assert ds.metadata["standardization"].get("standardize", "features") == mode


def test_a_default_run_writes_what_it_wrote_before_the_key(tmp_path):
    """With the default, nothing about the key enters the files, so a run prepared again
    writes the same bytes and its finished scan points (which know the prepared file by
    its digest) are kept; nor does a table get a sample_shape."""
    prepare(tmp_path / "out", _source("table", _values(), tmp_path))
    ds = load_prepared(tmp_path / "out" / "prepared.npz")
    assert ds.metadata["standardization"] == {"computed_on": "train", "ddof": 0}
    assert "sample_shape" not in ds.metadata
    doc = json.loads((tmp_path / "out" / "standardization.json").read_text())
    assert "standardize" not in doc


def test_a_constant_feature_is_one_line_that_names_global(tmp_path, capsys):
    x = _values()
    x[:, 2] = 4.0
    source = _source("table", x, tmp_path)
    argv = ["prepare", "--source", "table", "--path", source.path[0], "--out", tmp_path / "o"]
    err = assert_fails(
        argv,
        capsys,
        tmp_path / "o",
        "1 feature(s) ('f2') are constant over the training split",
        "use dataset.standardize: global",
    )
    assert err.count("\n") == 1, err
    rc, _, err = run_cli([*argv, "--standardize", "global"], capsys)
    assert rc == 0, err
    ds = load_prepared(tmp_path / "o" / "prepared.npz")
    assert np.all(np.isfinite(ds.x_train)) and np.ptp(ds.x_train[:, 2]) == 0


def test_many_constant_pixels_are_counted_not_listed(tmp_path):
    x = np.random.default_rng(1).normal(size=(200, 10, 10))
    x[:, 0, :] = 0.0  # a black top row
    np.save(tmp_path / "a.npy", x)
    source = SourceOptions(source="arrays", path=[str(tmp_path / "a.npy")])
    with pytest.raises(InputError, match=r"10 feature\(s\) \('x_0_0', .* 'x_0_4' and 5 more\)"):
        prepare(tmp_path / "o", source)
    for mode in ("global", "none"):
        prepare(tmp_path / "o", source, standardize=mode)
        assert np.all(np.isfinite(load_prepared(tmp_path / "o" / "prepared.npz").x_train))


def test_all_values_equal_is_an_error_for_global(tmp_path):
    np.save(tmp_path / "a.npy", np.full((50, 3), 2.5))
    source = SourceOptions(source="arrays", path=[str(tmp_path / "a.npy")])
    with pytest.raises(InputError, match="every value of the training split is 2.5"):
        prepare(tmp_path / "o", source, standardize="global")
    prepare(tmp_path / "o", source, standardize="none")  # x as it is: no scale to divide by


def test_an_unknown_mode_is_named(tmp_path, capsys):
    with pytest.raises(InputError, match="dataset.standardize = 'pixels' is unknown"):
        prepare(tmp_path / "o", SourceOptions(), standardize="pixels")
    assert not (tmp_path / "o").exists()
    rc, _, err = run_cli(["prepare", "--out", tmp_path / "o", "--standardize", "pixels"], capsys)
    assert rc == 2 and "invalid choice: 'pixels'" in err
