"""Fig 5 (utility concentration), the run key ``null_run`` and the linear-null-model labels
of Figs 1-4 for a nonlinear run (issue 11; docs/science.md §9).

The oracle of Fig 5 is a hand-built scan whose ``n(eps)`` is known by hand: best
truncated distortions ``Dn* = 1, 0.2, 0.05, 0.005`` and a PCA spectrum ``0.5, 0.3, 0.15,
0.05`` (PCA curve ``1, 0.5, 0.2, 0.05, 0``), read back from the drawn artists by their
gids. The expected numbers below are worked out in the comments, not computed with the
code under test.
"""

from __future__ import annotations

import copy
import inspect
import json
import subprocess
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from collapse_spectroscopy import figures  # noqa: E402
from collapse_spectroscopy.analysis.spectra import summarize  # noqa: E402
from collapse_spectroscopy.cli import main  # noqa: E402
from collapse_spectroscopy.config.checks import check_config  # noqa: E402
from collapse_spectroscopy.errors import InputError  # noqa: E402
from collapse_spectroscopy.figures import (
    fig1_collapse_scan,
    fig2_truncated_distortion,
    fig3_duality,
    fig4_latent_scale,
    fig5_utility_concentration,
)
from collapse_spectroscopy.figures.common import NullRun, is_nonlinear  # noqa: E402
from test_figures import equilibrium_scan, legend_texts, table_of, with_outcome  # noqa: E402
from workflow_helpers import ROOT, SNAKEMAKE  # noqa: E402

BEST = [1.0, 0.2, 0.05, 0.005]  # Dn*_k, k = 0..3 (K = 3)
PCA = [0.5, 0.3, 0.15, 0.05]  # lambda_k / V: PCA curve 1, 0.5, 0.2, 0.05, 0
EPS = [0.1, 0.01, 0.001]
# n(eps) = min{k : curve_k <= eps}, by hand:
#   VAE: 0.1 -> k=2 (0.05), 0.01 -> k=3 (0.005), 0.001 -> never (None)
#   PCA: 0.1 -> k=3 (0.05), 0.01 -> k=4 (0), 0.001 -> k=4
N_VAE = {0.1: 2, 0.01: 3}
# the PCA truncation curve by its definition, 1 - sum_{i<=k} lambda_i/V, in float64 (0.2
# is 0.19999999999999996 there: the drawn steps jump at the float levels)
PCA_CURVE = list(1.0 - np.cumsum(np.r_[0.0, PCA]))
N_PCA = {0.1: 3, 0.01: 4, 0.001: 4}
# participation ratios (sum w)^2 / sum w^2, by hand:
#   VAE utilities 0.8, 0.15, 0.045: 0.995^2 / 0.664525 = 1.4898 -> "1.49"
#   PCA 0.5, 0.3, 0.15, 0.05: 1 / 0.365 = 2.7397 -> "2.74"


def concentration_scan(best=BEST, pca=PCA, flagged_T=()) -> tuple[xr.Dataset, pd.DataFrame]:
    """A two-temperature, one-seed scan whose best distortions are ``best`` (taken at the
    first temperature; the second is worse) and its spectra table."""
    best = np.asarray(best, dtype=np.float64)
    K = best.size - 1
    dn = np.stack([best, np.minimum(1.0, best * 3)])[:, None, :]  # (T, seed, k)
    rho = np.tile(np.linspace(0.9, 0.1, K), (2, 1, 1))
    scan = xr.Dataset(
        {
            "truncated_distortion": (("T", "seed", "k"), dn),
            "signal_fraction": (("T", "seed", "latent"), rho),
            "pca_ratio": ("mode", np.asarray(pca, dtype=np.float64)),
        },
        coords={
            "T": [0.01, 0.1],
            "seed": [0],
            "latent": np.arange(1, K + 1),
            "k": np.arange(K + 1),
            "mode": np.arange(1, len(pca) + 1),
        },
    )
    if flagged_T:
        scan = with_outcome(scan, flagged_T=flagged_T)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, K + 1),
            "best_distortion": best[1:],
            "utility": best[:-1] - best[1:],
            "pca_ratio": np.asarray(pca, dtype=np.float64)[:K],
        }
    )
    return scan, table


