"""Tests of the arrays source (datasets/arrays.py): a .npy of images and an .npz with a
split and a sample shape, prepared as the workflow prepares them; bad files, each one
line before any training; dropped samples; the config checks of an arrays run.

Every expected prepared array is computed here with numpy from the input, independently
of the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from collapse_spectroscopy.config.checks import check_config
from collapse_spectroscopy.datasets.coarsen import CoarsenOptions
from collapse_spectroscopy.datasets.prepare import prepare
from collapse_spectroscopy.datasets.sources import SourceOptions
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import assert_fails, leftovers, run_cli
from workflow_helpers import planned_jobs, tiny_config, workdir

SPLITS = ("train", "val", "test")


def _images(n=300, seed=0) -> np.ndarray:
    """(n, 8, 8) float32 'images' whose pixels all vary, on very different scales."""
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 20.0, 64).reshape(8, 8)
    return (rng.normal(size=(n, 8, 8)) * scale + 100.0).astype(np.float32)


def _oracle(flat: np.ndarray, train: np.ndarray, mode: str = "features"):
    """Mean and std of ``dataset.standardize`` mode, from the training rows, by numpy
    (of the values as float32, the type a source holds its samples in)."""
    t = flat[train].astype(np.float32).astype(np.float64)
    if mode == "features":
        return t.mean(axis=0), t.std(axis=0)
    if mode == "global":
        return np.full(flat.shape[1], t.mean()), np.full(flat.shape[1], t.std())
    return np.zeros(flat.shape[1]), np.ones(flat.shape[1])


def _check_prepared(out, flat: np.ndarray, mode: str = "features"):
    """The prepared splits are ``flat``'s rows at the recorded positions, standardized by
    the oracle's statistics of the training rows; returns the dataset."""
    ds = load_prepared(out / "prepared.npz")
    mean, std = _oracle(flat, ds.index["train"], mode)
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(ds.std, std, rtol=1e-12)
    for name in SPLITS:
        expected = (flat[ds.index[name]].astype(np.float32).astype(np.float64) - mean) / std
        np.testing.assert_allclose(ds.split(name), expected, rtol=1e-5, atol=1e-5)
    positions = np.sort(np.concatenate([ds.index[s] for s in SPLITS]))
    np.testing.assert_array_equal(positions, np.arange(len(flat)))  # each sample once
    return ds


def test_npy_of_images_is_flattened_standardized_and_split_at_random(tmp_path, capsys):
    images = _images()
    path = tmp_path / "images.npy"
    np.save(path, images)
    argv = ["prepare", "--source", "arrays", "--path", path, "--fractions", "0.5,0.25,0.25"]
    rc, stdout, err = run_cli([*argv, "--out", tmp_path / "out"], capsys)
    assert rc == 0, err
    assert "prepared arrays: 300 samples x 64 features" in stdout
    ds = _check_prepared(tmp_path / "out", images.reshape(300, 64))
    assert ds.metadata["sample_shape"] == [8, 8]
    assert ds.feature_names[:3] == ["x_0_0", "x_0_1", "x_0_2"] and ds.feature_names[-1] == "x_7_7"
    assert [len(ds.index[s]) for s in SPLITS] == [150, 75, 75]
    summary = json.loads((tmp_path / "out" / "split_summary.json").read_text())
    assert summary["method"] == "random" and summary["parameters"]["seed"] == 0
    # the random split is the table's: the same keys give the same samples in each split
    table = tmp_path / "t.csv"
    pd.DataFrame(images.reshape(300, 64)[:, :3], columns=["a", "b", "c"]).to_csv(table, index=False)
    rc, _, err = run_cli(
        ["prepare", "--source", "table", "--path", table, "--fractions", "0.5,0.25,0.25"]
        + ["--out", tmp_path / "tab"],
        capsys,
    )
    assert rc == 0, err
    for name in SPLITS:
        np.testing.assert_array_equal(
            load_prepared(tmp_path / "tab" / "prepared.npz").index[name], ds.index[name]
        )


