"""The pruning rule and the selection split of Dn*_k (spectra.pruning, spectra.select_on;
docs/science.md §9), against naive loops over hand-built scans."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from collapse_spectroscopy.analysis import spectra, thresholds
from collapse_spectroscopy.analysis.selection import Selection, resolve
from collapse_spectroscopy.errors import InputError

# three points, K = 2: the test split's levels and the validation split's disagree on which
# point is best for k = 1 (point 2 on test, point 0 on val) and agree for k = 2 (point 1)
TEST = np.array([[1.0, 0.50, 0.20], [1.0, 0.40, 0.05], [1.0, 0.30, 0.10]])
VAL = np.array([[1.0, 0.20, 0.30], [1.0, 0.45, 0.02], [1.0, 0.35, 0.12]])


def naive_best(report, choose):
    """For each k >= 1, the reported level at the first point with the lowest choosing
    level, by a plain loop."""
    out = [1.0]
    for k in range(1, report.shape[1]):
        best = None
        for p in range(report.shape[0]):
            if best is None or choose[p, k] < choose[best, k]:
                best = p
        out.append(report[best, k])
    return out


def test_paired_levels_choose_on_one_split_and_report_the_other():
    paired = np.stack([TEST, VAL], axis=-1)
    best = thresholds.best_distortions(paired)
    assert list(best) == naive_best(TEST, VAL) == [1.0, 0.50, 0.05]
    # choosing on test itself is the plain minimum
    assert list(thresholds.best_distortions(np.stack([TEST, TEST], -1))) == [1.0, 0.30, 0.05]
    # the selection bias: the test-chosen level is never above the val-chosen one
    assert np.all(thresholds.best_distortions(TEST) <= best)
    np.testing.assert_array_equal(thresholds.best_points(paired), [0, 0, 1])


def test_a_point_lacking_a_level_is_never_chosen():
    val = VAL.copy()
    val[0, 1] = np.nan  # point 0 has no validation level at k = 1: the next best is chosen
    best = thresholds.best_distortions(np.stack([TEST, val], -1))
    assert best[1] == TEST[2, 1]  # val 0.35 at point 2 beats 0.45 at point 1
    none = np.stack([TEST, np.full_like(VAL, np.nan)], -1)
    assert np.isnan(thresholds.best_distortions(none)[1:]).all()
    assert list(thresholds.best_points(none)) == [-1, -1, -1]


def test_selected_values_follow_the_chosen_point():
    rate = np.array([[5.0, 1.0], [6.0, 2.0], [7.0, 3.0]])
    assert list(thresholds.selected_values(np.stack([TEST, VAL], -1), rate)) == [5.0, 2.0]
    assert list(thresholds.selected_values(TEST, rate)) == [7.0, 2.0]


def scan_of(model=None, with_val=True, with_prior=True):
    """A gathered-scan lookalike of the three points (one seed, three temperatures)."""
    K = 2
    data = {
        "signal_fraction": (("T", "seed", "latent"), np.full((3, 1, K), 0.5)),
        "truncated_distortion": (("T", "seed", "k"), TEST[:, None, :]),
        "pca_ratio": ("mode", np.array([0.6, 0.4])),
    }
    if with_prior:
        data["truncated_distortion_prior"] = (("T", "seed", "k"), TEST[:, None, :] * 0.9)
    if with_val:
        data["truncated_distortion_val"] = (("T", "seed", "k"), VAL[:, None, :])
        data["truncated_distortion_prior_val"] = (("T", "seed", "k"), VAL[:, None, :] * 0.9)
    coords = {"T": [0.01, 0.1, 0.3], "seed": [0], "latent": [1, 2], "k": [0, 1, 2],
              "mode": [1, 2]}  # fmt: skip
    scan = xr.Dataset(data, coords=coords)
    if model:
        scan.attrs["model"] = json.dumps({"kind": model, "hidden": [8], "activation": "gelu"})
    return scan


RAN = np.ones(3, dtype=bool)


def test_the_summary_reports_the_chosen_levels():
    scan = scan_of()
    table, summary = spectra.summarize(scan, selection=Selection("zero", "val"))
    assert list(table["best_distortion"]) == naive_best(TEST, VAL)[1:]
    assert summary["selection"] == {"pruning": "zero", "select_on": "val", "note": ""}
    table, _ = spectra.summarize(scan, selection=Selection("prior", "test"))
    np.testing.assert_allclose(table["best_distortion"], [0.27, 0.045], rtol=1e-12)
    table, _ = spectra.summarize(scan)  # the paper's: zero, test
    assert list(table["best_distortion"]) == [0.30, 0.05]


def test_auto_is_test_for_the_linear_vae_and_val_for_a_nonlinear_model():
    assert resolve(scan_of(), "zero", "auto", RAN, "s.nc").select_on == "test"
    chosen = resolve(scan_of("mlp"), "zero", "auto", RAN, "s.nc")
    assert chosen.select_on == "val" and "nonlinear" in chosen.note
    # a nonlinear scan measured before the validation levels existed: test, and why
    older = resolve(scan_of("mlp", with_val=False), "zero", "auto", RAN, "'s.nc'")
    assert older.select_on == "test" and "collapse-spectroscopy measure" in older.note


def test_an_explicit_choice_the_scan_cannot_serve_is_one_line():
    with pytest.raises(InputError, match="select_on val: 's.nc' lacks truncated_distortion_val"):
        resolve(scan_of(with_val=False), "zero", "val", RAN, "'s.nc'")
    with pytest.raises(InputError, match="pruning prior: 's.nc' lacks truncated_distortion_prior"):
        resolve(scan_of(with_prior=False), "prior", "test", RAN, "'s.nc'")
    partial = scan_of()
    partial["truncated_distortion_val"][0, 0, 1] = np.nan  # one point measured before
    with pytest.raises(InputError, match="at some scan point"):
        resolve(partial, "zero", "val", RAN, "'s.nc'")
