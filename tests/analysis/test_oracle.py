"""The oracle test: a real temperature scan on data with a known spectrum (issue 2,
docs/science.md §7).

Synthetic Gaussian data, 8 features, normalized spectrum 0.5 ... 0.003 (over two
decades) plus an exactly dependent feature (eigenvalue 0). Twelve temperatures from
0.0015 to 0.7, trained with the real training loop and measured on the test split.
The reference is the analytic equilibrium of the *training* PCA spectrum.

Two scans: ``K = d = 8`` latents, and ``K = 12`` (four spare latents, as the paper's
``K = 32 > d = 19``), whose spare latents must stay collapsed at every temperature while
the spectra come out as with ``K = d`` (docs/science.md §2, §7). The spare scan uses the
same data, temperatures and budget: it costs about as much as the first (~9 s, measured),
and equal temperatures let each of its points be read against the same equilibrium.

Tolerances, argued:

- Sampling: observables are measured on 40k test samples while the reference spectrum is
  the training one; the variance along a principal direction differs between two
  independent samples by ~ sqrt(2/n) = 0.7 % (1 sigma), so ~2 % at 3 sigma.
- rho within 0.03 away from the critical region (the issue's bound): the finite-batch Adam
  noise at lr 1e-3 moves rho by ~0.005 (measured spread), near a threshold critical
  slowing down makes any budget too short, hence the excluded band 0.8-1.2 T_k.
- Fitted T_k within 5 % and best-over-scan utilities within 3 % (the issue's bounds):
  the 2 % sampling term plus ~1 % of residual non-equilibrium.
- Single-T utility within 0.05 T_k of T_k - T^2/T_k: the 2 % sampling term plus the slow
  rotation between neighbouring modes at low T (restoring force
  beta (lambda_i - lambda_j)^2 / (lambda_i lambda_j), docs/science.md §7b), which splits utility
  between two ranks (their sum is unaffected) and which this budget leaves at up to ~3 %
  of T_k at the lowest temperatures (measured while writing the test). With ``K = 12``
  the other initialization leaves more of it (ranks 2 and 3 share 6-13 % of their T_k at
  the two lowest temperatures, measured), so the spare scan is held to the same bound on
  the sum over its active ranks, which the rotation leaves unchanged.
- The two scans against each other, thresholds and best utilities within 3 %: they share
  the training and test splits, so the sampling term is common and cancels; what is left
  is the residual non-equilibrium of each (~1 %), with a margin (measured: 0.9 % and
  1.4 %).
"""

import numpy as np
import pytest

from collapse_spectroscopy.analysis import equilibrium, observables, pca, spectra
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_splits

SPECTRUM = [0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0]
TEMPERATURES = np.geomspace(0.0015, 0.7, 12)
# Rounding floor for utilities that are 0 at equilibrium (the zero-eigenvalue mode removes
# ~1e-7 through test-vs-train sampling): an order of magnitude below the smallest tolerance
# of an active mode (0.05 * 0.003 = 1.5e-4), so it cannot hide a wrong active utility.
COLLAPSED_FLOOR = 1e-5
SPARE = 4  # spare latents of the K > d scan


def run_scan(latents):
    """Train and measure every temperature with ``latents`` latents; the spectra table."""
    xtr, xva, xte, _, _ = gaussian_splits(SPECTRUM, seed=0)
    tk = pca.pca_spectrum(xtr)
    config = TrainConfig(
        max_updates=30_000, patience=0.2, eval_every=1000, batch_size=256, learning_rate=1e-3
    )
    points = []
    for T in TEMPERATURES:
        result = train_scan_point(xtr, xva, T, seed=0, latents=latents, config=config)
        points.append(observables.measure(result.model.numpy_params(), xte, xtr, seed=0))
    rho = np.array([p.per_latent["signal_fraction"] for p in points])
    dn = np.array([p.truncated_distortion for p in points])
    table = spectra.spectra_table(TEMPERATURES, rho, dn, tk)
    return {"tk": tk, "rho": rho, "dn": dn, "table": table}


@pytest.fixture(scope="module")
def scan():
    """K = d: one latent per feature."""
    return run_scan(len(SPECTRUM))


@pytest.fixture(scope="module")
def spare_scan():
    """K = d + SPARE: latents with no mode to hold."""
    return run_scan(len(SPECTRUM) + SPARE)


@pytest.fixture(params=["scan", "spare_scan"])
def any_scan(request):
    return request.getfixturevalue(request.param)


def regimes(tk, T):
    """Masks of the modes active, critical and collapsed at ``T`` (band 0.8-1.2 T_k)."""
    active, collapsed = T <= 0.8 * tk, T >= 1.2 * tk
    return active, ~active & ~collapsed, collapsed