def _labels(kind: str, n: int) -> np.ndarray:
    codes = np.random.default_rng(1).permutation(
        np.repeat([0, 1, 2], [n - 2 * (n // 5), n // 5, n // 5])
    )
    if kind == "int":
        return codes.astype(np.int64)
    names = np.array(["train", "val", "test"])[codes]
    if kind == "bytes":
        return names.astype("S5")
    names[codes == 1] = "Validation"  # the aliases a table's split column takes
    return names


@pytest.mark.parametrize("kind", ["int", "str", "bytes"])
def test_npz_with_split_and_sample_shape(tmp_path, kind):
    flat = _images(200, seed=2).reshape(200, 64)  # stored flat: sample_shape says 8 x 8
    labels = _labels(kind, 200)
    path = tmp_path / "a.npz"
    np.savez(path, x=flat, split=labels, sample_shape=np.array([8, 8]))
    summary = prepare(tmp_path / "out", SourceOptions(source="arrays", path=[str(path)]))
    ds = _check_prepared(tmp_path / "out", flat)
    codes = _labels("int", 200)
    for i, name in enumerate(SPLITS):
        np.testing.assert_array_equal(ds.index[name], np.flatnonzero(codes == i))
    assert ds.metadata["sample_shape"] == [8, 8]
    assert summary["method"] == "array" and summary["splits"]["val"]["samples"] == 40


def test_the_given_shape_need_not_be_the_arrays(tmp_path):
    """x (n, 4, 4, 3) with sample_shape (3, 16): the shape recorded is the one given."""
    x = np.random.default_rng(3).normal(size=(120, 4, 4, 3))
    np.savez(tmp_path / "a.npz", x=x, sample_shape=np.array([3, 16], dtype=np.int32))
    prepare(tmp_path / "out", SourceOptions(source="arrays", path=[str(tmp_path / "a.npz")]))
    ds = _check_prepared(tmp_path / "out", x.reshape(120, 48))
    assert ds.metadata["sample_shape"] == [3, 16]
    assert ds.feature_names[:2] == ["x_0_0", "x_0_1"] and len(ds.feature_names) == 48


def _object_x(path):
    x = np.empty((10, 2), dtype=object)
    x[:] = 1.5
    np.save(path, x, allow_pickle=True)


BAD = {
    "object dtype": (
        _object_x,
        ".npy",
        ["array 'x' holds Python objects", "expected integers or floats"],
    ),
    "split of another length": (
        lambda p: np.savez(p, x=np.ones((10, 3)), split=np.zeros(9, dtype=int)),
        ".npz",
        ["split has shape (9,)", "expected one label per sample of x, shape (10,)"],
    ),
    "split labels beyond 0-2": (
        lambda p: np.savez(p, x=np.ones((10, 3)), split=np.array([0, 1, 2, 3, -1] * 2)),
        ".npz",
        ["split holds -1, 3", "expected 0 (train), 1 (val) or 2 (test)"],
    ),
    "unknown split strings": (
        lambda p: np.savez(p, x=np.ones((4, 3)), split=np.array(["train", "dev", "test", "x"])),
        ".npz",
        ["split holds 'dev', 'x'", "expected train, val or test"],
    ),
    "no x": (
        lambda p: np.savez(p, data=np.ones((10, 3))),
        ".npz",
        ["holds the arrays ['data']", "expected x (samples first)"],
    ),
    "a misspelt key": (
        lambda p: np.savez(p, x=np.ones((10, 3)), splits=np.zeros(10, dtype=int)),
        ".npz",
        ["holds the arrays ['splits', 'x']", "optionally split and sample_shape, no other"],
    ),
    "x of one dimension": (
        lambda p: np.save(p, np.arange(10.0)),
        ".npy",
        ["x has shape (10,)", "at least 2 dimensions"],
    ),
    "strings for x": (
        lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])),
        ".npy",
        ["x has dtype <U1", "expected integers or floats"],
    ),
    "a sample_shape of another size": (
        lambda p: np.savez(p, x=np.ones((10, 6)), sample_shape=np.array([2, 2])),
        ".npz",
        ["sample_shape is [2, 2]", "whose product is 6"],
    ),
    "no numpy file": (
        lambda p: p.write_text("a,b\n1,2\n"),
        ".npy",
        ["cannot be read", "expected a .npy or .npz file"],
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_arrays_file_is_one_line_before_any_work(tmp_path, capsys, case):
    write, suffix, needles = BAD[case]
    path = tmp_path / f"bad{suffix}"
    write(path)
    argv = ["prepare", "--out", tmp_path / "o", "--source", "arrays", "--path", path]
    err = assert_fails(argv, capsys, tmp_path / "o", f"arrays {str(path)!r}", *needles)
    assert err.count("\n") == 1, err
    assert err.startswith("collapse-spectroscopy prepare: error: "), err


def test_samples_with_a_non_finite_value_or_nodata_are_dropped_and_counted(tmp_path, capsys):
    images = _images(200, seed=4)
    images[3, 2, 5] = np.nan
    images[10, 0, 0] = np.inf
    images[11, 7, 7] = -np.inf
    images[50, 4, 4] = -999.0  # dataset.nodata below
    path = tmp_path / "images.npy"
    np.save(path, images)
    argv = ["prepare", "--source", "arrays", "--path", path, "--out", tmp_path / "out"]
    rc, stdout, err = run_cli([*argv, "--nodata=-999"], capsys)
    assert rc == 0, err
    assert "(4 of 200 rows dropped: a non-finite value or dataset.nodata = -999.0" in stdout
    summary = json.loads((tmp_path / "out" / "split_summary.json").read_text())
    assert summary["dropped_rows"]["count"] == 4 and summary["n_samples"] == 196
    ds = load_prepared(tmp_path / "out" / "prepared.npz")
    assert ds.metadata["source_info"]["n_rows_dropped_nonfinite"] == 4
    kept = np.setdiff1d(np.arange(200), [3, 10, 11, 50])
    np.testing.assert_array_equal(np.sort(np.concatenate(list(ds.index.values()))), kept)
    flat = images.reshape(200, 64)
    mean, std = _oracle(flat, ds.index["train"])
    np.testing.assert_allclose(ds.x_val, (flat[ds.index["val"]] - mean) / std, rtol=1e-5, atol=1e-5)


def test_a_split_given_with_dropped_samples_follows_them(tmp_path):
    x = _images(100, seed=5).reshape(100, 64)
    x[0, 0] = np.nan
    split = np.array([0] * 80 + [1] * 10 + [2] * 10)
    np.savez(tmp_path / "a.npz", x=x, split=split)
    prepare(tmp_path / "o", SourceOptions(source="arrays", path=[str(tmp_path / "a.npz")]))
    ds = load_prepared(tmp_path / "o" / "prepared.npz")
    np.testing.assert_array_equal(ds.index["train"], np.arange(1, 80))
    assert ds.metadata["sample_shape"] == [64]


def test_a_fill_value_beyond_1e30_asks_for_nodata(tmp_path):
    x = _images(100).reshape(100, 64)
    x[:5, 3] = np.float32(-3.4e38)
    np.save(tmp_path / "a.npy", x)
    with pytest.raises(
        InputError, match=r"5 values .* beyond ±1e\+30 .* dataset.nodata: -3.4e\+38"
    ):
        prepare(tmp_path / "o", SourceOptions(source="arrays", path=[str(tmp_path / "a.npy")]))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"path": []}, "source 'arrays' expects exactly one .npy or .npz file"),
        ({"path": ["gone.npz"]}, "arrays 'gone.npz' does not exist"),
        ({"split_column": "part"}, "uses its split array or a random split"),
        ({"drop_columns": ["a"]}, "source 'arrays' has arrays, not columns"),
    ],
)
def test_arrays_options_that_do_not_apply(tmp_path, options, message):
    np.save(tmp_path / "a.npy", _images(50))
    opts = {"source": "arrays", "path": [str(tmp_path / "a.npy")], **options}
    with pytest.raises(InputError, match=message):
        prepare(tmp_path / "o", SourceOptions(**opts))
    with pytest.raises(InputError, match="source 'arrays' has no grid to coarsen"):
        prepare(
            tmp_path / "o",
            SourceOptions(source="arrays", path=[str(tmp_path / "a.npy")]),
            coarsen=CoarsenOptions(2),
        )
    assert leftovers(tmp_path / "o") == []


