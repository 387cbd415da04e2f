"""``collapse-spectroscopy refine`` and the ``--refined`` records of ``spectra`` and
``figures`` (docs/science.md §4.9), on scan points of the analytic equilibrium."""

import json

import pytest

from analytic_scan import point, train_equilibrium
from collapse_spectroscopy.analysis.refine import refine_round
from collapse_spectroscopy.analysis.spectra import scan_arrays
from collapse_spectroscopy.cli import main
from collapse_spectroscopy.store import scanfile
from synthetic_gaussian import gaussian_splits

SPECTRUM = (0.45, 0.25, 0.15, 0.08, 0.045, 0.02, 0.005, 0.0)
GRID = [0.003, 0.03, 0.3, 0.7]


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """One analytic scan-point file per temperature of GRID (seed 0)."""
    folder = tmp_path_factory.mktemp("points")
    xtr, _, _, _, _ = gaussian_splits(SPECTRUM, sizes=(4000, 10, 10), seed=1)
    paths = []
    for i, t in enumerate(GRID):
        path = folder / f"p{i}.nc"
        scanfile.write(point(train_equilibrium(xtr, t, 8), t, xtr, xtr), path)
        paths.append(path)
    return paths


def test_refine_records_the_round_of_its_points(points, tmp_path):
    out = tmp_path / "refine_round_2.json"
    assert main(["refine", *map(str, points), "--out", str(out), "--round", "2"]) == 0
    record = json.loads(out.read_text())
    t, rho, _ = scan_arrays(scanfile.gather(points))
    assert {k: record[k] for k in ("added", "brackets")} == json.loads(
        json.dumps(refine_round(t, rho, 0.05, 2))
    )
    assert record["round"] == 2 and record["points_per_mode"] == 2  # the schema's default
    assert record["scan_temperatures"] == GRID
    assert len(record["added"]) >= 2  # at least one bracket, two points in it


def test_spectra_summarizes_the_rounds(points, tmp_path):
    scan = tmp_path / "scan.nc"
    scanfile.write(scanfile.gather(points), scan)
    records = []
    for i in (1, 2):
        records.append(tmp_path / f"r{i}.json")
        main(["refine", *map(str, points), "--out", str(records[-1]), "--round", str(i)])
    summary = tmp_path / "summary.json"
    args = ["spectra", str(scan), "--out", str(tmp_path / "s.csv"), "--summary", str(summary)]
    assert main([*args, "--refined", *map(str, records)]) == 0
    block = json.loads(summary.read_text())["refinement"]
    n = len(json.loads(records[0].read_text())["added"])
    assert [(r["round"], r["added"]) for r in block["rounds"]] == [(1, n), (2, n)]
    assert block["added"] == 2 * n
    for bracket in block["bracket"].values():  # each a pair of neighbouring grid points
        assert [bracket["low"], bracket["high"]] in [GRID[i : i + 2] for i in range(3)]
        assert bracket["ratio"] == pytest.approx(bracket["high"] / bracket["low"])
    # without --refined, no block: an unrefined run's summary is as it was
    assert main(args) == 0
    assert "refinement" not in json.loads(summary.read_text())


def test_a_bad_record_is_one_line(points, tmp_path, capsys):
    scan = tmp_path / "scan.nc"
    scanfile.write(scanfile.gather(points), scan)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"round": 1}))
    args = ["spectra", str(scan), "--out", str(tmp_path / "s.csv")]
    assert main([*args, "--refined", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--refined" in err and "keys round, added" in err
