"""Bad input and faults, probed (issue 20, item 8): each probe ends in one line naming the
key, file or value, loses nothing, and reruns cleanly. Each test here failed before the
change it comes with (the docstrings say how).
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_spectroscopy.cli import main
from collapse_spectroscopy.datasets.table import read_table
from collapse_spectroscopy.errors import InputError


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- a CSV written by a spreadsheet in a decimal-comma locale -------------------------------

# three features in a European spreadsheet's export: ';' between fields, ',' in numbers
SEMICOLON_CSV = "temp;rain;wind\n4,9;120,5;3,25\n5,1;80;-2,5\n-0,75;1,5e+2;0\n"
SEMICOLON_VALUES = [[4.9, 120.5, 3.25], [5.1, 80.0, -2.5], [-0.75, 150.0, 0.0]]


def test_semicolon_csv_with_decimal_commas_is_read_as_written(tmp_path):
    """Before: pandas split at ',' alone, took the extra fields for the row index, and the
    run trained on one feature ``temp;rain;wind`` of mean 4.9e15 (exit 0)."""
    path = tmp_path / "stations.csv"
    path.write_text(SEMICOLON_CSV)
    samples = read_table(path)
    assert samples.feature_names == ["temp", "rain", "wind"]
    # the oracle is the text itself; float32 is what the samples are kept in
    np.testing.assert_array_equal(samples.x, np.float32(SEMICOLON_VALUES))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a,b,c\n1,2,3,\n4,5,6,\n", "line 2 has 4 fields but the header has 3"),
        ("a;b;c\n1;2;3\n4;5\n", "line 3 has 2 fields but the header has 3"),
    ],
    ids=["trailing-comma", "short-row"],
)
def test_a_row_of_another_width_than_the_header_is_refused(tmp_path, capsys, text, where):
    """Before: a trailing comma on each row gave the misleading ``no row has finite values
    in all features`` (pandas made the first column the index and read an empty last
    column); a short row was filled with NaN and dropped without a word."""
    path = tmp_path / "t.csv"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["prepare", "--source", "table", "--path", str(path), "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"collapse-spectroscopy prepare: error: table {str(path)!r}: {where}")
    assert line.endswith("expected as many fields in every row as in the header")
    assert not out.exists()


def test_a_tab_separated_gzip_is_read_with_decimal_points(tmp_path):
    """A tab-delimited compressed file with decimal points: the points stay points."""
    import gzip

    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("x\ty\n1.5\t2\n-3.25\t4e-1\n")
    samples = read_table(path)
    assert samples.feature_names == ["x", "y"]
    np.testing.assert_array_equal(samples.x, np.float32([[1.5, 2.0], [-3.25, 0.4]]))


def test_an_empty_csv_is_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n")
    with pytest.raises(InputError, match="is empty: expected a header and rows"):
        read_table(path)


# --- a layer edited in place reruns the workflow from prepare ---------------------------------


def _write_layers(folder, n_layers=3, seed=0):
    """``n_layers`` random single-band GeoTIFFs on a global 4-degree grid."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n_layers):
        band = rng.normal(size=(45, 90)).astype(np.float32)
        profile = dict(driver="GTiff", height=45, width=90, count=1, dtype="float32")
        profile |= dict(crs="EPSG:4326", transform=from_origin(-180, 90, 4, 4))
        with rasterio.open(folder / f"layer_{i}.tif", "w", **profile) as ds:
            ds.write(band, 1)


def _edit_in_place(path):
    """Rewrite one value of a GeoTIFF inside the same file (the same inode)."""
    import rasterio

    inode = path.stat().st_ino
    with rasterio.open(path, "r+") as ds:
        band = ds.read(1)
        band[0, 0] += 1
        ds.write(band, 1)
    assert path.stat().st_ino == inode


DATA_CHANGES = {
    # dataset section, the file edited in place (from the working directory)
    "rasters folder": ({"source": "rasters", "path": "layers/"}, "layers/layer_1.tif"),
    "rasters files": (
        {"source": "rasters", "path": ["layers/layer_0.tif", "layers/layer_1.tif"]},
        "layers/layer_1.tif",
    ),
    "table": ({"source": "table", "path": "samples.csv"}, "samples.csv"),
}


def _data_change_workdir(tmp_path, dataset):
    import subprocess

    from workflow_helpers import tiny_config, workdir

    config = tiny_config([0.1])
    config["runs"]["tiny"]["dataset"] = dataset
    wd = workdir(tmp_path / "wd", config)
    _write_layers(wd / "layers")
    rows = np.random.default_rng(1).normal(size=(300, 3))
    (wd / "samples.csv").write_text(
        "a,b,c\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows)
    )

    def snakemake(*args):
        from workflow_helpers import ROOT, SNAKEMAKE

        cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1"]
        return subprocess.run([*cmd, *args], capture_output=True, text=True)

    return wd, snakemake


@pytest.mark.parametrize(
    ("case", "triggers"),
    [(case, []) for case in DATA_CHANGES] + [("rasters folder", ["--rerun-triggers", "mtime"])],
    ids=[*DATA_CHANGES, "rasters folder, mtime"],
)
def test_a_data_file_edited_in_place_reruns_prepare(tmp_path, case, triggers):
    """Before: the files of dataset.path were no inputs of `prepare`, and after a layer was
    replaced Snakemake said "Nothing to be done", even with ``--rerun-triggers mtime``."""
    dataset, edited = DATA_CHANGES[case]
    wd, snakemake = _data_change_workdir(tmp_path, dataset)
    target = "results/tiny/data/prepared.npz"
    proc = snakemake(target)
    assert proc.returncode == 0, proc.stderr
    proc = snakemake("-n", target, *triggers)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    if edited.endswith(".tif"):
        _edit_in_place(wd / edited)
    else:  # a table: one value changed, the file rewritten where it is
        path = wd / edited
        path.write_text(path.read_text().replace(",", ",1", 1))
    # the edit comes after prepare wrote its outputs (the file system's clock): no sleep
    proc = snakemake("-n", target, *triggers)
    assert proc.returncode == 0, proc.stderr
    assert "rule prepare:" in proc.stdout, proc.stdout
    assert "updated input files" in proc.stdout.lower(), proc.stdout