def lines(ax, gid):
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def points(ax, gid) -> dict[float, float]:
    """``{x: y}`` of the markers drawn with ``gid``."""
    return {
        float(x): float(y)
        for ln in lines(ax, gid)
        for x, y in zip(ln.get_xdata(), ln.get_ydata(), strict=True)
    }


@pytest.fixture(scope="module")
def drawn():
    scan, table = concentration_scan()
    return fig5_utility_concentration.draw(scan, table, tolerances=EPS)


def test_n_at_the_tolerances_is_the_hand_computed_one(drawn):
    right = drawn.axes[1]
    assert points(right, "n_vae") == N_VAE  # eps = 0.001: never reached, no marker
    assert points(right, "n_pca") == N_PCA
    assert not lines(right, "n_null") and not lines(right, "step_null")  # no null run given


def test_steps_jump_exactly_at_the_curves_levels(drawn):
    # n(eps) is a step function that changes only where eps crosses a level of the curve
    # (docs/science.md §9): the drawn steps change value exactly at the VAE's Dn*_k and at
    # PCA's levels inside the axis, and are NaN (no line) below the VAE's last level
    right = drawn.axes[1]
    for gid, levels in (("step_vae", BEST), ("step_pca", PCA_CURVE)):
        (step,) = lines(right, gid)
        assert step.get_drawstyle() == "steps-post"
        x, y = np.asarray(step.get_xdata()), np.asarray(step.get_ydata(), dtype=float)
        # a naive loop over the levels, k = 0 first
        naive = [next((k for k, v in enumerate(levels) if v <= e), np.nan) for e in x]
        np.testing.assert_array_equal(y, naive)
        changed = (y[1:] != y[:-1]) & ~(np.isnan(y[1:]) & np.isnan(y[:-1]))
        inside = [v for v in levels if v > x[0]]  # every level but PCA's ~0 at k = 4
        np.testing.assert_allclose(np.sort(x[1:][changed]), np.sort(inside), rtol=1e-12)
    assert right.get_xscale() == "log"


def test_panel_a_draws_the_curves_and_the_tolerances(drawn):
    left = drawn.axes[0]
    # k >= 1: Dn*_0 = 1 for every model is not drawn (the rank axis starts at 1, as Fig 2b's)
    (vae,) = lines(left, "curve_vae")
    np.testing.assert_array_equal(vae.get_ydata(), BEST[1:])
    np.testing.assert_array_equal(vae.get_xdata(), [1, 2, 3])
    (pca,) = lines(left, "curve_pca")
    # 1 - cumsum: 0.5 + 0.3 + 0.15 leaves 0.05 up to rounding; the 0 at k = 4 is off the
    # log axis and drawn as a triangle on the bottom edge instead
    np.testing.assert_allclose(pca.get_ydata()[:3], [0.5, 0.2, 0.05], rtol=1e-12)
    np.testing.assert_array_equal(pca.get_xdata(), [1, 2, 3])
    assert points(left, "below_axis").keys() == {4.0}
    guides = sorted(ln.get_ydata()[0] for ln in lines(left, "tolerance"))
    assert guides == sorted(EPS)
    assert left.get_yscale() == "log"


def test_legend_gives_the_participation_ratios(drawn):
    texts = legend_texts(drawn)
    assert "VAE, PR = 1.49" in texts
    assert "PCA, train (linear null model), PR = 2.74" in texts


def test_null_run_is_drawn_only_when_given():
    scan, table = concentration_scan()
    # the linear run reaches the PCA curve except at k = 3: 0.06 > 0.05
    null_best = [1.0, 0.5, 0.2, 0.06]
    _, null_table = concentration_scan(best=null_best)
    fig = fig5_utility_concentration.draw(
        scan, table, tolerances=EPS, null_run=NullRun("lin", null_table)
    )
    left, right = fig.axes
    (curve,) = lines(left, "curve_null")
    np.testing.assert_array_equal(curve.get_ydata(), null_best[1:])  # k >= 1
    # null: 0.1 -> k=3 (0.06); 0.01 and 0.001 -> never within its 3 latents
    assert points(right, "n_null") == {0.1: 3}
    assert any(t.startswith("linear VAE, run lin, PR = ") for t in legend_texts(fig))
    without = fig5_utility_concentration.draw(scan, table)
    assert not any("run lin" in t for t in legend_texts(without))
    assert not lines(without.axes[0], "curve_null") and not lines(without.axes[1], "n_null")


