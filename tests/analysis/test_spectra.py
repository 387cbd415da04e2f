"""Spectra: threshold fits on noisy synthetic rho curves, utilities, PCA (docs/science.md §4), and
the under-equilibrated flag of the summary."""

import json

import numpy as np
import pytest

from collapse_spectroscopy.analysis import equilibration, equilibrium, pca, spectra, thresholds

TK = np.array([0.4, 0.2, 0.08, 0.03, 0.01])


def noisy_scan(noise=0.01, seeds=3, seed=0):
    rng = np.random.default_rng(seed)
    T = np.repeat(np.geomspace(0.003, 0.8, 20), seeds)
    rho = equilibrium.signal_fraction(TK, T)
    rho = np.clip(rho + noise * rng.standard_normal(rho.shape), 0.0, 1.0)
    return T, rho


def test_fixed_exponent_fit_recovers_noisy_thresholds():
    T, rho = noisy_scan()
    for k, tk in enumerate(TK):
        fit = thresholds.fixed_exponent_threshold(T, rho[:, k])
        # noise 0.01 on rho over >= 9 points (3 seeds): the least-squares slope 1/T_k is
        # known to ~0.01 / sqrt(sum (T/T_k)^2) ~ 0.5 %; points just above rho_min near
        # the threshold add a bias of the clipped noise, so 3 % is a safe, failing bound
        assert fit.threshold == pytest.approx(tk, rel=0.03), k
        assert fit.points >= 3 and fit.note == ""


def test_free_exponent_fit_recovers_exponent_one():
    T, rho = noisy_scan(noise=0.005)
    for k, tk in enumerate(TK[:4]):
        t_free, gamma, note = thresholds.free_exponent_fit(T, rho[:, k])
        assert note == ""
        assert gamma == pytest.approx(1.0, abs=0.1), k
        assert t_free == pytest.approx(tk, rel=0.05), k


def test_free_exponent_fit_recovers_another_exponent():
    T = np.geomspace(0.01, 0.3, 15)
    rho = 1 - (T / 0.25) ** 0.6
    t_free, gamma, _ = thresholds.free_exponent_fit(T, rho)
    assert gamma == pytest.approx(0.6, rel=1e-4)
    assert t_free == pytest.approx(0.25, rel=1e-4)


def test_exact_law_is_fitted_exactly():
    T = np.geomspace(0.001, 0.5, 12)
    rho = equilibrium.signal_fraction(TK, T)
    for k, tk in enumerate(TK):
        assert thresholds.fixed_exponent_threshold(T, rho[:, k]).threshold == pytest.approx(
            tk, rel=1e-12
        )


@pytest.mark.parametrize("rho", [[0.0, 0.0, 0.0], [0.5, 0.01, 0.0], [np.nan, 0.02, 0.0]])
def test_too_few_points_give_nan_with_a_reason(rho):
    fit = thresholds.fixed_exponent_threshold([0.01, 0.1, 1.0], rho)
    assert np.isnan(fit.threshold)
    assert "need 2" in fit.note
    t_free, gamma, note = thresholds.free_exponent_fit([0.01, 0.1, 1.0], rho)
    assert np.isnan(t_free) and np.isnan(gamma) and "need 3" in note


def test_spectra_table_records_why_a_fit_is_missing():
    T = np.array([0.01, 0.1, 0.5])
    rho = np.array([[0.9, 0.01], [0.7, 0.0], [0.2, 0.0]])
    dn = np.array([[1.0, 0.2, 0.19], [1.0, 0.3, 0.3], [1.0, 0.8, 0.8]])
    table = spectra.spectra_table(T, rho, dn, pca_ratio=[0.7, 0.3])
    assert np.isnan(table.collapse_threshold[1]) and "need 2" in table.fit_note[1]
    assert np.isfinite(table.collapse_threshold[0])


def test_utilities_from_best_truncated_distortions():
    # two scan points; the best level of each k may come from different points
    dn = np.array([[0.97, 0.5, 0.30, 0.30], [1.02, 0.6, 0.25, 0.2]])
    best = thresholds.best_distortions(dn)
    np.testing.assert_array_equal(best, [1.0, 0.5, 0.25, 0.2])  # Dn*_0 = 1 by definition
    np.testing.assert_allclose(thresholds.utilities(best), [0.5, 0.25, 0.05])