def test_the_config_checks_an_arrays_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    np.save(tmp_path / "a.npy", _images(20))

    def run(**dataset):
        return {"dataset": {"source": "arrays", **dataset}, "scan": {"temperatures": [0.1]}}

    check_config({"runs": {"r": run(path="a.npy", standardize="global")}})
    for dataset, message in [
        ({}, "runs.r.dataset.path is required for source 'arrays'"),
        ({"path": "t.csv"}, "'t.csv': not an arrays file for source 'arrays'"),
        ({"path": "a.npy", "coarsen": 2}, "applies to raster sources only"),
        ({"path": "a.npy", "standardize": "pixels"}, "runs.r.dataset.standardize"),
    ]:
        with pytest.raises(InputError, match=message):
            check_config({"runs": {"r": run(**dataset)}})


def test_prepare_from_a_run_configuration_as_the_workflow_runs_it(tmp_path):
    """The command the workflow runs (`collapse-spectroscopy prepare --run-config`, a
    process of its own): an arrays run prepares; a bad file exits 2 with one line."""
    images = _images(150)
    images[:, 0, 0] = 7.0  # a constant pixel: global standardization handles it
    np.save(tmp_path / "images.npy", images)
    config = tmp_path / "prepare.json"
    dataset = {"source": "arrays", "path": str(tmp_path / "images.npy"), "standardize": "global"}
    config.write_text(json.dumps({"dataset": dataset, "split": {"seed": 3}}))
    command = [sys.executable, "-m", "collapse_spectroscopy.cli", "prepare"]
    command += ["--run-config", str(config)]
    proc = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    ds = _check_prepared(tmp_path / "out", images.reshape(150, 64), mode="global")
    assert ds.metadata["sample_shape"] == [8, 8]
    assert ds.metadata["split"]["parameters"]["seed"] == 3
    assert ds.metadata["standardization"]["standardize"] == "global"

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.ones((10, 3)), split=np.arange(10))
    config.write_text(json.dumps({"dataset": {"source": "arrays", "path": str(bad)}}))
    proc = subprocess.run([*command, "--out", str(tmp_path / "o2")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"arrays {str(bad)!r}: split holds 3, 4, 5, 6, 7 ..." in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_the_workflow_maps_an_arrays_run_per_sample(tmp_path):
    """An arrays run has no grid: the workflow plans its latent means as a table (rule
    maps_table, latent_means.csv), which is what the maps command writes for it, not the
    GeoTIFF of a raster run."""
    config = tiny_config([0.01, 0.1])
    config["runs"]["tiny"]["dataset"] = {"source": "arrays", "path": "images.npy"}
    wd = workdir(tmp_path, config)
    np.save(wd / "images.npy", _images(100))
    jobs = planned_jobs(wd)
    assert jobs["prepare"] == 1 and jobs["maps_table"] >= 1, jobs
    assert "maps_grid" not in jobs, jobs


def test_the_sample_shape_is_read_from_the_headers(tmp_path):
    """What the workflow's check of a custom model reads before prepare: the shape of one
    sample, from a .npy's or an .npz's header (a given sample_shape wins); None for a
    file that cannot tell (prepare then names the problem)."""
    from collapse_spectroscopy.datasets.arrays import sample_shape_of

    np.save(tmp_path / "a.npy", np.zeros((7, 3, 4), dtype=np.float32))
    assert sample_shape_of(tmp_path / "a.npy") == [3, 4]
    np.savez(tmp_path / "b.npz", x=np.zeros((7, 12), dtype=np.float32))
    assert sample_shape_of(tmp_path / "b.npz") == [12]
    np.savez(tmp_path / "c.npz", x=np.zeros((7, 12)), sample_shape=np.array([3, 4]))
    assert sample_shape_of(tmp_path / "c.npz") == [3, 4]
    (tmp_path / "d.npz").write_text("not a zip")
    assert sample_shape_of(tmp_path / "d.npz") is None
    np.save(tmp_path / "e.npy", np.zeros(7))
    assert sample_shape_of(tmp_path / "e.npy") is None
