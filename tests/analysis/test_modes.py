"""Per-mode totals (docs/science.md §10.1, issue 12): a mode spread over several latents by
hand gives back the single latent's ``m, v, rho``; a scan of analytic equilibria fits mode
thresholds at ``lambda_k / V``.

Tolerances: the totals are exact algebra on moments accumulated in float64 (a few thousand
samples, values of order 1), so they agree to rounding, ~1e-15; 1e-12 leaves room for the
sums without hiding any real error (a wrong weighting is off by tens of percent, below).
The threshold fits divide sums over ~10 points of exact equilibria: 1e-10 relative.
"""

import numpy as np
import pytest

from analytic_scan import gathered_scan, spread, train_equilibrium
from collapse_spectroscopy.analysis import equilibrium, modes, observables, pca, spectra
from collapse_spectroscopy.store import scanfile
from synthetic_gaussian import gaussian_splits

SPECTRUM = [0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0]
D = len(SPECTRUM)
LATENTS = D + 3  # three spare latents to spread a mode into


@pytest.fixture(scope="module")
def splits():
    xtr, _, xte, _, _ = gaussian_splits(SPECTRUM, sizes=(4000, 10, 4000), seed=1)
    return xtr, xte


def raw(obs, name):
    """A per-latent observable in raw latent order (``measure`` stores it by rank)."""
    out = np.empty_like(obs.per_latent[name])
    out[obs.latent_index] = obs.per_latent[name]
    return out