def test_training_spectrum_is_the_declared_one(scan):
    # the oracle compares with the training PCA; check it is the spectrum we built
    # (sampling error of eigenvalues ~ sqrt(2/n) lambda = 0.7 % at n = 40k, so 3 %)
    np.testing.assert_allclose(scan["tk"][:-1], SPECTRUM[:-1], rtol=0.03)
    assert scan["tk"][-1] < 1e-12  # the dependent feature


def test_fitted_thresholds_match_pca(any_scan):
    table, tk = any_scan["table"], any_scan["tk"]
    checked = 0
    for k in range(len(SPECTRUM)):
        inside = TEMPERATURES.min() < tk[k] < TEMPERATURES.max()
        row = table.iloc[k]
        if inside and row.fit_points >= 3:
            assert row.collapse_threshold == pytest.approx(tk[k], rel=0.05), f"rank {k + 1}"
            checked += 1
    assert checked >= 5  # 0.5 ... 0.035 at least, or the test proves nothing


def test_best_utilities_match_pca(any_scan):
    table, tk = any_scan["table"], any_scan["tk"]
    checked = 0
    for k in range(len(SPECTRUM)):
        if tk[k] >= 10 * TEMPERATURES.min():
            assert table.utility.iloc[k] == pytest.approx(tk[k], rel=0.03), f"rank {k + 1}"
            checked += 1
    assert checked >= 5


def test_rho_follows_the_equilibrium(any_scan):
    tk, rho = any_scan["tk"], any_scan["rho"]
    d = len(SPECTRUM)
    for i, T in enumerate(TEMPERATURES):
        active, _, collapsed = regimes(tk, T)
        far = active | collapsed
        np.testing.assert_array_less(
            np.abs(rho[i, :d] - equilibrium.signal_fraction(tk, T))[far],
            0.03,
            err_msg=f"rho at T={T:.4g}",
        )


def test_single_t_utility_follows_the_equilibrium(scan):
    tk, dn = scan["tk"], scan["dn"]
    u = -np.diff(dn, axis=1)
    for i, T in enumerate(TEMPERATURES):
        active = regimes(tk, T)[0]
        np.testing.assert_array_less(
            np.abs(u[i] - equilibrium.utility(tk, T))[active],
            0.05 * tk[active],
            err_msg=f"utility at T={T:.4g}",
        )


def test_collapsed_ranks_remove_only_what_the_critical_modes_hold(any_scan):
    """Collapsed ranks: rank k need not hold mode k when a mode is critical, because a mode
    just below its threshold spreads over other latents (docs/science.md §7b). What all
    collapsed ranks remove together is bounded by what the critical modes hold, plus the
    leak that the rho tolerance allows a collapsed mode: u/T_k = rho (2 - rho) <= 2 * 0.03
    (measured leaks are ~1e-3 in rho). Spare ranks (beyond d) count as collapsed: they
    have no mode of their own, so they add to what is removed and nothing to the bound.
    """
    tk, dn = any_scan["tk"], any_scan["dn"]
    d = len(SPECTRUM)
    u = -np.diff(dn, axis=1)
    for i, T in enumerate(TEMPERATURES):
        _, critical, collapsed = regimes(tk, T)
        spill = u[i, :d][collapsed].sum() + u[i, d:].sum()
        bound = tk[critical].sum() + 2 * 0.03 * tk[collapsed].sum() + COLLAPSED_FLOOR
        assert -COLLAPSED_FLOOR < spill < bound, (
            f"collapsed latents remove {spill:.3g} at T={T:.4g} (bound {bound:.3g})"
        )


def test_spare_latents_stay_collapsed(spare_scan):
    """Spare latents stay collapsed at every T (docs/science.md §2): every rank beyond d
    has rho below the rho tolerance (measured <= 0.0012), and at each T no more latents
    are on (rho >= 0.03) than there are modes active or critical, one latent per mode,
    none for a spare one, wherever the ranking puts them."""
    tk, rho = spare_scan["tk"], spare_scan["rho"]
    d = len(SPECTRUM)
    assert rho[:, d:].shape == (TEMPERATURES.size, SPARE)
    np.testing.assert_array_less(rho[:, d:], 0.03)
    for i, T in enumerate(TEMPERATURES):
        active, critical, _ = regimes(tk, T)
        on = int((rho[i] >= 0.03).sum())
        assert on <= active.sum() + critical.sum(), f"{on} latents on at T={T:.4g}"


def test_active_ranks_of_the_spare_scan_remove_the_equilibrium_sum(spare_scan):
    """What the active ranks of the spare scan remove together at each T is the equilibrium
    sum, within the single-T bound summed over them (module docstring: the low-T rotation
    between active ranks moves utility between them but not out of their sum)."""
    tk, dn = spare_scan["tk"], spare_scan["dn"]
    u = -np.diff(dn, axis=1)
    for i, T in enumerate(TEMPERATURES):
        active = regimes(tk, T)[0]
        n = int(active.sum())  # the active modes are the n largest: ranks 1..n
        assert active[:n].all()
        total = u[i, :n].sum()
        expected = equilibrium.utility(tk, T)[active].sum()
        assert abs(total - expected) < 0.05 * tk[active].sum() + COLLAPSED_FLOOR, (
            f"active ranks remove {total:.4g}, equilibrium {expected:.4g} at T={T:.4g}"
        )