# The autoencoder baseline's table (baselines/autoencoder.csv): k = 1, 2, 3 at 0.3, 0.02,
# 0.004, k = 1 stopped at its budget (under-equilibrated). By hand, with Dn_0 = 1:
#   n(eps): 0.1 -> k=2 (0.02), 0.01 -> k=3 (0.004), 0.001 -> never within 3 latents
#   PR of the utilities 0.7, 0.28, 0.016: 0.996^2 / 0.568656 = 1.7445 -> "1.74"
AE_LEVELS = [0.3, 0.02, 0.004]
N_AE = {0.1: 2, 0.01: 3}


def autoencoder_table(levels=AE_LEVELS, flags=(True, False, False)) -> pd.DataFrame:
    # rows out of order, and flags as text, as pd.read_csv of a rewritten file may give
    rows = pd.DataFrame(
        {"k": [1, 2, 3], "distortion": levels, "under_equilibrated": [str(f) for f in flags]}
    )
    return rows.iloc[::-1]


def test_the_autoencoder_baseline_is_drawn_only_when_given():
    scan, table = concentration_scan()
    fig = fig5_utility_concentration.draw(
        scan, table, tolerances=EPS, autoencoder=autoencoder_table()
    )
    left, right = fig.axes
    (curve,) = lines(left, "curve_ae")
    np.testing.assert_array_equal(curve.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(curve.get_ydata(), AE_LEVELS)
    # k = 1 stopped at its budget: hollow, as an under-equilibrated VAE point
    assert points(left, "ae_open") == {1.0: 0.3}
    assert points(left, "ae") == {2.0: 0.02, 3.0: 0.004}
    assert points(right, "n_ae") == N_AE
    assert "autoencoder baseline, PR = 1.74" in legend_texts(fig)
    assert "autoencoder under-equilibrated" in legend_texts(fig)
    # the VAE's own marks are untouched by it
    assert points(right, "n_vae") == N_VAE
    without = fig5_utility_concentration.draw(scan, table, tolerances=EPS)
    assert not any("autoencoder" in t for t in legend_texts(without))
    assert not lines(without.axes[0], "curve_ae") and not lines(without.axes[1], "step_ae")
    none_open = autoencoder_table(flags=(False, False, False))
    fig = fig5_utility_concentration.draw(scan, table, tolerances=EPS, autoencoder=none_open)
    assert "autoencoder under-equilibrated" not in legend_texts(fig)


def test_under_equilibrated_best_points_are_hollow():
    # every Dn*_k comes from the first temperature: flag it and the VAE's points (k >= 1)
    # and its n(eps) markers are hollow; Dn*_0 = 1 is by definition and never is (it is not
    # drawn: the rank axis starts at 1)
    scan, table = concentration_scan(flagged_T=[0])
    fig = fig5_utility_concentration.draw(scan, table, tolerances=EPS)
    left, right = fig.axes
    assert points(left, "open").keys() == {1.0, 2.0, 3.0}
    assert not lines(left, "vae")
    assert points(right, "n_vae_open") == N_VAE and not lines(right, "n_vae")
    assert "best point under-equilibrated" in legend_texts(fig)
    # flag the other temperature instead: it gives no best level, nothing is hollow
    scan, table = concentration_scan(flagged_T=[1])
    fig = fig5_utility_concentration.draw(scan, table, tolerances=EPS)
    assert not lines(fig.axes[0], "open") and not lines(fig.axes[1], "n_vae_open")


# ---------------------------------------------------------------------------------------
# The extra inputs reach the figures that declare them, and only those


def test_each_figure_declares_only_known_extras_with_defaults():
    for name, draw in figures.REGISTRY.items():
        extras = figures.declared_extras(draw)
        params = inspect.signature(draw).parameters
        kw_only = [p for p in params.values() if p.kind is p.KEYWORD_ONLY]
        assert [p.name for p in kw_only] == list(extras), name  # none unknown
        assert all(p.default is not p.empty for p in kw_only), name
    assert figures.declared_extras(fig5_utility_concentration.draw) == (
        "tolerances",
        "null_run",
        "autoencoder",
        "selection",
    )
    assert figures.declared_extras(fig2_truncated_distortion.draw) == ("selection",)
    assert figures.declared_extras(fig1_collapse_scan.draw) == ("fig1_view", "refined")


def test_make_figures_passes_each_figure_its_extras(tmp_path, monkeypatch):
    calls = {}

    def plain(name):
        def draw(scan, spectra, rho_min=0.05):  # a figure without extras: TypeError on any
            calls[name] = {}
            return Figure(figsize=(1, 1))

        return draw

    def wanting(scan, spectra, rho_min=0.05, *, tolerances=(1.0,), null_run=None, autoencoder=None):
        calls["fig5"] = {"tolerances": tolerances, "null_run": null_run, "ae": autoencoder}
        return Figure(figsize=(1, 1))

    for module in (fig1_collapse_scan, fig2_truncated_distortion, fig3_duality, fig4_latent_scale):
        monkeypatch.setattr(module, "draw", plain(module.__name__))
    monkeypatch.setattr(fig5_utility_concentration, "draw", wanting)
    null, ae = NullRun("lin", pd.DataFrame()), pd.DataFrame({"k": [1]})
    figures.make_figures(
        None, None, tmp_path, 0.05, tolerances=[0.2], null_run=null, autoencoder=ae
    )
    assert calls["fig5"] == {"tolerances": [0.2], "null_run": null, "ae": ae}
    assert len(calls) == 5
    figures.make_figures(None, None, tmp_path, 0.05)  # none given: the figure's defaults
    assert calls["fig5"] == {"tolerances": (1.0,), "null_run": None, "ae": None}


# ---------------------------------------------------------------------------------------
# Figs 1-4 of a nonlinear run label the PCA/equilibrium overlays as the linear null model


def mlp(scan: xr.Dataset) -> xr.Dataset:
    out = scan.copy()
    # what an MLP scan point carries (pointjob: families.model_spec) and gather keeps
    out.attrs["model"] = json.dumps({"kind": "mlp", "hidden": [64, 64], "activation": "gelu"})
    return out


@pytest.mark.parametrize(
    "draw, linear, nonlinear",
    [
        (fig1_collapse_scan.draw, "equilibrium (PCA)", "linear null model (PCA equilibrium)"),
        (fig2_truncated_distortion.draw, "PCA (train)", "linear null model: PCA (train)"),
        (fig3_duality.draw, r"PCA $\lambda_k/V$", r"linear null model (PCA $\lambda_k/V$)"),
        (fig4_latent_scale.draw, "equilibrium", "linear null model (equilibrium)"),
    ],
)
def test_overlays_of_a_nonlinear_run_are_the_linear_null_model(draw, linear, nonlinear):
    scan = equilibrium_scan(K=8, temperatures=np.geomspace(1e-3, 1, 6), seeds=(0,))
    table = table_of(scan)
    texts = legend_texts(draw(scan, table))
    assert linear in texts and not any("null model" in t for t in texts)
    texts = legend_texts(draw(mlp(scan), table))
    assert nonlinear in texts and linear not in texts


@pytest.mark.parametrize(
    "draw, linear, nonlinear",
    [
        (fig1_collapse_scan.draw, r"fit $\rho_k = 1-T/T_k$", r"empirical fit $\rho_k = 1-T/T_k$"),
        (fig3_duality.draw, "$u = T$", "$u = T$ (linear null model's duality)"),
    ],
)
def test_the_fits_and_the_duality_of_a_nonlinear_run_are_labelled_empirical(
    draw, linear, nonlinear
):
    """The law rho = 1 - T/T_k and the duality u_k = T_k hold near a linear model's
    equilibrium only (docs/science.md §9): an MLP run's figures say so."""
    scan = equilibrium_scan(K=8, temperatures=np.geomspace(1e-3, 1, 6), seeds=(0,))
    table = table_of(scan)
    fig = draw(scan, table)
    assert linear in legend_texts(fig)
    fig = draw(mlp(scan), table)
    assert nonlinear in legend_texts(fig) and linear not in legend_texts(fig)
    if draw is fig3_duality.draw:
        assert fig.axes[0].get_xlabel() == r"empirical collapse threshold $T_k$"


def test_model_kind_from_the_scan_attrs():
    scan = xr.Dataset()
    assert not is_nonlinear(scan)  # a linear run writes no model attribute
    assert is_nonlinear(mlp(scan))
    scan.attrs["model"] = json.dumps({"kind": "linear"})
    assert not is_nonlinear(scan)


# ---------------------------------------------------------------------------------------
# The figures command: --tolerances, --null-spectra, --null-name


@pytest.fixture
def tables(tmp_path):
    scan, table = concentration_scan()
    scan.to_netcdf(tmp_path / "scan.nc")
    table.to_csv(tmp_path / "spectra.csv", index=False)
    (tmp_path / "lin").mkdir()
    table.to_csv(tmp_path / "lin" / "spectra.csv", index=False)
    return tmp_path


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--null-spectra", "nope.csv"], "--null-spectra 'nope.csv' does not exist"),
        (["--null-name", "lin"], "--null-name given without --null-spectra"),
        (["--null-spectra", "empty.csv"], "cannot be read as CSV"),
        (["--null-spectra", "bad.csv"], "lacks column(s) best_distortion, utility"),
        (["--tolerances", "0.1,-1"], "--tolerances '-1'"),
    ],
)
def test_figures_command_names_bad_null_input(tables, monkeypatch, capsys, extra, words):
    monkeypatch.chdir(tables)
    pd.DataFrame({"rank": [1]}).to_csv("bad.csv", index=False)
    (tables / "empty.csv").write_text("")
    args = ["figures", "scan.nc", "spectra.csv", "--out-dir", "out", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tables / "out").exists()