def test_table_utilities_are_utilities_of_the_best_levels():
    # the table's u_k and the PCA eval utilities are thresholds.utilities(), written as the
    # equation's difference: equal levels (a latent that removes nothing) give +0, never
    # -0, which the CSV would show as "-0"
    dn = np.array([[1.0, 0.4, 0.4, 0.1], [1.0, 0.5, 0.45, 0.3]])
    pca_eval = np.array([1.0, 0.6, 0.6, 0.2])
    table = spectra.spectra_table([0.01, 0.1], np.full((2, 3), 0.5), dn, pca_eval=pca_eval)
    u = table["utility"].to_numpy()
    np.testing.assert_array_equal(u, thresholds.utilities(thresholds.best_distortions(dn)))
    np.testing.assert_array_equal(u, [1.0 - 0.4, 0.0, 0.4 - 0.1])
    assert not np.signbit(u[1])
    ev = table["pca_eval_utility"].to_numpy()
    np.testing.assert_array_equal(ev, [1.0 - 0.6, 0.0, 0.6 - 0.2])
    assert not np.signbit(ev[1])


def test_small_utilities_survive_in_float64():
    # a utility of 1e-7 under distortions of ~0.5 needs float64 differences
    dn = np.array([[1.0, 0.5, 0.5 - 1e-7]])
    assert thresholds.utilities(thresholds.best_distortions(dn))[1] == pytest.approx(1e-7, rel=1e-6)


def test_pca_spectrum_against_a_naive_power_iteration():
    rng = np.random.default_rng(0)
    x = (
        rng.standard_normal((5000, 4))
        @ np.diag([3.0, 2.0, 1.0, 0.5])
        @ np.linalg.qr(rng.standard_normal((4, 4)))[0]
    )
    ratio = pca.pca_spectrum(x)
    # independent computation: repeated power iteration with deflation on the covariance
    c = np.cov(x, rowvar=False, bias=True)
    lams = []
    for _ in range(4):
        v = np.ones(4)
        for _ in range(2000):
            v = c @ v
            v /= np.linalg.norm(v)
        lam = v @ c @ v
        lams.append(lam)
        c = c - lam * np.outer(v, v)
    np.testing.assert_allclose(
        ratio, np.array(lams) / np.trace(np.cov(x, rowvar=False, bias=True)), rtol=1e-8
    )
    assert pca.pca_truncation_distortion(ratio)[-1] == pytest.approx(0.0, abs=1e-12)


def test_split_matched_pca_on_the_training_split_is_the_pca_truncation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 5)) * [2.0, 1.5, 1.0, 0.5, 0.1]
    np.testing.assert_allclose(
        pca.pca_eval_distortion(x, x),
        pca.pca_truncation_distortion(pca.pca_spectrum(x)),
        atol=1e-12,
    )


# ---------------------------------------------------------------------------------------
# Under-equilibrated scan points: the flag in summary.json and the spectra warning

PATIENCE = 0.25  # of MAX_UPDATES: 3000 updates
MAX_UPDATES = 12000
# (stop reason, updates run, best update) at four temperatures; a fifth did not run
OUTCOMES = [
    ("early_stopping", 8000, 5000),  # the test passed: equilibrated
    ("max_updates", 12000, 12000),  # still improving at the last evaluation: flagged
    ("max_updates", 12000, 9500),  # best 2500 < 3000 updates before the end: flagged
    ("max_updates", 12000, 9000),  # patience ran out exactly at the budget: passed
]


