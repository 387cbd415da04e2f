"""Tests of the spatial block split and the random split (datasets/split.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rasterio.transform import from_origin

from collapse_spectroscopy.datasets.split import (
    project_equal_area,
    random_split,
    spatial_block_split,
)
from dataset_helpers import assert_fails, small_stack

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]


def _random_cells(n=4000, seed=1):
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180, 180, n)
    lat = np.degrees(np.arcsin(rng.uniform(-0.95, 0.95, n)))
    area = rng.uniform(100, 300, n)
    return lon, lat, area


def test_spatial_split_is_deterministic_and_never_shares_a_block():
    lon, lat, area = _random_cells()
    a = spatial_block_split(lon, lat, area, block_km=500, seed=0)
    b = spatial_block_split(lon, lat, area, block_km=500, seed=0)
    c = spatial_block_split(lon, lat, area, block_km=500, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    # Recompute each cell's block independently: one split per block.
    x, y = project_equal_area(lon, lat)
    block = pd.Series(list(zip(np.floor(x / 5e5), np.floor(y / 5e5), strict=True)))
    per_block = pd.DataFrame({"block": block, "label": a.labels}).groupby("block")["label"]
    assert (per_block.nunique() == 1).all()
    assert len(a.blocks) == block.nunique()
    # Area shares hit the targets to within one block.
    areas = np.bincount(a.labels, weights=area, minlength=3) / area.sum()
    max_block = a.blocks["area_km2"].max() / area.sum()
    np.testing.assert_allclose(areas, [0.6, 0.2, 0.2], atol=max_block + 1e-12)


def test_random_split_counts_and_seed():
    r = random_split(1000, (0.6, 0.2, 0.2), seed=3)
    assert np.bincount(r.labels).tolist() == [600, 200, 200]
    np.testing.assert_array_equal(r.labels, random_split(1000, (0.6, 0.2, 0.2), seed=3).labels)


def test_bad_block_size_leaves_split_empty(tmp_path, capsys):
    # A regional 1° grid (10..46 E, 32..50 N): 5,000 km blocks leave a single block.
    small_stack(tmp_path / "tifs", transform=from_origin(10, 50, 1, 1))
    assert_fails(
        [
            "prepare",
            "--out",
            tmp_path / "o",
            "--source",
            "rasters",
            "--path",
            tmp_path / "tifs",
            "--block-km",
            "5000",
        ],
        capsys,
        tmp_path / "o",
        "split.block_km",
        "empty",
    )