def test_figures_command_reads_the_null_run(tables, monkeypatch):
    seen = {}

    def spy(
        scan, spectra, outdir, rho_min, *, tolerances=None, null_run=None, fig1_view=None,
        autoencoder=None, refined=None, selection=None,
    ):  # fmt: skip
        seen.update(
            tolerances=tolerances, null_run=null_run, fig1_view=fig1_view, autoencoder=autoencoder
        )
        assert refined is None  # no --refined: Fig 1's own default
        # the spectra's choice, resolved as spectra resolves it (auto: test for a linear scan)
        assert selection.select_on == "test" and selection.pruning == "zero"
        return []

    monkeypatch.setattr(figures, "make_figures", spy)
    args = ["figures", str(tables / "scan.nc"), str(tables / "spectra.csv"), "--out-dir"]
    null = ["--null-spectra", str(tables / "lin" / "spectra.csv")]
    assert main([*args, str(tables / "out"), *null, "--tolerances", "0.2,0.02"]) == 0
    assert seen["tolerances"] == [0.2, 0.02]
    assert seen["fig1_view"] == "latents"  # figures.fig1_view's default
    assert seen["null_run"].name == "lin"  # the folder holding the table
    np.testing.assert_array_equal(seen["null_run"].spectra["best_distortion"], BEST[1:])
    assert main([*args, str(tables / "out"), *null, "--null-name", "linear_demo"]) == 0
    assert seen["null_run"].name == "linear_demo" and seen["autoencoder"] is None
    ae = tables / "autoencoder.csv"
    autoencoder_table().to_csv(ae, index=False)
    assert main([*args, str(tables / "out"), "--autoencoder", str(ae)]) == 0
    assert seen["autoencoder"]["distortion"].tolist() == AE_LEVELS[::-1]  # as written


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "--autoencoder 'ae.csv' does not exist"),
        ("", "cannot be read as CSV"),
        ("k,distortion\n1,0.5\n", "lacks column(s) under_equilibrated"),
        ("k,distortion,under_equilibrated\n1,0.5,False\n3,0.1,False\n", "one row per k = 1 .. 2"),
    ],
)
def test_figures_command_names_a_bad_autoencoder_table(tables, monkeypatch, capsys, content, words):
    monkeypatch.chdir(tables)
    if content is not None:
        (tables / "ae.csv").write_text(content)
    args = ["figures", "scan.nc", "spectra.csv", "--out-dir", "out", "--autoencoder", "ae.csv"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tables / "out").exists()