def outcome_scan(outcomes=OUTCOMES, training=None):
    """A gathered-scan lookalike (one seed) at the analytic equilibrium of ``TK`` with
    the given training outcomes, and a temperature that did not run (all NaN)."""
    import xarray as xr

    T = np.geomspace(0.005, 0.5, len(outcomes) + 1)
    K = TK.size
    rho = equilibrium.signal_fraction(TK, T)
    dn = equilibrium.truncated_distortion(TK, T)
    rho[-1], dn[-1] = np.nan, np.nan  # the point that did not run
    stop = np.array([o[0] for o in outcomes] + [""], dtype=object)
    stop[-1] = np.nan
    runs = np.array([o[1] for o in outcomes] + [np.nan], dtype=float)
    best = np.array([o[2] for o in outcomes] + [np.nan], dtype=float)
    training = {"max_updates": MAX_UPDATES, "patience": PATIENCE} if training is None else training
    return xr.Dataset(
        {
            "signal_fraction": (("T", "seed", "latent"), rho[:, None, :]),
            "truncated_distortion": (("T", "seed", "k"), dn[:, None, :]),
            "stop_reason": (("T", "seed"), stop[:, None]),
            "updates_run": (("T", "seed"), runs[:, None]),
            "best_update": (("T", "seed"), best[:, None]),
            "pca_ratio": ("mode", TK / TK.sum()),
        },
        coords={
            "T": T,
            "seed": [7],
            "latent": np.arange(1, K + 1),
            "k": np.arange(K + 1),
            "mode": np.arange(1, K + 1),
        },
        attrs={"training": json.dumps(training)},
    )


def test_under_equilibrated_rule():
    stop, runs, best = (np.array(c, dtype=object) for c in zip(*OUTCOMES, strict=True))
    np.testing.assert_array_equal(
        equilibration.under_equilibrated(stop, runs, best, patience=3000),
        [False, True, True, False],
    )
    # patience unknown: every budget stop counts
    np.testing.assert_array_equal(
        equilibration.under_equilibrated(stop, runs, best), [False, True, True, True]
    )


@pytest.mark.parametrize(
    "patience, max_updates", [(0.25, 12000), (0.1, 500000), (0.0001, 500), (5000, 12000)]
)
def test_patience_updates_is_the_trainers_rule(patience, max_updates):
    from collapse_spectroscopy.training.scan_point import TrainConfig

    config = TrainConfig(patience=patience, max_updates=max_updates)
    training = {"patience": patience, "max_updates": max_updates}
    assert equilibration.scan_patience(training) == config.patience_updates


@pytest.mark.parametrize(
    "patience, max_updates, updates",
    [(0.25, 12000, 3000), (0.1, 500000, 50000), (0.0001, 500, 1), (5000, 12000, 5000)],
)
def test_patience_updates_rule(patience, max_updates, updates):
    # below 1 a fraction of the budget (at least one update), else a count
    assert equilibration.patience_updates(patience, max_updates) == updates


def test_patience_updates_unknown():
    assert equilibration.scan_patience({}) is None
    assert equilibration.scan_patience({"patience": "x", "max_updates": 10}) is None


def test_summary_lists_under_equilibrated_points():
    _, summary = spectra.summarize(outcome_scan())
    block = summary["under_equilibrated"]
    assert block["count"] == 2 and block["of"] == 4
    assert block["patience_updates"] == 3000
    T = np.geomspace(0.005, 0.5, 5)
    assert block["points"] == [
        {"T": T[1], "seed": 7, "updates_run": 12000, "best_update": 12000},
        {"T": T[2], "seed": 7, "updates_run": 12000, "best_update": 9500},
    ]
    assert summary["stop_reasons"] == {"early_stopping": 1, "max_updates": 3}
    json.dumps(summary)  # JSON-ready


def test_summary_reports_training_cost():
    # the four points that ran (OUTCOMES) and the fifth that did not (NaN): the block sums
    # and orders the integers listed above, so it must match exactly
    scan = outcome_scan()
    scan["elapsed_s"] = scan["updates_run"] / 400.0  # wall times: left out of the summary
    cost = spectra.summarize(scan)[1]["training_cost"]
    assert cost == {
        "points": 4,
        "updates": 8000 + 3 * 12000,
        "updates_per_point": {"min": 8000, "median": 12000.0, "max": 12000},
    }
    json.dumps(cost)  # JSON-ready


def test_training_cost_without_outcome():
    scan = outcome_scan().drop_vars(["updates_run"])
    assert equilibration.training_cost(scan)["points"] == 0


