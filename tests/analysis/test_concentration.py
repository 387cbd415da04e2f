"""Utility concentration (docs/science.md §9): n(eps) of the VAE and of PCA, participation
ratios, and their block in summary.json and on the command line."""

import json

import numpy as np
import pytest

from collapse_spectroscopy.analysis import concentration, equilibrium, pca, spectra, thresholds

# hand-built best truncated distortions Dn*_k, k = 0..5 (a level that rises again, as an
# independently minimized Dn*_k may, and a plateau) and a PCA spectrum of d = 6 modes
BEST = np.array([1.0, 0.4, 0.05, 0.012, 0.012, 0.0031])
PCA_RATIO = np.array([0.5, 0.2, 0.15, 0.1, 0.04, 0.01])


def naive_needed(levels, eps):
    """The first k with levels[k] <= eps, by a plain loop; None when there is none."""
    for k, level in enumerate(levels):
        if level <= eps:
            return k
    return None


@pytest.mark.parametrize("eps", [1.5, 1.0, 0.5, 0.4, 0.1, 0.05, 0.03, 0.012, 0.01, 0.0031, 1e-3])
def test_variables_needed_against_a_naive_loop(eps):
    pca_distortion = pca.pca_truncation_distortion(PCA_RATIO)
    assert concentration.variables_needed(BEST, eps) == naive_needed(BEST, eps)
    assert concentration.variables_needed(pca_distortion, eps) == naive_needed(pca_distortion, eps)


def test_variables_needed_by_hand():
    # Dn*_0 = 1: a tolerance of 1 needs no latent; a level equal to eps reaches it
    assert concentration.variables_needed(BEST, 1.0) == 0
    assert concentration.variables_needed(BEST, 0.05) == 2
    assert concentration.variables_needed(BEST, 0.0499) == 3
    assert concentration.variables_needed(BEST, 0.01) == 5
    assert concentration.variables_needed(BEST, 0.003) is None  # never reached
    # PCA: 1 - cumsum = 1, 0.5, 0.3, 0.15, 0.05, 0.01, 0 (up to rounding)
    pca_distortion = pca.pca_truncation_distortion(PCA_RATIO)
    assert concentration.variables_needed(pca_distortion, 0.2) == 3
    assert concentration.variables_needed(pca_distortion, 0.001) == 6
    # a point that did not reach a level (NaN) never counts as reaching it
    assert concentration.variables_needed([1.0, np.nan, 0.2], 0.5) == 2


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_participation_ratio_of_equal_weights_is_their_count(n):
    assert concentration.participation_ratio(np.full(n, 0.37)) == pytest.approx(n, rel=1e-14)


def test_participation_ratio_by_hand():
    assert concentration.participation_ratio([0.8]) == 1.0
    # (0.5 + 0.25 + 0.25)^2 / (0.25 + 0.0625 + 0.0625) = 1 / 0.375
    assert concentration.participation_ratio([0.5, 0.25, 0.25]) == pytest.approx(8 / 3, rel=1e-14)
    # non-positive and non-finite utilities are left out (docs/science.md §4.2, §9)
    assert concentration.participation_ratio([0.5, 0.25, -0.01, 0.0, 0.25, np.nan]) == (
        pytest.approx(8 / 3, rel=1e-14)
    )
    assert concentration.participation_ratio([0.0, -1e-9]) is None
    assert concentration.participation_ratio([]) is None


def test_utility_concentration_block():
    pca_distortion = pca.pca_truncation_distortion(PCA_RATIO)
    block = concentration.utility_concentration(
        BEST, thresholds.utilities(BEST), pca_distortion, PCA_RATIO, tolerances=[0.1, 0.011, 0.003]
    )
    # (0.011, not 0.01: the PCA level 1 - 0.99 rounds to 0.010000000000000009)
    assert block["eps"] == [0.1, 0.011, 0.003]
    assert block["n_vae"] == [2, 5, None]
    assert block["n_pca"] == [4, 5, 6]
    u = BEST[:-1] - BEST[1:]
    naive_pr = sum(x for x in u if x > 0) ** 2 / sum(x * x for x in u if x > 0)
    assert block["participation_ratio_vae"] == pytest.approx(naive_pr, rel=1e-14)
    assert block["participation_ratio_pca"] == pytest.approx(1 / np.sum(PCA_RATIO**2), rel=1e-14)
    json.dumps(block, allow_nan=False)  # None, never NaN, where a level is not reached