# ---------------------------------------------------------------------------------------
# runs.R.null_run: another, linear run on the same dataset, checked before any job

CONFIG = """\
default_runs: [nonlin]
runs:
  lin:
    dataset: {source: synthetic, synthetic_kind: manifold}
    model: {latents: 4}
    training: {max_updates: 600, eval_every: 100}
    scan: {temperatures: [0.01, 0.1]}
  nonlin:
    dataset: {source: synthetic, synthetic_kind: manifold}
    model: {latents: 4, kind: mlp, hidden: [8]}
    training: {max_updates: 600, eval_every: 100}
    scan: {temperatures: [0.01, 0.1]}
    null_run: lin
"""

NULL_HOLES = {  # (what replaces "null_run: lin", words of the one line naming the key)
    "unknown run": (
        "null_run: linn",
        "no such run (configured: lin, lin2, lin3, nonlin, nonlin2)",
    ),
    "itself": ("null_run: nonlin", "cannot be its own null model"),
    "not linear": ("null_run: nonlin2", "run 'nonlin2' has model.kind 'mlp'"),
    "other dataset": ("null_run: lin2", "dataset section differs from runs.nonlin.dataset"),
    "not a name": ("null_run: [lin]", "config key runs.nonlin.null_run: ['lin'] is not"),
    "other split": ("null_run: lin3", "split section differs from runs.nonlin.split"),
}