def test_summary_without_patience_counts_every_budget_stop():
    # points gathered from different training settings: gather drops the attribute
    scan = outcome_scan()
    del scan.attrs["training"]
    block = spectra.summarize(scan)[1]["under_equilibrated"]
    assert block["count"] == 3 and block["patience_updates"] is None


def test_spectra_command_warns_in_one_line(tmp_path, capsys):
    from collapse_spectroscopy.cli import main
    from collapse_spectroscopy.store import scanfile

    scan_path = tmp_path / "scan.nc"
    scanfile.write(outcome_scan(), scan_path)
    summary = tmp_path / "summary.json"
    args = ["spectra", str(scan_path), "--out", str(tmp_path / "s.csv"), "--summary"]
    assert main([*args, str(summary)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "2 of 4 scan points are under-equilibrated" in err[0]
    assert "(T=0.01581, seed 7), (T=0.05, seed 7)" in err[0]
    assert json.loads(summary.read_text())["under_equilibrated"]["count"] == 2

    equilibrated = outcome_scan([OUTCOMES[0], OUTCOMES[3]])
    scanfile.write(equilibrated, scan_path)
    assert main([*args, str(summary)]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads(summary.read_text())["under_equilibrated"]["points"] == []


@pytest.mark.parametrize("command", ["spectra", "figures"])
@pytest.mark.parametrize("rho_min", ["1.5", "-0.1", "nan"])
def test_rho_min_outside_0_1_is_one_clear_line(tmp_path, capsys, command, rho_min):
    from collapse_spectroscopy.cli import main
    from collapse_spectroscopy.store import scanfile

    scan_path = tmp_path / "scan.nc"
    scanfile.write(outcome_scan(), scan_path)
    table = tmp_path / "s.csv"
    table.write_text("rank\n1\n")
    if command == "spectra":
        args = ["spectra", str(scan_path), "--out", str(table)]
    else:
        args = ["figures", str(scan_path), str(table), "--out-dir", str(tmp_path / "f")]
    assert main([*args, "--rho-min", rho_min]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"collapse-spectroscopy {command}: error: --rho-min {float(rho_min)!r}: "
        "expected a number in [0, 1)"
    ]
    assert not (tmp_path / "f").exists()


# ---------------------------------------------------------------------------------------
# The model-free crossing threshold (docs/science.md §9)


@pytest.mark.parametrize("tk", [0.4, 0.2, 0.08, 0.03, 0.01])
@pytest.mark.parametrize("num", [8, 20])
def test_crossing_threshold_of_the_mean_field_law_within_its_interpolation_error(tk, num):
    # rho = 1 - T/T_k = f(s), s = log T, crosses rho_min at T_c = T_k (1 - rho_min). f is
    # concave with f'' = -T/T_k, so on the bracket [s_a, s_b] the chord L lies below f by
    # f - L = (T_xi / 2 T_k) (s - s_a)(s_b - s), T_xi in [T_a, T_b] (the interpolation
    # remainder). At the returned s*, L = rho_min and f - rho_min = (T_c - T*) / T_k, hence
    #     T_a g / 2  <=  T_c - T*  <=  T_b g / 2,   g = (s* - s_a)(s_b - s*).
    # Interpolating linearly in T instead would be exact (T* = T_c) and fail the lower bound.
    # The law unclipped (rho < 0 above T_k), so that f is that one concave function on every
    # bracket; the equilibrium's rho = 0 above T_k would bend the chord at T_k.
    T = np.geomspace(0.002, 0.9, num)
    rho = 1 - T / tk
    fit = thresholds.crossing_threshold(np.repeat(T, 2), np.repeat(rho, 2))  # two equal seeds
    t_c = tk * (1 - thresholds.RHO_MIN)
    b = np.searchsorted(T, t_c)
    t_a, t_b = T[b - 1], T[b]
    s = np.log(fit.threshold)
    g = (s - np.log(t_a)) * (np.log(t_b) - s)
    assert g > 0 and fit.note == ""
    assert t_a * g / 2 * (1 - 1e-9) <= t_c - fit.threshold <= t_b * g / 2 * (1 + 1e-9)
    assert fit.points == np.sum(rho > thresholds.RHO_MIN)


def test_crossing_threshold_is_exact_where_rho_is_linear_in_log_t():
    # rho = 0.3 - 0.1 log T (clipped at 0): linear in log T, so the interpolation is exact,
    # and the crossing of 0.05 is at log T = (0.3 - 0.05) / 0.1 = 2.5
    T = np.geomspace(0.01, 1e3, 9)
    rho = np.clip(0.3 - 0.1 * np.log(T), 0, None)
    fit = thresholds.crossing_threshold(T, rho, rho_min=0.05)
    assert fit.threshold == pytest.approx(np.exp(2.5), rel=1e-12)


def test_crossing_threshold_averages_the_seeds_at_each_temperature():
    # two seeds scatter around rho = 0.3 - 0.1 log T by +-d (d different at each T), one
    # point did not run (NaN): the seed mean is the line, so the crossing is exp(2.5).
    # Crossings per seed, then averaged, would give another number.
    T = np.geomspace(0.01, 1e3, 9)
    line = 0.3 - 0.1 * np.log(T)
    d = np.linspace(0.01, 0.09, T.size)
    t = np.concatenate([T, T, [T[4]]])
    rho = np.concatenate([line + d, line - d, [np.nan]])
    fit = thresholds.crossing_threshold(t, rho, rho_min=0.05)
    assert fit.threshold == pytest.approx(np.exp(2.5), rel=1e-12)
    per_seed = [thresholds.crossing_threshold(T, r, 0.05).threshold for r in (line + d, line - d)]
    assert abs(np.mean(per_seed) - np.exp(2.5)) > 1e-3 * np.exp(2.5)


def test_crossing_threshold_takes_the_highest_crossing():
    # down through 0.05 twice: between 1 and 2, and between 4 and 8; the threshold is the
    # hotter one, log T* = log 4 + (0.3 - 0.05) / (0.3 - 0.02) log 2
    T = [1.0, 2.0, 4.0, 8.0, 16.0]
    fit = thresholds.crossing_threshold(T, [0.9, 0.01, 0.3, 0.02, 0.0], rho_min=0.05)
    assert fit.threshold == pytest.approx(4.0 * 2 ** (0.25 / 0.28), rel=1e-12)
    assert fit.points == 2 and "2 times" in fit.note


@pytest.mark.parametrize(
    "rho, reason",
    [
        ([0.9, 0.5, 0.2], "still above 0.05 at the highest T (1)"),
        ([0.05, 0.01, 0.0], "never above 0.05"),  # rho = rho_min is not above it
        ([0.0, 0.0, 0.0], "never above 0.05"),
        ([np.nan, np.nan, np.nan], "no scan point with a finite rho"),
        ([0.0, 0.3, 0.6], "still above 0.05 at the highest T (1)"),  # rising: never falls
    ],
)
def test_crossing_threshold_outside_the_scan_is_nan_with_a_reason(rho, reason):
    fit = thresholds.crossing_threshold([0.01, 0.1, 1.0], rho)
    assert np.isnan(fit.threshold)
    assert reason in fit.note


def test_crossing_columns_come_after_the_existing_ones():
    T = np.array([0.01, 0.1, 0.5])
    rho = np.array([[0.9, 0.01], [0.7, 0.0], [0.02, 0.0]])
    dn = np.array([[1.0, 0.2, 0.19], [1.0, 0.3, 0.3], [1.0, 0.8, 0.8]])
    table = spectra.spectra_table(T, rho, dn, pca_ratio=[0.7, 0.3], pca_eval=[1.0, 0.3, 0.0])
    assert list(table.columns) == [
        *spectra.SPECTRA_COLUMNS,
        "free_threshold",
        "fit_note",
        "pca_eval_utility",
        "crossing_threshold",
        "crossing_note",
    ]
    fit = thresholds.crossing_threshold(T, rho[:, 0])
    assert table.crossing_threshold[0] == fit.threshold
    assert np.isnan(table.crossing_threshold[1]) and "never above" in table.crossing_note[1]