def test_default_tolerances_are_the_schemas():
    from collapse_spectroscopy.config.settings import section_defaults

    assert list(concentration.TOLERANCES) == section_defaults("spectra")["tolerances"]
    assert list(concentration.TOLERANCES) == [0.1, 0.03, 0.01, 0.003, 0.001]


# ---------------------------------------------------------------------------------------
# In the summary of a scan at the analytic equilibrium, and on the command line

TK = np.array([0.4, 0.2, 0.08, 0.03, 0.01])


def equilibrium_scan():
    """A gathered-scan lookalike (one seed) at the analytic equilibrium of ``TK``."""
    import xarray as xr

    T = np.geomspace(1e-4, 0.8, 12)
    K = TK.size
    rho = equilibrium.signal_fraction(TK, T)
    dn = equilibrium.truncated_distortion(TK, T)
    return xr.Dataset(
        {
            "signal_fraction": (("T", "seed", "latent"), rho[:, None, :]),
            "truncated_distortion": (("T", "seed", "k"), dn[:, None, :]),
            "pca_ratio": ("mode", TK / TK.sum()),
        },
        coords={
            "T": T,
            "seed": [0],
            "latent": np.arange(1, K + 1),
            "k": np.arange(K + 1),
            "mode": np.arange(1, K + 1),
        },
    )


def test_summary_has_the_utility_concentration():
    scan = equilibrium_scan()
    _, summary = spectra.summarize(scan, tolerances=[0.5, 0.05, 0.001])
    block = summary["utility_concentration"]
    best = thresholds.best_distortions(scan["truncated_distortion"].values[:, 0, :])
    pca_distortion = 1 - np.concatenate([[0], np.cumsum(TK / TK.sum())])
    assert block["eps"] == [0.5, 0.05, 0.001]
    assert block["n_vae"] == [naive_needed(best, e) for e in block["eps"]]
    assert block["n_pca"] == [naive_needed(pca_distortion, e) for e in block["eps"]]
    # sum TK = 0.72 < 1: the VAE leaves 1 - 0.72 unexplained, PCA (normalized by its own
    # sum) reaches 0 with all 5 modes
    assert block["n_vae"][-1] is None and block["n_pca"][-1] == 5
    # at T = 1e-4 every u_k is within T^2/T_k of T_k (docs/science.md §4.3): the VAE's
    # ratio is that of TK itself, which is also PCA's (lambda/V proportional to TK)
    pr = TK.sum() ** 2 / np.sum(TK**2)
    assert block["participation_ratio_vae"] == pytest.approx(pr, rel=1e-5)
    assert block["participation_ratio_pca"] == pytest.approx(pr, rel=1e-12)


def test_each_seed_gets_its_own_n_and_the_summary_their_range():
    """Two seeds: the equilibrium's levels, and the same levels 1.6 times higher (a seed
    that reconstructs worse). Each seed's n(eps) is the first k of its own best levels
    within eps (a naive loop over them), and the range spans both."""
    import xarray as xr

    one = equilibrium_scan()
    two = one.assign_coords(seed=[1])
    two["truncated_distortion"] = two["truncated_distortion"] * 1.6
    scan = xr.concat([one, two], dim="seed", data_vars="minimal")  # pca_ratio: per run
    eps = [0.5, 0.1, 0.05, 0.01]
    _, summary = spectra.summarize(scan, tolerances=eps)
    block = summary["utility_concentration"]
    want = {}
    for i, seed in enumerate(("0", "1")):
        best = thresholds.best_distortions(scan["truncated_distortion"].values[:, i, :])
        want[seed] = [naive_needed(best, e) for e in eps]
    assert block["n_vae_per_seed"] == want
    assert want["0"] != want["1"]  # the scaling moves n at some eps: the test can fail
    assert block["n_vae_seed_range"] == [
        None if None in (a, b) else [min(a, b), max(a, b)]
        for a, b in zip(want["0"], want["1"], strict=True)
    ]


