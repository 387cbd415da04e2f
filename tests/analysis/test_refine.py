"""Adaptive refinement (docs/science.md §4.9) against the analytic mean-field ``rho(T)``.

The oracle is the exact equilibrium (``analysis/equilibrium.py``) of the synthetic
source's declared spectrum: there the crossing threshold of rank ``k`` is exactly
``(1 - rho_min) lambda_k / V``, and every error of the measured one is the grid's (the
chord of ``rho(log T)`` and the kink at ``T_k``), which is what refinement must shrink.
"""

import numpy as np
import pytest

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.analysis.refine import (
    NEAR,
    bracket_points,
    label_digits,
    refine_round,
    refinement_summary,
)
from collapse_spectroscopy.analysis.thresholds import crossing_threshold
from collapse_spectroscopy.config.grid import scan_temperatures
from collapse_spectroscopy.datasets.synthetic import SPECTRUM

RHO_MIN = 0.05
TK = np.array([s for s in SPECTRUM if s > 0])  # the 7 modes with a threshold
EXACT = (1 - RHO_MIN) * TK  # where the exact rho_k = 1 - T/T_k crosses rho_min


def crossing_errors(temps) -> np.ndarray:
    """Each rank's crossing threshold on the analytic curves over ``temps``, relative to
    its exact value (NaN for a crossing outside the scan)."""
    rho = equilibrium.signal_fraction(TK, temps)
    found = [crossing_threshold(temps, rho[:, k], RHO_MIN).threshold for k in range(TK.size)]
    return np.array(found) / EXACT - 1


def refined(grid, rounds: int, per_mode: int):
    """The grid's temperatures and those ``rounds`` rounds add on the analytic curves;
    also each round's record."""
    temps = np.array(scan_temperatures(grid))
    records = []
    for i in range(1, rounds + 1):
        rho = equilibrium.signal_fraction(TK, temps)
        records.append({"round": i, **refine_round(temps, rho, RHO_MIN, per_mode)})
        temps = np.concatenate([temps, [a["T"] for a in records[-1]["added"]]])
    return temps, records


# 8 log-spaced points over the synthetic spectrum's thresholds (0.45 .. 0.005): all 7
# crossings inside, about 3.5 points per decade
COARSE = {"min": 0.003, "max": 0.7, "num": 8}


def test_two_rounds_on_an_8_point_grid_put_every_crossing_within_2_percent():
    """The issue's requirement (2 %, not tuned: the 95 % seed intervals of a threshold are
    0.6-1.0 %, §4.8, so the grid's error should fall below about twice that). On the
    analytic curves the rounds' points are all there is: measured 0.23 % after two rounds
    of 2 points, from 51 % on the grid alone."""
    before = crossing_errors(np.array(scan_temperatures(COARSE)))
    assert np.all(np.isfinite(before))  # every crossing inside the scan
    assert np.max(np.abs(before)) > 0.2  # the coarse grid alone is far off: a real test
    temps, records = refined(COARSE, rounds=2, per_mode=2)
    after = crossing_errors(np.sort(temps))
    assert np.max(np.abs(after)) < 0.02, after
    # each round asks for 2 points per crossing bracket; ranks sharing one share them
    for record in records:
        asked = {(b["low"], b["high"]) for b in record["brackets"]}
        assert len(record["added"]) == 2 * len(asked)


def test_a_6_per_decade_grid_is_off_by_up_to_16_percent_and_one_round_fixes_it():
    """The paper's grid density (6 per decade): 0.99-1.16 of the exact crossing, as the
    issue says; one round of 2 points brings it under the 2 % of the test above."""
    grid = {"min": 0.001, "max": 1.0, "num": 19}
    before = crossing_errors(np.array(scan_temperatures(grid)))
    assert 0.1 < np.nanmax(before) < 0.2
    temps, _ = refined(grid, rounds=1, per_mode=2)
    assert np.nanmax(np.abs(crossing_errors(np.sort(temps)))) < 0.02


