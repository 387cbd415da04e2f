"""Tests of stacking layers into samples (datasets/stack.py): cells valid in every
layer, cell areas on the ellipsoid and on projected grids, and the undeclared-nodata rule
(a fill value no nodata tag declares stops the run until ``dataset.nodata`` names it).

Everything runs offline on small GeoTIFFs written by the tests.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.transform import from_origin

from collapse_spectroscopy.datasets.rasters import (
    layers_from_paths,
    read_stack,
    value_in_dtype,
)
from collapse_spectroscopy.datasets.split import project_equal_area
from collapse_spectroscopy.datasets.stack import (
    row_areas_km2_geographic,
    stack_samples,
    undeclared_nodata,
)
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import assert_fails, run_cli, small_stack, write_tif

WGS84_AREA_KM2 = 510_065_621.724_088_5  # surface of the WGS 84 ellipsoid

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]


def test_stack_keeps_cells_valid_in_every_layer(tmp_path):
    paths, land = small_stack(tmp_path)
    samples = stack_samples(read_stack(layers_from_paths(paths)))
    expected = land.copy()
    expected[0, :5] = False
    assert samples.n == expected.sum()
    assert samples.x.dtype == np.float32 and samples.x.shape == (expected.sum(), 4)
    assert np.all(np.isfinite(samples.x)) and np.all(samples.x > -9000)
    # Cell centres of the 10° grid, row-major from the north-west.
    rows, cols = np.nonzero(expected)
    np.testing.assert_allclose(samples.lat, 85.0 - 10.0 * rows)
    np.testing.assert_allclose(samples.lon, -175.0 + 10.0 * cols)


def test_cell_areas_on_the_ellipsoid():
    """Per-row areas sum to the WGS 84 surface; a row's area matches a fine pyproj polygon."""
    geod = pyproj.Geod(ellps="WGS84")
    for res in (10.0, 2.0, 1.0 / 6.0):
        h, w = int(round(180 / res)), int(round(360 / res))
        rows = row_areas_km2_geographic(from_origin(-180, 90, res, res), h, geod)
        np.testing.assert_allclose(rows.sum() * w, WGS84_AREA_KM2, rtol=1e-6)
        assert np.all(rows > 0)
    # One 10° x 10° cell at 40..50 N against a densely outlined polygon.
    lon = np.concatenate([np.linspace(0, 10, 200), np.linspace(10, 0, 200)])
    lat = np.concatenate([np.full(200, 50.0), np.full(200, 40.0)])
    ref = abs(geod.polygon_area_perimeter(lon, lat)[0]) / 1e6
    rows = row_areas_km2_geographic(from_origin(-180, 90, 10, 10), 18, geod)
    assert rows[4] == pytest.approx(ref, rel=1e-5)


def test_projected_grid_areas_and_coordinates(tmp_path):
    """A grid in an equal-area CRS: 100 km cells are 10,000 km²; centres go back to lon/lat."""
    t = from_origin(-1_000_000, 1_000_000, 100_000, 100_000)
    a = np.arange(400, dtype=np.float32).reshape(20, 20)
    path = write_tif(tmp_path / "ea.tif", a, transform=t, crs="EPSG:6933")
    s = stack_samples(read_stack(layers_from_paths([path])))
    np.testing.assert_allclose(s.area_km2, 10_000.0, rtol=1e-6)
    x, y = project_equal_area(s.lon, s.lat)
    np.testing.assert_allclose(x[0], -950_000, atol=1e-3)
    np.testing.assert_allclose(y[0], 950_000, atol=1e-3)


def test_undeclared_float32_sentinel_stops_until_declared(tmp_path, capsys):
    """GeoTIFFs whose -3.4e38 fill has no nodata tag: an error naming layer and value,
    then, declared with --nodata (dataset.nodata), exactly the run of tagged files."""
    fill = float(np.float32(-3.4e38))
    small_stack(tmp_path / "untagged", fill=fill, nodata=None)
    small_stack(tmp_path / "tagged", fill=fill, nodata=fill)
    with rasterio.open(tmp_path / "untagged" / "lay_1.tif") as ds:
        assert ds.nodata is None  # really undeclared in the file
    out = tmp_path / "o"
    argv = ["prepare", "--out", out, "--source", "rasters", "--block-km", "2000"]
    err = assert_fails(
        [*argv, "--path", tmp_path / "untagged"],
        capsys,
        out,
        "lay_1.tif",
        "-3.4e+38",
        "|x| > 1e+30",
        "dataset.nodata: -3.4e+38",
        "--nodata=-3.4e+38",
    )
    assert err.count("\n") == 1, err  # one line
    rc, _, err = run_cli([*argv, "--path", tmp_path / "untagged", "--nodata=-3.4e38"], capsys)
    assert rc == 0, err
    declared = load_prepared(out / "prepared.npz")
    rc, _, err = run_cli([*argv, "--path", tmp_path / "tagged", "--out", tmp_path / "t"], capsys)
    assert rc == 0, err
    tagged = load_prepared(tmp_path / "t" / "prepared.npz")
    np.testing.assert_array_equal(declared.x_train, tagged.x_train)
    np.testing.assert_array_equal(declared.std, tagged.std)
    assert np.all(declared.std < 10)  # the layers' own spread (~1.1), not 1.5e38


def test_undeclared_shared_fill_value_stops(tmp_path, capsys):
    """-9999 on 40 % of the cells, no tag: the minimum set apart from the data."""
    small_stack(tmp_path / "tifs", fill=-9999.0, nodata=None)
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", tmp_path / "tifs"],
        capsys,
        tmp_path / "o",
        "lay_1.tif",
        "hold -9999.0 (the minimum, set apart",
        "--nodata=-9999.0",
    )


def test_undeclared_nodata_rule():
    rng = np.random.default_rng(0)
    temperature = rng.normal(10, 8, 2000).astype(np.float32)
    precipitation = rng.uniform(0, 11_000, 2000)
    for x in (temperature, precipitation):
        assert undeclared_nodata(x) is None
        y = x.copy()
        y[:40] = -9999  # 2 % of the cells
        value, count, _ = undeclared_nodata(y)
        assert value == -9999 and count == 40
        y[:21] = x[:21]  # 19 of 2000 cells: under 1 %, could be a real cluster
        assert undeclared_nodata(y) is None
    # float64's fill, uint8's 255 above percentages
    wide = precipitation.copy()
    wide[5] = -np.finfo(np.float64).max
    assert undeclared_nodata(wide)[1] == 1
    percent = rng.integers(0, 101, 2000).astype(np.uint8)
    percent[:100] = 255
    assert undeclared_nodata(percent)[0] == 255
    # genuine data left alone: zero-inflated amounts, a few categories, a constant
    zeros = rng.uniform(20, 30, 2000)
    zeros[:1000] = 0
    assert undeclared_nodata(zeros) is None
    assert undeclared_nodata(rng.integers(0, 3, 2000)) is None
    assert undeclared_nodata(np.full(100, 7.0)) is None
    # a nodata value in a layer's own type
    assert value_in_dtype(-3.4e38, np.float32) == np.float32(-3.4e38)
    assert value_in_dtype(-1e39, np.float32) is None  # would overflow to -inf
    assert value_in_dtype(-9999, np.uint8) is None and value_in_dtype(0.5, np.int16) is None
    assert value_in_dtype(-9999, np.int16) == -9999