def test_spare_latents_leave_the_spectra_unchanged(scan, spare_scan):
    """Thresholds and best utilities of the K > d scan are those of the K = d scan, within
    3 % (module docstring), for the modes each of the two PCA tests checks."""
    tk, a, b = scan["tk"], scan["table"], spare_scan["table"]
    thresholds = [
        k
        for k in range(len(SPECTRUM))
        if TEMPERATURES.min() < tk[k] < TEMPERATURES.max()
        and min(a.fit_points[k], b.fit_points[k]) >= 3
    ]
    utilities = [k for k in range(len(SPECTRUM)) if tk[k] >= 10 * TEMPERATURES.min()]
    assert len(thresholds) >= 5 and len(utilities) >= 5
    np.testing.assert_allclose(
        b.collapse_threshold.iloc[thresholds], a.collapse_threshold.iloc[thresholds], rtol=0.03
    )
    np.testing.assert_allclose(b.utility.iloc[utilities], a.utility.iloc[utilities], rtol=0.03)


def test_best_utility_of_every_rank_is_the_best_equilibrium_one(any_scan):
    """Every rank, including those the scan cannot resolve: the best utility over the scan
    is the largest equilibrium utility ``T_k - T^2/T_k`` at the scan's temperatures, which
    falls short of ``T_k`` for a mode whose threshold is close to the lowest temperature
    (rank 7: T_k = 2 T_min, so 25 % short), and the exactly dependent feature (rank 8)
    removes nothing. Tolerance: 0.05 T_k, the single-T utility bound (module docstring).

    The table of thresholds and utilities is printed (seen with ``pytest -s``, or on a
    failure); the closing notes quote it.
    """
    table, tk = any_scan["table"], any_scan["tk"]
    best_eq = equilibrium.utility(tk, TEMPERATURES).max(axis=0)

    def err(x, ref):  # percent; none against a zero eigenvalue
        return f"{100 * (x / ref - 1):6.1f}" if ref > 1e-12 else "     -"

    print(f"\nK = {len(table)}")
    print("rank  T_k (PCA)  threshold   err%   best u_k  best u_eq   err%  fit_points")
    for k in range(len(SPECTRUM)):
        r = table.iloc[k]
        print(
            f"{k + 1:4d} {tk[k]:10.3g} {r.collapse_threshold:10.4g} "
            f"{err(r.collapse_threshold, tk[k])} {r.utility:10.3g} {best_eq[k]:10.3g} "
            f"{err(r.utility, best_eq[k])} {r.fit_points:11d}"
        )
    active = tk > 1e-12
    np.testing.assert_array_less(
        np.abs(table.utility.to_numpy()[: len(SPECTRUM)] - best_eq)[active], 0.05 * tk[active]
    )
    assert abs(table.utility.iloc[len(SPECTRUM) - 1]) < COLLAPSED_FLOOR  # the dependent feature


@pytest.mark.parametrize("kind", ["ema", "polyak"])  # training.average (not "none")
def test_the_oracle_scan_passes_with_averaging(kind):
    """The oracle scan above (K = d = 8, twelve temperatures, the same
    budget and tolerances, argued there) with averaged weights at the default horizon
    (0.02 of the budget = 600 updates): thresholds, utilities and rho still match the
    analytic equilibrium. Averaging may not buy accuracy here (the noise floor at batch
    256 and lr 1e-3 is below these tolerances) but it must not cost any."""
    xtr, xva, xte, _, _ = gaussian_splits(SPECTRUM, seed=0)
    tk = pca.pca_spectrum(xtr)
    config = TrainConfig(
        max_updates=30_000,
        patience=0.2,
        eval_every=1000,
        batch_size=256,
        learning_rate=1e-3,
        average=kind,
    )
    assert config.average_updates == 600
    points = []
    for T in TEMPERATURES:
        result = train_scan_point(xtr, xva, T, seed=0, latents=len(SPECTRUM), config=config)
        points.append(observables.measure(result.model.numpy_params(), xte, xtr, seed=0))
    rho = np.array([p.per_latent["signal_fraction"] for p in points])
    dn = np.array([p.truncated_distortion for p in points])
    scan = {"tk": tk, "rho": rho, "dn": dn}
    scan["table"] = spectra.spectra_table(TEMPERATURES, rho, dn, tk)
    test_fitted_thresholds_match_pca(scan)
    test_best_utilities_match_pca(scan)
    test_rho_follows_the_equilibrium(scan)
    test_single_t_utility_follows_the_equilibrium(scan)
    test_collapsed_ranks_remove_only_what_the_critical_modes_hold(scan)
    test_best_utility_of_every_rank_is_the_best_equilibrium_one(scan)
