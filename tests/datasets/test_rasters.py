"""Tests of the raster reader (datasets/rasters.py): layer order from a folder, a
list or a zip archive, and the bad layers it refuses (different grids, several bands, no
CRS, all nodata, a missing file, a truncated or corrupt archive).

Everything runs offline on small GeoTIFFs written by the tests.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from collapse_spectroscopy.datasets import worldclim
from collapse_spectroscopy.datasets.rasters import folder_layers, layers_from_paths
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import assert_fails, run_cli, small_stack, write_tif

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]


def test_folder_natural_sort_and_names(tmp_path):
    small_stack(tmp_path)
    names = [lay.name for lay in folder_layers(tmp_path)]
    assert names == ["lay_1", "lay_2", "lay_9", "lay_10"]


def test_explicit_list_keeps_given_order(tmp_path):
    paths, _ = small_stack(tmp_path)
    layers = layers_from_paths([paths[2], paths[0]])
    assert [lay.name for lay in layers] == ["lay_10", "lay_1"]


def test_zip_reads_exactly_as_folder(tmp_path, capsys):
    paths, _ = small_stack(tmp_path / "tifs")
    archive = tmp_path / "layers.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in reversed(paths):  # member order must not matter (natural sort)
            zf.write(p, arcname=f"inner/{p.name}")
    rc1, _, _ = run_cli(
        ["prepare", "--out", tmp_path / "a", "--source", "rasters", "--path", tmp_path / "tifs"],
        capsys,
    )
    rc2, _, _ = run_cli(
        ["prepare", "--out", tmp_path / "b", "--source", "rasters", "--path", archive], capsys
    )
    assert rc1 == rc2 == 0
    a, b = (
        load_prepared(tmp_path / "a" / "prepared.npz"),
        load_prepared(tmp_path / "b" / "prepared.npz"),
    )
    assert a.feature_names == b.feature_names == ["lay_1", "lay_2", "lay_9", "lay_10"]
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(name), b.split(name))
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert a.metadata["split"]["splits"] == b.metadata["split"]["splits"]


@pytest.mark.parametrize("kind", ["shape", "crs", "transform"])
def test_bad_layers_on_different_grids(tmp_path, capsys, kind):
    paths, _ = small_stack(tmp_path / "tifs", names=("a", "b"))
    data = np.ones((18, 36), dtype=np.float32)
    if kind == "shape":
        write_tif(tmp_path / "tifs" / "c.tif", np.ones((9, 36)))
        needle = "shape"
    elif kind == "crs":
        write_tif(tmp_path / "tifs" / "c.tif", data, crs="EPSG:4269")
        needle = "CRS"
    else:
        write_tif(tmp_path / "tifs" / "c.tif", data, transform=from_origin(-170, 90, 10, 10))
        needle = "transform"
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", tmp_path / "tifs"],
        capsys,
        tmp_path / "o",
        needle,
        "c.tif",
        "a.tif",
    )


def test_bad_multiband_or_ungeoreferenced_layer(tmp_path, capsys):
    small_stack(tmp_path / "tifs", names=("a",))
    with rasterio.open(
        tmp_path / "tifs" / "two.tif",
        "w",
        driver="GTiff",
        height=18,
        width=36,
        count=2,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(-180, 90, 10, 10),
    ) as ds:
        ds.write(np.ones((2, 18, 36), dtype=np.float32))
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", tmp_path / "tifs"],
        capsys,
        tmp_path / "o",
        "two.tif",
        "2 bands",
        "single-band",
    )
    (tmp_path / "tifs" / "two.tif").unlink()
    write_tif(tmp_path / "tifs" / "nocrs.tif", np.ones((18, 36)), crs=None)
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", tmp_path / "tifs"],
        capsys,
        tmp_path / "o",
        "nocrs.tif",
        "no CRS",
    )


def test_bad_all_nodata_layer(tmp_path, capsys):
    small_stack(tmp_path / "tifs", names=("a", "b"))
    write_tif(tmp_path / "tifs" / "empty.tif", np.full((18, 36), -9999.0))
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", tmp_path / "tifs"],
        capsys,
        tmp_path / "o",
        "empty.tif",
        "nodata",
    )


def test_bad_missing_layer(tmp_path, capsys):
    paths, _ = small_stack(tmp_path / "tifs", names=("a", "b"))
    assert_fails(
        [
            "prepare",
            "--out",
            tmp_path / "o",
            "--source",
            "rasters",
            "--path",
            paths[0],
            tmp_path / "tifs" / "nope.tif",
        ],
        capsys,
        tmp_path / "o",
        "nope.tif",
        "does not exist",
    )
    # A WorldClim folder lacking BIO12: the message names the missing file.
    folder = tmp_path / "wc"
    folder.mkdir()
    for name in worldclim.layer_names("10m"):
        if not name.endswith("_12.tif"):
            (folder / name).write_bytes(b"")
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "worldclim", "--path", folder],
        capsys,
        tmp_path / "o",
        "wc2.1_10m_bio_12.tif",
        str(folder),
    )


def test_bad_truncated_and_corrupt_zip(tmp_path, capsys):
    paths, _ = small_stack(tmp_path / "tifs", names=("a", "b"))
    archive = tmp_path / "layers.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in paths:
            zf.write(p, arcname=p.name)
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", truncated],
        capsys,
        tmp_path / "o",
        "truncated.zip",
        "truncated or corrupt",
    )
    # Flip bytes inside the first member's data: the CRC check catches it.
    corrupt = tmp_path / "corrupt.zip"
    buf = bytearray(data)
    buf[200:216] = bytes(16)
    corrupt.write_bytes(bytes(buf))
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "rasters", "--path", corrupt],
        capsys,
        tmp_path / "o",
        "corrupt.zip",
        "corrupt",
    )
