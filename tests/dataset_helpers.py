"""Helpers of the dataset tests (tests/datasets/): small GeoTIFF stacks, the CLI run
in-process, and the check that a failed `prepare` says what it should and leaves nothing.

Also used by tests/workflow/test_readme_commands.py for its example layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from collapse_spectroscopy import cli


def write_tif(path, data, *, transform=None, crs="EPSG:4326", nodata=-9999.0):
    data = np.asarray(data, dtype=np.float32)
    h, w = data.shape
    transform = transform or from_origin(-180.0, 90.0, 360.0 / w, 180.0 / h)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=h,
        width=w,
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(data, 1)
    return Path(path)


def small_stack(
    folder,
    names=("lay_1", "lay_2", "lay_10", "lay_9"),
    shape=(18, 36),
    seed=0,
    transform=None,
    fill=-9999.0,
    nodata=-9999.0,
):
    """Correlated layers on a 10° global grid; ~40 % of cells ``fill`` (declared as the
    files' nodata tag ``nodata``, or not at all if None), some NaN in one layer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    land = rng.random(shape) < 0.6
    base = rng.normal(size=shape)
    paths = []
    for i, name in enumerate(names):
        a = (base + 0.5 * rng.normal(size=shape) + 10 * i).astype(np.float32)
        a[~land] = fill
        if i == 1:
            a[0, :5] = np.nan  # invalid in this layer only
        paths.append(write_tif(folder / f"{name}.tif", a, transform=transform, nodata=nodata))
    return paths, land


def run_cli(argv, capsys):
    """The CLI's exit status, stdout and stderr; a value argparse refuses (a schema bound,
    a choice) ends in its exit status 2 as on the command line."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def leftovers(out_dir: Path) -> list[str]:
    if not out_dir.exists():
        return []
    return sorted(p.name for p in out_dir.iterdir())


def assert_fails(argv, capsys, out_dir, *needles):
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert leftovers(out_dir) == [], leftovers(out_dir)
    return err
