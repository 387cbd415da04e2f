"""Hysteresis of a sweep (docs/science.md §5.9): the ratio of the warming and cooling
crossing thresholds, rank by rank.

Oracles:

- **The linear VAE has none.** Its equilibrium ``rho_k(T)`` (the analytic mean-field law,
  :mod:`.analysis.equilibrium`) is one function of ``T`` whatever the start, so two sweeps
  that both reach it give a ratio of 1 for every rank with a crossing in the scan, to
  round-off (the two crossings are the same arithmetic on the same numbers; 1e-12 allows
  for nothing but that).
- **A known shift is read exactly.** A cooling curve that is the warming curve delayed by
  a factor ``f`` in ``T`` (``rho_cool(T) = rho_warm(T * f)``), sampled on a geometric grid
  whose step is ``f``'s ``m``-th root, is the warming curve moved by ``m`` grid points, so
  its linear-in-log-T crossing is the warming one divided by ``f`` exactly (1e-9: the
  logarithms of a grid built by repeated multiplication agree to ~1e-15 per step).
"""

import numpy as np
import pytest

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.analysis.hysteresis import (
    both_branches,
    hysteresis_columns,
    hysteresis_summary,
)

SPECTRUM = np.array([0.45, 0.25, 0.15, 0.1, 0.05])  # lambda_k / V, sums to 1
RHO_MIN = 0.05


def curves(temperatures, seeds=2):
    """(P,) temperatures and (P, K) ranked rho of the analytic equilibrium, each
    temperature once per seed (as a gathered scan flattens them)."""
    t = np.repeat(temperatures, seeds)
    rho = np.stack([equilibrium.signal_fraction(SPECTRUM, x) for x in t])
    return t, rho


def test_the_linear_equilibrium_has_no_hysteresis():
    grid = np.geomspace(1e-3, 1.0, 19)
    t, rho = curves(grid)
    # the cooling sweep lists its points warm to cold: the order must not matter
    columns = hysteresis_columns(t, rho, t[::-1], rho[::-1], RHO_MIN)
    assert np.all(np.isfinite(columns["hysteresis"]))  # every mode collapses inside the scan
    np.testing.assert_allclose(columns["hysteresis"], 1.0, rtol=0, atol=1e-12)
    # the crossing of the mean-field law 1 - T/T_k: (1 - rho_min) T_k, to within the
    # interpolation of a curve linear in T by a line in log T over one grid step
    step = grid[1] / grid[0]
    expected = (1 - RHO_MIN) * SPECTRUM
    assert np.all(np.abs(columns["crossing_threshold_warming"] / expected - 1) < step - 1)


@pytest.mark.parametrize("m", [1, 3])
def test_a_delayed_cooling_curve_is_read_as_its_delay(m):
    factor = 1.3
    step = factor ** (1 / m)
    n = int(np.ceil(np.log(2e3) / np.log(step)))  # from 1e-3 past T = 2 > every threshold
    grid = 1e-3 * step ** np.arange(n)
    t, rho_warm = curves(grid)
    rho_cool = np.stack([equilibrium.signal_fraction(SPECTRUM, x * factor) for x in t])
    columns = hysteresis_columns(t, rho_warm, t, rho_cool, RHO_MIN)
    np.testing.assert_allclose(columns["hysteresis"], factor, rtol=1e-9)
    summary = hysteresis_summary(columns)
    assert summary["max_factor"] == pytest.approx(factor, rel=1e-9)
    assert sorted(summary["ratio"]) == [1, 2, 3, 4, 5]


def test_a_rank_without_a_crossing_has_no_ratio():
    grid = np.geomspace(1e-3, 0.2, 12)  # rank 1 (threshold 0.45) is still active at 0.2
    t, rho = curves(grid)
    columns = hysteresis_columns(t, rho, t, rho, RHO_MIN)
    assert np.isnan(columns["hysteresis"][0]) and np.isnan(columns["crossing_threshold_warming"][0])
    assert 1 not in hysteresis_summary(columns)["ratio"]


# Dn_k (k = 0..3) of two chains of two points each, chosen so that the minimum over both
# comes from cooling at k = 1, 2 and from warming at k = 3 (written out, not computed)
WARM = np.array([[1.0, 0.40, 0.20, 0.0005], [1.0, 0.35, 0.25, 0.002]])
COOL = np.array([[1.0, 0.08, 0.02, 0.004], [1.0, 0.30, 0.05, 0.003]])
RHO = np.array([[0.9, 0.5, 0.2], [0.8, 0.4, 0.1]])  # three active ranks in either chain
PCA = np.array([0.5, 0.3, 0.15, 0.05])  # lambda_k / V: 1 - cumsum = 0.5, 0.2, 0.05, 0


def test_both_branches_take_the_lower_minimum_of_each_rank():
    """Rank by rank the minimum over both chains' points (0.08, 0.02, 0.0005), the cooling
    chain's own (0.08, 0.02, 0.003), which chain gives each, and n(eps) of the combined
    levels counted by hand: 0.1 is reached at k = 1, 0.03 at k = 2, 0.01 and 0.001 at
    k = 3; PCA's 1 - cumsum (0.5, 0.2, 0.05, 0) reaches 0.1 at 3 components, the rest at 4."""
    columns, block = both_branches(WARM, COOL, RHO, RHO, PCA, tolerances=[0.1, 0.03, 0.01, 1e-3])
    assert list(columns["best_distortion_both_branches"]) == [0.08, 0.02, 0.0005]
    assert list(columns["best_distortion_cooling"]) == [0.08, 0.02, 0.003]
    assert block["branch_of_best"] == {1: "cooling", 2: "cooling", 3: "warming"}
    assert block["n_vae"] == [1, 2, 3, 3]
    assert block["n_pca"] == [3, 4, 4, 4]


def test_both_branches_choose_on_the_choosing_levels():
    """Paired levels (reported, choosing: spectra.select_on val): the point of each rank is
    the lowest *choosing* level over both chains, and its *reported* level is kept, even
    where the other chain reports a lower one."""
    warm = np.stack([WARM, WARM], -1)  # choosing = reported for warming
    cool = np.stack([COOL, COOL + 1.0], -1)  # cooling's choosing levels all worse by 1
    cool[:, 0, :] = 1.0
    columns, block = both_branches(warm, cool, RHO, RHO, PCA, tolerances=[0.1])
    # every rank is chosen in warming (choosing 0.35 < 1.08, 0.20 < 1.02, 0.0005 < 1.003)
    assert list(columns["best_distortion_both_branches"]) == [0.35, 0.20, 0.0005]
    assert block["branch_of_best"] == {1: "warming", 2: "warming", 3: "warming"}


def test_a_linear_sweep_gains_nothing_from_the_second_branch():
    """Two chains at the same equilibrium (the linear VAE's) reach the same levels: the
    minimum over both is either chain's, and every rank is credited to warming (a tie)."""
    columns, block = both_branches(WARM, WARM, RHO, RHO, PCA)
    np.testing.assert_array_equal(columns["best_distortion_both_branches"], WARM.min(0)[1:])
    assert set(block["branch_of_best"].values()) == {"warming"}