def holed_config(hole: str) -> dict:
    config = yaml.safe_load(CONFIG.replace("null_run: lin", NULL_HOLES[hole][0]))
    runs = config["runs"]
    runs["nonlin2"] = {**runs["nonlin"], "null_run": "lin"}
    # the same source and kind; the default 10 features against 12
    runs["lin2"] = {**runs["lin"], "dataset": {**runs["lin"]["dataset"], "features": 12}}
    # the same data split differently: its Dn*_k is measured on other cells
    runs["lin3"] = {**runs["lin"], "split": {"block_km": 1000}}
    return config


@pytest.mark.parametrize("hole", NULL_HOLES)
def test_bad_null_run_names_the_key(hole):
    with pytest.raises(InputError) as exc:
        check_config(holed_config(hole))
    message = str(exc.value)
    assert "runs.nonlin.null_run" in message and NULL_HOLES[hole][1] in message, message
    if hole == "other dataset":
        assert "(in features)" in message  # the differing key, defaults filled in
    if hole == "other split":
        assert "(in block_km)" in message


def test_good_null_run_passes_with_defaults_filled_in():
    config = yaml.safe_load(CONFIG)
    check_config(config)
    # "dataset: {source: synthetic, synthetic_kind: manifold, features: 10}" is the same
    # dataset as the default-filled one: resolved sections are compared
    config["runs"]["lin"]["dataset"]["features"] = 10
    check_config(config)


def snakemake_dry(tmp_path, text):
    (tmp_path / "config").mkdir(parents=True)
    (tmp_path / "config" / "config.yaml").write_text(text)
    return subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "-p"]
        + ["--cores", "1", "results/nonlin/figures/fig5_utility_concentration.png"],
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_workflow_passes_the_null_run_to_the_figures_job(tmp_path):
    proc = snakemake_dry(tmp_path / "good", CONFIG)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "--null-spectra results/lin/spectra.csv --null-name lin" in out
    # the null run's whole chain is planned: its spectra job is an input of the figures
    assert "results/lin/spectra.csv" in out and "results/lin/scan.nc" in out
    # a run without null_run: no option, no other run planned
    proc = snakemake_dry(tmp_path / "none", CONFIG.replace("    null_run: lin\n", ""))
    assert proc.returncode == 0, proc.stderr
    assert "--null-spectra" not in proc.stdout and "results/lin/" not in proc.stdout
    # a bad null run stops before any job, naming the key
    proc = snakemake_dry(tmp_path / "bad", CONFIG.replace("null_run: lin", "null_run: linn"))
    assert proc.returncode == 2, proc.stderr
    assert "runs.nonlin.null_run = 'linn': no such run" in proc.stderr
    assert "Traceback" not in proc.stderr and "Building DAG" not in proc.stderr + proc.stdout


