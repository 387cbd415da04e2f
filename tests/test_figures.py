"""Figs 1-4 from a scan built from the analytic equilibrium (plus noise)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from collapse_spectroscopy import equilibrium, figures  # noqa: E402
from collapse_spectroscopy.spectra import (  # noqa: E402
    pca_truncation_distortion,
    spectra_table,
)

SPECTRUM = np.array([0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0])


def equilibrium_scan(
    spectrum=SPECTRUM, K=10, temperatures=None, seeds=(0, 1), noise=0.01, rng_seed=0
) -> xr.Dataset:
    """A gathered-scan lookalike (the :func:`.scanfile.gather` contract) at equilibrium.

    ``K - len(spectrum)`` spare latents are collapsed (``m = 0``, ``v = 1``); ``m`` and
    ``v`` get multiplicative noise, the rest follows from them; latents are ranked by rho
    at each point as the real pipeline does.
    """
    rng = np.random.default_rng(rng_seed)
    spectrum = np.asarray(spectrum, dtype=np.float64)
    T = np.geomspace(1e-3, 1.2, 12) if temperatures is None else np.asarray(temperatures, float)
    nT, nS, d = T.size, len(seeds), spectrum.size
    modes = np.sort(spectrum)[::-1][:K]
    pad = K - modes.size
    m = np.concatenate([equilibrium.posterior_mean_square(modes, T), np.zeros((nT, pad))], -1)
    v = np.concatenate([equilibrium.posterior_variance(modes, T), np.ones((nT, pad))], -1)
    m = m[:, None, :] * np.exp(noise * rng.standard_normal((nT, nS, K))) + noise**2 * rng.random(
        (nT, nS, K)
    )
    v = v[:, None, :] * np.exp(noise * rng.standard_normal((nT, nS, K)))
    jensen = noise * rng.random((nT, nS, K))
    l = np.log(v) - jensen  # noqa: E741
    rho = m / (m + v)
    order = np.argsort(-rho, axis=-1)
    m, v, l, rho, jensen = (np.take_along_axis(a, order, -1) for a in (m, v, l, rho, jensen))
    dn = equilibrium.truncated_distortion(modes, T)  # (T, min(K, d) + 1)
    dn = np.concatenate([dn, np.repeat(dn[:, -1:], K + 1 - dn.shape[1], axis=1)], axis=1)
    dn = dn[:, None, :] * (1 + noise * 0.1 * rng.standard_normal((nT, nS, K + 1)))
    per = ("T", "seed", "latent")
    ds = xr.Dataset(
        {
            "posterior_mean_square": (per, m),
            "posterior_variance": (per, v),
            "posterior_log_variance": (per, l),
            "kl_rate": (per, 0.5 * (m + v - 1 - l)),
            "signal_fraction": (per, rho),
            "latent_scale": (per, m + v),
            "jensen_gap": (per, jensen),
            "truncated_distortion": (("T", "seed", "k"), dn),
            "beta": (("T", "seed"), np.repeat(T[:, None] * d, nS, axis=1)),
            "pca_ratio": ("mode", spectrum),
            "true_spectrum": ("mode", spectrum),
            "pca_eval_distortion": ("mode_k", pca_truncation_distortion(spectrum * 1.05)),
        },
        coords={
            "T": T,
            "seed": np.asarray(seeds),
            "latent": np.arange(1, K + 1),
            "k": np.arange(K + 1),
            "mode": np.arange(1, d + 1),
        },
    )
    return ds


def table_of(scan: xr.Dataset):
    T = np.repeat(scan["T"].values, scan.sizes["seed"])
    rho = scan["signal_fraction"].transpose("T", "seed", "latent").values
    dn = scan["truncated_distortion"].transpose("T", "seed", "k").values
    pca_eval = scan["pca_eval_distortion"].values if "pca_eval_distortion" in scan else None
    return spectra_table(
        T, rho.reshape(T.size, -1), dn.reshape(T.size, -1), scan["pca_ratio"].values, pca_eval
    )


def holed(scan: xr.Dataset):
    """``scan`` with a missing (T, seed) point and a temperature where no seed ran."""
    out = scan.copy(deep=True)
    for name in (
        "signal_fraction",
        "posterior_mean_square",
        "posterior_log_variance",
        "posterior_variance",
        "kl_rate",
        "latent_scale",
        "jensen_gap",
        "truncated_distortion",
    ):
        out[name][dict(T=3, seed=1)] = np.nan
        out[name][dict(T=5)] = np.nan
    return out


def render(fig) -> np.ndarray:
    """Draw ``fig`` to a small PNG in memory (runs the layout) and read it back."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    buf.seek(0)
    return mpimg.imread(buf)


@pytest.fixture(scope="module")
def scan():
    return equilibrium_scan()


@pytest.fixture(scope="module")
def written(scan, tmp_path_factory):
    """make_figures on a scan with NaN holes, a mode without a fit, a negative utility,
    the table read back from CSV as the ``figures`` CLI does."""
    tmp = tmp_path_factory.mktemp("figs")
    scan = holed(scan)
    table = table_of(scan)
    table.loc[2, "collapse_threshold"] = np.nan
    table.loc[0, "utility"] = -1e-9
    table.to_csv(tmp / "spectra.csv", index=False)
    table = pd.read_csv(tmp / "spectra.csv")
    outdir = tmp / "out"
    return outdir, figures.make_figures(scan, table, outdir)