def test_bisection_halves_every_bracket():
    """points_per_mode 1 bisects (in log T); 2 splits into thirds: each round's bracket of
    a rank is 1/(M+1) of the one before in log T, up to the labels' rounding (under 1 % of
    a step, label_digits)."""
    for per_mode in (1, 2):
        temps, records = refined(COARSE, rounds=2, per_mode=per_mode)
        before = {b["rank"]: np.log(b["high"] / b["low"]) for b in records[0]["brackets"]}
        rho = equilibrium.signal_fraction(TK, temps)
        final = refinement_summary(records, temps, rho, RHO_MIN)["bracket"]
        for rank, width in before.items():
            ratio = np.log(final[rank]["ratio"]) / width
            assert ratio == pytest.approx((per_mode + 1) ** -2, rel=0.02), (per_mode, rank)


def test_a_rerun_adds_the_same_points_and_depends_on_which_bracket_only():
    """Stable: the same points give the same record; noise that moves a crossing inside
    its bracket leaves the added temperatures as they were."""
    temps = np.array(scan_temperatures(COARSE))
    rho = equilibrium.signal_fraction(TK, temps)
    first = refine_round(temps, rho, RHO_MIN, 2)
    assert refine_round(temps, rho.copy(), RHO_MIN, 2) == first
    noisy = np.clip(rho + np.random.default_rng(0).normal(0, 0.005, rho.shape), 0, 1)
    again = refine_round(temps, noisy, RHO_MIN, 2)
    moved = [b["crossing"] for b in again["brackets"]]
    assert not np.allclose(moved, [b["crossing"] for b in first["brackets"]], rtol=1e-4)
    assert [(b["low"], b["high"]) for b in again["brackets"]] == [
        (b["low"], b["high"]) for b in first["brackets"]
    ]
    assert again["added"] == first["added"]


def test_seeds_share_the_points_of_the_seed_mean_curve():
    """Two seeds whose rho_k straddle rho_min differently: the bracket is the seed mean's,
    one set of temperatures for both."""
    temps = np.array([0.01, 0.1, 1.0])
    t = np.repeat(temps, 2)  # (T, seed) points, seeds 0 and 1
    # seed 0 crosses between 0.1 and 1, seed 1 between 0.01 and 0.1; the mean (0.06) at
    # 0.1 is above rho_min: the mean crosses between 0.1 and 1
    rho = np.array([[0.9], [0.9], [0.1], [0.02], [0.0], [0.0]])
    record = refine_round(t, rho, RHO_MIN, 1)
    assert record["brackets"][0]["low"] == 0.1 and record["brackets"][0]["high"] == 1.0
    assert [a["T"] for a in record["added"]] == [float(f"{np.sqrt(0.1):.4g}")]


def test_points_already_in_the_scan_are_not_added_and_shared_ones_merge():
    temps = np.array([0.01, 0.1, 1.0])
    mid = bracket_points(0.1, 1.0, 1)[0]  # 0.3162
    rho = np.array([[0.9, 0.8], [0.5, 0.4], [0.0, 0.0]])  # both ranks cross in [0.1, 1]
    record = refine_round(temps, rho, RHO_MIN, 1)
    assert record["added"] == [{"T": mid, "ranks": [1, 2]}]  # one point for both ranks
    # a scan that already holds that temperature (to within NEAR) gets nothing new there
    near = np.array([0.01, 0.1, mid * (1 + NEAR / 2), 1.0])
    rho = np.array([[0.9, 0.8], [0.5, 0.4], [0.3, 0.2], [0.0, 0.0]])
    added = refine_round(near, rho, RHO_MIN, 1)["added"]
    assert all(abs(a["T"] / mid - 1) > NEAR for a in added)
    # no crossing inside the scan (still active at the hottest point): nothing to add
    assert refine_round(temps, np.full((3, 1), 0.9), RHO_MIN, 2) == {"added": [], "brackets": []}


@pytest.mark.parametrize("low, high, per_mode", [(0.1, 1.0, 2), (0.2, 0.2001, 3), (1e-6, 3e-6, 1)])
def test_labels_are_short_and_move_a_point_by_under_1_percent_of_a_step(low, high, per_mode):
    step = np.log(high / low) / (per_mode + 1)
    points = bracket_points(low, high, per_mode)
    exact = low * np.exp(step * np.arange(1, per_mode + 1))
    assert np.all(np.abs(np.log(np.array(points) / exact)) < 0.01 * step)
    # each label has at most label_digits significant digits: short file names
    assert all(float(f"{p:.{label_digits(step)}g}") == p for p in points)
    assert label_digits(np.log(10) / 6) == 4  # a grid-like step keeps the grid's 4 digits