WORLDCLIM_LOCAL = ROOT.parent / "shared" / "data" / "worldclim-2.1-10m"
WORLDCLIM_STANDIN = Path(tempfile.gettempdir()) / "collapse-spectroscopy-worldclim-standin"


def readme_local_worldclim() -> dict:
    """The README's local_worldclim.yaml, read from the README itself."""
    text = (ROOT / "README.md").read_text()
    block = text.split("# local_worldclim.yaml\n", 1)[1].split("```", 1)[0]
    recipe = yaml.safe_load(block)
    # the reader's folder: this machine's copy of the layers (the config check refuses a
    # path that does not exist), or an empty stand-in folder where there is none
    local = WORLDCLIM_STANDIN if not WORLDCLIM_LOCAL.is_dir() else WORLDCLIM_LOCAL
    local.mkdir(parents=True, exist_ok=True)
    recipe["runs"]["worldclim"]["dataset"]["path"] = str(local)
    return recipe


def merged(base: dict, extra: dict) -> dict:
    """Snakemake's --configfile merge: nested mappings key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


# two WorldClim runs that download the archive, an MLP one whose null run is the linear one
WORLDCLIM_WITH_NULL_RUN = {
    "default_runs": ["worldclim"],
    "runs": {
        "worldclim": {
            "dataset": {"source": "worldclim", "resolution": "10m"},
            "scan": {"temperatures": [0.01, 0.1]},
        },
        "worldclim_mlp": {
            "dataset": {"source": "worldclim", "resolution": "10m"},
            "model": {"kind": "mlp"},
            "scan": {"temperatures": [0.01, 0.1]},
            "null_run": "worldclim",
        },
    },
}


def test_readme_local_worldclim_recipe_keeps_a_downloading_null_run_valid():
    """Pointing only `worldclim` at a local copy (the README's recipe) leaves an MLP run
    that names it as null run downloading the archive: the same data, so the null run
    still holds; another resolution does not."""
    config = copy.deepcopy(WORLDCLIM_WITH_NULL_RUN)
    check_config(copy.deepcopy(config))
    check_config(merged(config, readme_local_worldclim()))
    other = merged(config, {"runs": {"worldclim": {"dataset": {"resolution": "5m"}}}})
    with pytest.raises(InputError, match=r"runs.worldclim_mlp.null_run.*\(in resolution\)"):
        check_config(other)


def test_panel_b_and_the_summary_count_pca_on_the_evaluation_split_too():
    """The VAE's levels are measured on the evaluation split: n(eps) is also compared with
    the training PCs' truncation measured there (pca_eval_distortion), in panel (b) and in
    summary.json's n_pca_eval, each against a naive loop over that curve."""
    scan, table = concentration_scan()
    ev = np.array([1.0, 0.5, 0.2, 0.04, 0.0005])  # hand-built: k = 0..d
    scan["pca_eval_distortion"] = ("mode_k", ev)
    fig = fig5_utility_concentration.draw(scan, table, tolerances=EPS)
    (step,) = lines(fig.axes[1], "step_pca_eval")
    x, y = np.asarray(step.get_xdata()), np.asarray(step.get_ydata(), dtype=float)
    naive = [next((k for k, v in enumerate(ev) if v <= e), np.nan) for e in x]
    np.testing.assert_array_equal(y, naive)
    _, summary = summarize(scan, tolerances=EPS)
    want = [next((k for k, v in enumerate(ev) if v <= e), None) for e in EPS]
    assert summary["utility_concentration"]["n_pca_eval"] == want