def test_one_seed_has_no_per_seed_n():
    _, summary = spectra.summarize(equilibrium_scan())
    assert "n_vae_per_seed" not in summary["utility_concentration"]


def test_spectra_command_takes_tolerances_from_the_run_config(tmp_path):
    from collapse_spectroscopy.cli import main
    from collapse_spectroscopy.store import scanfile

    scan_path = tmp_path / "scan.nc"
    scanfile.write(equilibrium_scan(), scan_path)
    summary = tmp_path / "summary.json"
    args = ["spectra", str(scan_path), "--out", str(tmp_path / "s.csv"), "--summary", str(summary)]
    assert main(args) == 0
    assert json.loads(summary.read_text())["utility_concentration"]["eps"] == list(
        concentration.TOLERANCES
    )
    run_config = tmp_path / "spectra.json"
    run_config.write_text(json.dumps({"spectra": {"rho_min": 0.05, "tolerances": [0.2, 0.02]}}))
    assert main([*args, "--run-config", str(run_config)]) == 0
    assert json.loads(summary.read_text())["utility_concentration"]["eps"] == [0.2, 0.02]
    assert main([*args, "--run-config", str(run_config), "--tolerances", "0.3"]) == 0
    assert json.loads(summary.read_text())["utility_concentration"]["eps"] == [0.3]
    # the workflow's order: the scan file first, the run configuration after it
    scan_first = ["spectra", str(scan_path), "--run-config", str(run_config), *args[2:]]
    assert main(scan_first) == 0
    assert json.loads(summary.read_text())["utility_concentration"]["eps"] == [0.2, 0.02]
    assert main([*args, "--tolerances", "0.4,0.04", "0.004"]) == 0
    assert json.loads(summary.read_text())["utility_concentration"]["eps"] == [0.4, 0.04, 0.004]


@pytest.mark.parametrize("eps", ["0", "-0.1", "nan", "inf", "x"])
def test_bad_tolerance_is_one_clear_line(tmp_path, capsys, eps):
    from collapse_spectroscopy.cli import main
    from collapse_spectroscopy.store import scanfile

    scan_path = tmp_path / "scan.nc"
    scanfile.write(equilibrium_scan(), scan_path)
    out = tmp_path / "s.csv"
    assert main(["spectra", str(scan_path), "--out", str(out), "--tolerances", "0.1", eps]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"collapse-spectroscopy spectra: error: --tolerances {eps!r}: "
        "expected finite numbers above 0"
    ]
    assert not out.exists()