@pytest.mark.parametrize("weights", [np.sqrt([1 / 3] * 3), np.array([0.6, -0.64, 0.48])])
@pytest.mark.parametrize("eval_is_train", [True, False])
def test_mode_spread_over_three_latents_recovers_the_single_latent(splits, weights, eval_is_train):
    """Mode 2 (PC index 1) rotated into three latents, evenly and unevenly (one sign
    flipped): its total m, v, rho are the single latent's, on the training split and on
    another split; every other mode keeps its one latent."""
    xtr, xte = splits
    x_eval = xtr if eval_is_train else xte
    T, k = 0.05, 1
    single = train_equilibrium(xtr, T, LATENTS)
    split = spread(single, k, [LATENTS - 2, LATENTS - 1], weights)
    one = observables.measure(single, x_eval, xtr)
    three = observables.measure(split, x_eval, xtr)
    totals = modes.measure_modes(split, x_eval, xtr)
    assert totals.signal_fraction[k] > 0.5  # an active mode, or the test proves little
    for name, total in [
        ("posterior_mean_square", totals.posterior_mean_square),
        ("posterior_variance", totals.posterior_variance),
        ("signal_fraction", totals.signal_fraction),
    ]:
        # mode j is the raw latent j of the unsplit model (collapsed ones: 0, 1, 0)
        np.testing.assert_allclose(total, raw(one, name)[:D], rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(totals.mode_of_latent[[k, LATENTS - 2, LATENTS - 1]], k)
    # participation ratio of the delivered signal c_i^2 m_i = c_i^4 m: n for an even split
    c4 = weights**4
    assert totals.latents[k] == pytest.approx(c4.sum() ** 2 / (c4 @ c4), rel=1e-12)
    active = pca.pca_spectrum(xtr) > T
    assert active.sum() == 4
    np.testing.assert_allclose(np.delete(totals.latents, k), np.delete(active, k), rtol=1e-12)
    # the symptom the totals cure: each latent alone, and the unweighted totals, are low
    rho_each = raw(three, "signal_fraction")[[k, LATENTS - 2, LATENTS - 1]]
    assert np.all(rho_each < totals.signal_fraction[k] - 0.1)
    m = raw(three, "posterior_mean_square")[[k, LATENTS - 2, LATENTS - 1]]
    v = raw(three, "posterior_variance")[[k, LATENTS - 2, LATENTS - 1]]
    assert m.sum() / (m + v).sum() < totals.signal_fraction[k] - 0.1
    # the decoder sees the same model: the posterior-mean distortion is unchanged
    assert three.distortion_posterior_mean == pytest.approx(one.distortion_posterior_mean, 1e-12)


def test_collapsed_and_unassigned_modes_are_at_the_prior(splits):
    """Above mode 7's threshold (and for the zero mode, never active) nothing transmits
    the mode: m = 0, v = 1, rho = 0, no latents."""
    xtr, xte = splits
    totals = modes.measure_modes(train_equilibrium(xtr, 0.02, LATENTS), xte, xtr)
    collapsed = pca.pca_spectrum(xtr) <= 0.02
    assert collapsed.sum() == 3
    np.testing.assert_array_equal(totals.signal_fraction[collapsed], 0.0)
    np.testing.assert_array_equal(totals.posterior_mean_square[collapsed], 0.0)
    np.testing.assert_array_equal(totals.posterior_variance[collapsed], 1.0)
    np.testing.assert_array_equal(totals.latents[collapsed], 0.0)


def test_mode_thresholds_of_an_equilibrium_scan_are_the_pca_ratios(splits, tmp_path):
    """A gathered scan of analytic equilibria (measured on the training split, so that the
    training equilibrium is what is measured) with mode 2 spread over three latents at
    every T: the mode fits give lambda_k/V and mode 2 spans 3 latents, where the per-rank
    fit of the spread mode is far off."""
    xtr, _ = splits
    tk = pca.pca_spectrum(xtr)
    temperatures = np.geomspace(1e-3, 0.7, 14)
    scan = gathered_scan(tmp_path, temperatures, xtr, xtr, LATENTS, spread_mode=1)
    assert scan["mode_signal_fraction"].dims == ("T", "seed", "mode")
    table, _ = spectra.summarize(scan)
    inside = (tk > temperatures[1]) & (tk < temperatures[-1])  # >= 2 points above rho_min
    assert inside.sum() == 7
    rows = table.iloc[:D][inside]
    np.testing.assert_allclose(rows.mode_collapse_threshold, tk[inside], rtol=1e-10)
    np.testing.assert_allclose(rows.mode_free_exponent, 1.0, rtol=1e-6)  # an exact law
    assert rows.mode_latents.iloc[1] == pytest.approx(3.0, rel=1e-12)
    np.testing.assert_allclose(rows.mode_latents.drop(rows.index[1]), 1.0, rtol=1e-12)
    assert np.isnan(table.mode_collapse_threshold.iloc[D - 1])  # the zero mode
    # each of the spread mode's latents has a lower rho than the mode, which reshuffles
    # the ranks: the per-rank fit of rank 2 lands far from lambda_2/V (0.166 against 0.251)
    assert table.collapse_threshold.iloc[1] < 0.8 * tk[1]
    # latent_mode records it: three ranked latents hold mode 2
    latent_mode = scan["latent_mode"].isel(T=0, seed=0).values
    assert np.count_nonzero(latent_mode == 2) == 3


def test_scan_without_mode_totals_gives_nan_columns(splits, tmp_path):
    """An older scan (or a nonlinear run) has no mode totals: the columns are NaN."""
    xtr, _ = splits
    scan = gathered_scan(tmp_path, [0.01, 0.1], xtr, xtr, LATENTS)
    scan = scan.drop_vars([n for n in scan.data_vars if n.startswith("mode_")])
    table, _ = spectra.summarize(scan)
    assert table.mode_collapse_threshold.isna().all()
    assert table.mode_latents.isna().all()
    columns = table.columns.tolist()  # appended together, after the contract's columns
    first = columns.index(spectra.MODE_COLUMNS[0])
    assert first > len(spectra.SPECTRA_COLUMNS)
    assert columns[first : first + len(spectra.MODE_COLUMNS)] == spectra.MODE_COLUMNS


def test_equilibrium_parameters_are_the_equilibrium(splits):
    """Measured on the training split, the parameters give the closed forms of §3."""
    xtr, _ = splits
    tk = pca.pca_spectrum(xtr)
    for T in (0.004, 0.05, 0.3):
        obs = observables.measure(train_equilibrium(xtr, T, LATENTS), xtr, xtr)
        for name, law in [
            ("signal_fraction", equilibrium.signal_fraction),
            ("posterior_mean_square", equilibrium.posterior_mean_square),
            ("posterior_variance", equilibrium.posterior_variance),
        ]:
            np.testing.assert_allclose(raw(obs, name)[:D], law(tk, T), atol=1e-12, err_msg=name)


def test_a_training_job_stores_the_mode_totals_of_its_weights(tmp_path):
    """``collapse-spectroscopy train`` writes the totals of the weights it saves and the
    evaluation split's ``pca_eval_ratio`` (pointjob -> scanfile)."""
    from collapse_spectroscopy.cli import main
    from collapse_spectroscopy.maps import latent_maps
    from collapse_spectroscopy.store.prepared import load_prepared
    from synthetic_gaussian import gaussian_prepared

    data, out = tmp_path / "prepared.npz", tmp_path / "point.nc"
    gaussian_prepared([0.6, 0.3, 0.1, 0.0], sizes=(2000, 500, 500), seed=2).save(data)
    args = ["train", "--data", str(data), "-T", "0.05", "--out", str(out), "--latents", "6"]
    assert main([*args, "--max-updates", "400", "--eval-every", "200"]) == 0
    point, ds = scanfile.read(out), load_prepared(data)
    params = latent_maps.load_model(out.with_suffix(".pt"))[0].numpy_params()
    totals = modes.measure_modes(params, ds.x_test, ds.x_train)
    np.testing.assert_allclose(point["mode_signal_fraction"], totals.signal_fraction, atol=1e-12)
    np.testing.assert_allclose(point["mode_latents"], totals.latents, atol=1e-12)
    np.testing.assert_allclose(
        point["pca_eval_ratio"], pca.pca_eval_ratio(ds.x_train, ds.x_test), atol=1e-15
    )
    assert sorted(point["latent_mode"].values) == sorted(totals.mode_of_latent + 1)
