"""scripts/selection_grid.py: a nonlinear run's concentration under each pruning rule and
selection split (docs/science.md §9). Oracle: the hand-built three-point scan of
test_selection.py, whose chosen levels are known by hand (the naive loop there), run
through the real `collapse-spectroscopy spectra` command, and an autoencoder table whose
n(eps) is counted by hand."""

from __future__ import annotations

import importlib.util
import subprocess

import pandas as pd

from analysis.test_selection import scan_of
from workflow_helpers import ROOT


def grid_module():
    spec = importlib.util.spec_from_file_location(
        "selection_grid", ROOT / "scripts/selection_grid.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_choice_reports_its_own_levels_and_the_baseline_counts_its_own(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    scan_of("mlp").to_netcdf(run / "scan.nc")
    subprocess.run(
        ["collapse-spectroscopy", "spectra", str(run / "scan.nc"), "--out",
         str(run / "spectra.csv"), "--summary", str(run / "summary.json")],
        check=True, capture_output=True,
    )  # fmt: skip
    (run / "baselines").mkdir()
    # D_AE(1) = 0.2 reaches eps = 0.1 only at k = 2 (0.02); 0.001 never
    pd.DataFrame({"k": [1, 2], "distortion": [0.2, 0.02]}).to_csv(
        run / "baselines" / "autoencoder.csv", index=False
    )
    grid = grid_module()
    rows = {(r["pruning"], r["select_on"]): r for r in grid.grid_rows(run, tmp_path)}
    # by hand (test_selection.naive_best): rank 1 is 0.30 chosen on test, 0.50 chosen on
    # val; the prior rule is 0.9 of the zero rule's levels at every point
    assert rows["zero", "test"]["Dn*_1"] == "0.3"
    assert rows["zero", "val"]["Dn*_1"] == "0.5"
    assert rows["prior", "test"]["Dn*_1"] == "0.27"
    assert rows["prior", "val"]["Dn*_1"] == "0.45"
    assert rows["zero", "test"]["Dn*_2"] == rows["zero", "val"]["Dn*_2"] == "0.05"
    # Dn*_2 = 0.05 reaches 0.1 with 2 latents, and 0.03 not at all
    assert rows["zero", "val"]["n(0.1)"] == "2" and rows["zero", "val"]["n(0.03)"] == "-"
    refs = {r["curve"]: r for r in grid.reference_rows(run, None)}
    assert refs["autoencoder baseline"]["n(0.1)"] == "2"
    assert refs["autoencoder baseline"]["n(0.03)"] == "2"
    assert refs["autoencoder baseline"]["n(0.01)"] == "-"
    assert "k=1: 0.2" in capsys.readouterr().out