def test_run_config_with_a_zero_tolerance_names_the_key(tmp_path, capsys):
    from collapse_spectroscopy.cli import main
    from collapse_spectroscopy.store import scanfile

    scan_path = tmp_path / "scan.nc"
    scanfile.write(equilibrium_scan(), scan_path)
    run_config = tmp_path / "spectra.json"
    run_config.write_text(json.dumps({"spectra": {"tolerances": [0.1, 0]}}))
    args = ["spectra", str(scan_path), "--out", str(tmp_path / "s.csv")]
    assert main([*args, "--run-config", str(run_config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tolerances" in err[0]


# ---------------------------------------------------------------------------------------
# Spare latents: ranks past the last active one do not count


def naive_last_active(rho, rho_min):
    """The highest 1-based rank with some rho > rho_min, by plain loops (NaN never is)."""
    best = 0
    for row in np.asarray(rho).reshape(-1, np.asarray(rho).shape[-1]):
        for k, r in enumerate(row, start=1):
            if not np.isnan(r) and r > rho_min and k > best:
                best = k
    return best


@pytest.mark.parametrize("seed", range(5))
def test_last_active_rank_against_a_naive_loop(seed):
    rng = np.random.default_rng(seed)
    rho = rng.uniform(0, 0.2, size=(6, 2, 7))  # (T, seed, latent)
    rho[rng.uniform(size=rho.shape) < 0.2] = np.nan
    for rho_min in (0.0, 0.05, 0.15, 0.25):
        assert concentration.last_active_rank(rho, rho_min) == naive_last_active(rho, rho_min)


# the last active rank (3) levels off at 0.05; two spare latents scatter 1e-8 below it,
# as independently minimized Dn*_k of latents that carry no signal do
SPARE_BEST = np.array([1.0, 0.4, 0.1, 0.05, 0.05 - 1e-8, 0.05 - 2e-8])
JUST_BELOW = 0.05 - 1.5e-8  # a tolerance between the active level and the spare scatter


def test_spare_latents_do_not_reach_a_tolerance():
    u = thresholds.utilities(SPARE_BEST)
    pca_distortion = pca.pca_truncation_distortion(PCA_RATIO)
    every = concentration.utility_concentration(
        SPARE_BEST, u, pca_distortion, PCA_RATIO, tolerances=[0.1, JUST_BELOW]
    )
    active = concentration.utility_concentration(
        SPARE_BEST, u, pca_distortion, PCA_RATIO, tolerances=[0.1, JUST_BELOW], active=3
    )
    assert every["n_vae"] == [2, 5]  # the scatter would read as "5 variables needed"
    assert active["n_vae"] == [2, None]  # the 3 active latents never reach it


def spare_latent_scan(rho_min):
    """Two temperatures, one seed: ``SPARE_BEST`` at the first (the second worse), latents
    1-3 above ``rho_min`` somewhere, latents 4-5 never (they carry no signal)."""
    import xarray as xr

    K = SPARE_BEST.size - 1
    dn = np.stack([SPARE_BEST, np.minimum(1.0, SPARE_BEST * 3)])[:, None, :]
    rho = np.array([[0.9, 0.6, 0.3, 0.5 * rho_min, 0.2 * rho_min]] * 2)[:, None, :]
    return xr.Dataset(
        {
            "truncated_distortion": (("T", "seed", "k"), dn),
            "signal_fraction": (("T", "seed", "latent"), rho),
            "pca_ratio": ("mode", PCA_RATIO),
        },
        coords={
            "T": [0.01, 0.1],
            "seed": [0],
            "latent": np.arange(1, K + 1),
            "k": np.arange(K + 1),
            "mode": np.arange(1, PCA_RATIO.size + 1),
        },
    )


def test_summary_counts_what_fig5_draws():
    """summary.json's n_vae and Fig 5's n(eps) are one count: the active ranks only."""
    from collapse_spectroscopy.figures.fig5_utility_concentration import curves

    scan = spare_latent_scan(rho_min=0.05)
    table, summary = spectra.summarize(scan, rho_min=0.05, tolerances=[0.1, JUST_BELOW])
    block = summary["utility_concentration"]
    assert block["n_vae"] == [2, None]
    vae = next(c for c in curves(scan, table, rho_min=0.05) if c.key == "vae")
    drawn = vae.needed(block["eps"])
    assert [None if np.isnan(n) else int(n) for n in drawn] == block["n_vae"]


def test_rank_order_lists_the_pairs_whose_utilities_run_against_rho():
    """By hand: utilities 0.5, 0.1, 0.3, 0.05 in rho order invert (2, 3) only; the linear
    equilibrium's descending utilities agree; ranks past the active ones are not counted."""
    block = concentration.rank_order([0.5, 0.1, 0.3, 0.05])
    assert block == {"agree": False, "inversions": [[2, 3]]}
    assert concentration.rank_order([0.4, 0.7], active=1) == {"agree": True, "inversions": []}
    assert concentration.rank_order(equilibrium.utility(TK, 1e-3)[0])["agree"]
    _, summary = spectra.summarize(equilibrium_scan())
    assert summary["rank_order"] == {"agree": True, "inversions": []}