def test_make_figures_writes_eight_valid_files(written):
    outdir, paths = written
    names = {p.name for p in paths}
    assert names == {f"{n}.{ext}" for n in figures.FIGURE_NAMES for ext in ("png", "pdf")}
    for p in paths:
        assert p.parent == outdir and p.is_file() and p.stat().st_size > 1000, p
        if p.suffix == ".pdf":
            assert p.read_bytes().startswith(b"%PDF")
        else:
            img = mpimg.imread(p)
            # >= 200 dpi: the narrowest figure is 3.4 in wide
            assert img.ndim == 3 and img.shape[1] >= 3.4 * 200 and img.shape[0] > 500
    assert not list(outdir.glob(".tmp-*"))  # atomic writes leave nothing behind


def test_fig3_one_point_per_fitted_mode(scan):
    table = table_of(scan)
    fig = figures.fig3_duality(scan, table)
    ax = fig.axes[0]
    (vae,) = [c for c in ax.collections if c.get_gid() == "vae"]
    ok = (table["collapse_threshold"] > 0) & (table["utility"] > 0)
    assert len(vae.get_offsets()) == int(ok.sum()) == 7  # the 7 modes with lambda > 0
    np.testing.assert_allclose(
        np.sort(vae.get_offsets()[:, 0]), np.sort(table["collapse_threshold"][ok])
    )
    (pca,) = [c for c in ax.collections if c.get_gid() == "pca"]
    assert len(pca.get_offsets()) == 7  # the zero eigenvalue is left out
    assert ax.get_xscale() == ax.get_yscale() == "log"
    # the fitted thresholds of an equilibrium scan sit on the diagonal within a few per cent
    np.testing.assert_allclose(table["collapse_threshold"][:6], SPECTRUM[:6], rtol=0.05)


def test_fig3_skips_missing_and_non_positive(scan):
    table = table_of(scan)
    table.loc[2, "collapse_threshold"] = np.nan  # a mode without a fit
    table.loc[0, "utility"] = -1e-9  # a non-positive utility
    fig = figures.fig3_duality(scan, table)
    (vae,) = [c for c in fig.axes[0].collections if c.get_gid() == "vae"]
    assert len(vae.get_offsets()) == 5
    assert np.isfinite(vae.get_offsets()).all()


def test_fig1_has_theory_fits_and_pca_marks(scan):
    fig = figures.fig1_collapse_scan(scan, table_of(scan))
    ax_m, ax_rho, ax_l = fig.axes[:3]
    for ax in (ax_m, ax_rho, ax_l):
        theory = [ln for ln in ax.get_lines() if ln.get_gid() == "theory"]
        assert len(theory) == 7  # one dashed curve per mode with lambda > 0
        assert all(ln.get_linestyle() == "--" for ln in theory)
        assert ax.get_xscale() == "log"
    assert len([ln for ln in ax_rho.get_lines() if ln.get_gid() == "fit"]) == 7
    # thresholds 0.003 ... 0.5 all lie inside the scan range 1e-3 ... 1.2
    assert len([ln for ln in ax_rho.get_lines() if ln.get_gid() == "pca_mark"]) == 7
    # the theory of rank 1 is rho = 1 - T/0.5, in rank 1's colour
    colors = figures.rank_colors(scan)
    (line,) = [
        ln for ln in ax_rho.get_lines() if ln.get_gid() == "theory" and ln.get_color() == colors(1)
    ]
    x, y = line.get_data()
    np.testing.assert_allclose(y, np.clip(1 - x / 0.5, 0, None))


def test_fig2_guides_at_best_levels(scan):
    table = table_of(scan)
    fig = figures.fig2_truncated_distortion(scan, table)
    left, right = fig.axes[:2]
    guides = sorted(ln.get_ydata()[0] for ln in left.get_lines() if ln.get_gid() == "guide")
    colored = table["rank"] <= figures.rank_colors(scan).n
    np.testing.assert_allclose(guides, np.sort(table["best_distortion"][colored]))
    assert left.get_yscale() == right.get_yscale() == "log"
    (vae,) = [c for c in right.collections if c.get_gid() == "vae"]
    assert len(vae.get_offsets()) == scan.sizes["latent"]


def test_only_modes_that_activate_are_coloured(scan):
    # 7 modes have lambda > 0 and activate; the zero mode and the 2 spare latents never do
    colors = figures.rank_colors(scan)
    assert colors.n == 7
    assert colors(8) == colors(10) != colors(7)


@pytest.mark.parametrize(
    "spectrum, K, temperatures, seeds",
    [
        ([0.7, 0.3], 2, [0.1], (0,)),  # K = 2, one point, one seed
        # WorldClim-like: d = 19 with a dependent feature, K = 32, 60 points, 3 seeds
        (np.r_[np.geomspace(0.4, 2e-5, 18), 1e-16], 32, np.geomspace(1e-5, 1.2, 60), (0, 1, 2)),
    ],
)
def test_shapes_from_tiny_to_paper_size(spectrum, K, temperatures, seeds):
    spectrum = np.asarray(spectrum) / np.sum(spectrum)
    scan = equilibrium_scan(spectrum, K=K, temperatures=temperatures, seeds=seeds)
    table = table_of(scan)
    for draw in figures.FIGURES.values():
        assert render(draw(scan, table)).ndim == 3
    assert figures.rank_colors(scan).n == min(K, np.sum(spectrum > figures.PCA_FLOOR))
