"""Figs 1-4 from a scan built from the analytic equilibrium (plus noise)."""

from __future__ import annotations

import importlib
import io
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from collapse_spectroscopy import figures
from collapse_spectroscopy.analysis import equilibrium  # noqa: E402
from collapse_spectroscopy.analysis.pca import PCA_FLOOR, pca_truncation_distortion
from collapse_spectroscopy.analysis.spectra import spectra_table
from collapse_spectroscopy.analysis.thresholds import RHO_MIN
from collapse_spectroscopy.figures import (
    fig1_collapse_scan,
    fig2_truncated_distortion,
    fig3_duality,
    fig4_latent_scale,
)
from collapse_spectroscopy.figures.common import rank_colors  # noqa: E402
from collapse_spectroscopy.figures.marks import UNDER_EQUILIBRATED_LABEL  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
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


def render(fig, dpi=40) -> np.ndarray:
    """Draw ``fig`` to a small PNG in memory (runs the layout) and read it back."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    return mpimg.imread(buf)


def data_pixels(fig, dpi=60) -> tuple[np.ndarray, list[int]]:
    """The image of ``fig`` and, for each panel (colour bars aside), how many pixels its
    data (lines, markers, bands, images) change: the panel drawn with and without them."""
    full = render(fig, dpi)
    counts = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        data = [a for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images) if a.get_visible()]
        for artist in data:
            artist.set_visible(False)
        bare = render(fig, dpi)
        for artist in data:
            artist.set_visible(True)
        counts.append(int(np.sum(np.any(np.abs(full - bare) > 0.1, axis=-1))))
    return full, counts


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
    return outdir, figures.make_figures(scan, table, outdir, rho_min=RHO_MIN)


@pytest.mark.slow
def test_make_figures_writes_eight_valid_files(written):
    outdir, paths = written
    names = {p.name for p in paths}
    assert names == {f"{n}.{ext}" for n in figures.NAMES for ext in ("png", "pdf")}
    for p in paths:
        assert p.parent == outdir and p.is_file() and p.stat().st_size > 1000, p
        if p.suffix == ".pdf":
            assert p.read_bytes().startswith(b"%PDF")
        else:
            img = mpimg.imread(p)
            # >= 200 dpi: the narrowest figure is 3.4 in wide
            assert img.ndim == 3 and img.shape[1] >= 3.4 * 200 and img.shape[0] > 500
    assert not list(outdir.glob(".tmp-*"))  # atomic writes leave nothing behind


def test_registry_names_the_figures_without_importing_matplotlib():
    # the workflow reads the names on every start: importing matplotlib there would cost
    # each `snakemake` call a second or more
    code = (
        "import sys; from collapse_spectroscopy.figures import REGISTRY; "
        "print(','.join(REGISTRY)); print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [",".join(figures.NAMES), "False"]


@pytest.mark.parametrize("name", figures.NAMES)
def test_each_registered_figure_has_its_module_and_caption(name):
    draw = figures.REGISTRY[name]
    module = importlib.import_module(f"collapse_spectroscopy.figures.{name}")
    assert draw is module.draw and module.__doc__.startswith("Fig ")
    assert (ROOT / "workflow" / "report" / f"{name}.rst").is_file()


def test_registry_is_exactly_the_figure_modules():
    """Every figure module of the package (``figN_*.py``) is registered under its module
    name, in the order of N, and resolves to that module's draw; no other name is."""
    package = Path(figures.__file__).parent
    modules = sorted(p.stem for p in package.glob("fig*_*.py"))
    assert sorted(figures.REGISTRY) == modules and len(figures.REGISTRY) == len(modules)
    numbers = [int(re.fullmatch(r"fig(\d+)_\w+", name).group(1)) for name in figures.REGISTRY]
    assert numbers == sorted(numbers)
    for name in modules:
        module = importlib.import_module(f"collapse_spectroscopy.figures.{name}")
        assert figures.REGISTRY[name] is module.draw
    assert "fig6_missing" not in figures.REGISTRY
    with pytest.raises(KeyError):
        figures.REGISTRY["fig6_missing"]


def test_fig3_one_point_per_fitted_mode(scan):
    table = table_of(scan)
    fig = fig3_duality.draw(scan, table)
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
    fig = fig3_duality.draw(scan, table)
    (vae,) = [c for c in fig.axes[0].collections if c.get_gid() == "vae"]
    assert len(vae.get_offsets()) == 5
    assert np.isfinite(vae.get_offsets()).all()


def test_fig1_has_theory_fits_and_pca_marks(scan):
    fig = fig1_collapse_scan.draw(scan, table_of(scan))
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
    colors = rank_colors(scan, RHO_MIN)
    (line,) = [
        ln for ln in ax_rho.get_lines() if ln.get_gid() == "theory" and ln.get_color() == colors(1)
    ]
    x, y = line.get_data()
    np.testing.assert_allclose(y, np.clip(1 - x / 0.5, 0, None))
    # each fit band is rho = 1 - T/T_k of the table's threshold, up to T_k
    table = table_of(scan)
    for rank, tk in zip(table["rank"], table["collapse_threshold"], strict=True):
        if not np.isfinite(tk):
            continue
        (fit,) = [
            ln
            for ln in ax_rho.get_lines()
            if ln.get_gid() == "fit" and ln.get_color() == colors(rank)
        ]
        x, y = fit.get_data()
        assert x[-1] == pytest.approx(tk) and x[0] < tk
        np.testing.assert_allclose(y, 1 - x / tk, rtol=0, atol=1e-15)  # rounding of rho <= 1


def test_fig1_draws_the_split_aware_equilibrium_when_the_scan_has_it(scan):
    """With ``pca_eval_ratio`` (the evaluation split's variance along the training PCs),
    panels (a) and (b) show the training equilibrium seen on that split
    (docs/science.md §4.7); panel (c) does not depend on the split."""
    ratio = np.asarray(scan["pca_ratio"].values, np.float64)
    r = np.linspace(0.6, 1.5, ratio.size)  # evaluation over training variance along PC k
    split = scan.assign(pca_eval_ratio=(("mode",), ratio * r))
    fig = fig1_collapse_scan.draw(split, table_of(split))
    ax_m, ax_rho, ax_l = fig.axes[:3]
    colors = rank_colors(split, RHO_MIN)
    rank1 = colors(1)

    def theory_of(ax):
        (line,) = [
            ln for ln in ax.get_lines() if ln.get_gid() == "theory" and ln.get_color() == rank1
        ]
        return line.get_data()

    # written out here, not taken from equilibrium.py: at t = T/T_1 the plateau of m is
    # r_1 (1 - t) and rho = r_1 (1 - t) / (r_1 (1 - t) + t), zero past T_1 = 0.5
    x, y = theory_of(ax_m)
    t = x / 0.5
    np.testing.assert_allclose(y, np.where(t < 1, r[0] * (1 - t), 0.0), atol=1e-15)
    x, y = theory_of(ax_rho)
    t = x / 0.5
    active = t < 1
    expected = np.zeros_like(t)
    expected[active] = r[0] * (1 - t[active]) / (r[0] * (1 - t[active]) + t[active])
    np.testing.assert_allclose(y, expected, atol=1e-15)
    x, y = theory_of(ax_l)  # l_k = log v_k = log min(1, T/T_k) on any split
    np.testing.assert_allclose(y, np.log(np.minimum(1.0, x / 0.5)), atol=1e-12)
    # the caption, not the crowded legend, says that (a, b) are measured on the eval split
    caption = (ROOT / "workflow" / "report" / "fig1_collapse_scan.rst").read_text()
    assert "evaluation split" in caption


def test_fig2_guides_at_best_levels(scan):
    table = table_of(scan)
    fig = fig2_truncated_distortion.draw(scan, table)
    left, right = fig.axes[:2]
    guides = sorted(ln.get_ydata()[0] for ln in left.get_lines() if ln.get_gid() == "guide")
    colored = table["rank"] <= rank_colors(scan, RHO_MIN).n
    np.testing.assert_allclose(guides, np.sort(table["best_distortion"][colored]))
    assert left.get_yscale() == right.get_yscale() == "log"
    (vae,) = [c for c in right.collections if c.get_gid() == "vae"]
    assert len(vae.get_offsets()) == scan.sizes["latent"]


def test_only_modes_that_activate_are_coloured(scan):
    # 7 modes have lambda > 0 and activate; the zero mode and the 2 spare latents never do
    colors = rank_colors(scan, RHO_MIN)
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
    for name, draw in figures.REGISTRY.items():
        fig = draw(scan, table)
        image, counts = data_pixels(fig, dpi=60)
        width, height = fig.get_size_inches() * 60
        assert image.shape == (round(height), round(width), 4), name
        # every panel draws data (one point per rank at the least): not an empty frame
        assert counts and min(counts) >= 10, (name, counts)
    assert rank_colors(scan, RHO_MIN).n == min(K, np.sum(spectrum > PCA_FLOOR))


# ---------------------------------------------------------------------------------------
# Every mark explained; under-equilibrated points hollow


def with_outcome(scan: xr.Dataset, flagged_T=(), patience=3000, budget=12000) -> xr.Dataset:
    """``scan`` with a training outcome per (T, seed): the temperatures at the indices
    ``flagged_T`` stopped at the budget still improving (best = last update), the others
    stopped early."""
    out = scan.copy()
    shape = (scan.sizes["T"], scan.sizes["seed"])
    flagged = np.zeros(shape, dtype=bool)
    flagged[list(flagged_T)] = True
    out["stop_reason"] = (("T", "seed"), np.where(flagged, "max_updates", "early_stopping"))
    out["updates_run"] = (("T", "seed"), np.where(flagged, budget, budget // 2))
    out["best_update"] = (("T", "seed"), np.where(flagged, budget, budget // 2 - patience))
    out.attrs["training"] = json.dumps({"max_updates": budget, "patience": patience})
    return out


def legend_texts(fig) -> list[str]:
    legends = [leg for leg in fig.legends + [ax.get_legend() for ax in fig.axes] if leg]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def x_of(ax, gid) -> set[float]:
    return {float(x) for ln in ax.get_lines() if ln.get_gid() == gid for x in ln.get_xdata()}


@pytest.mark.parametrize("draw", [fig1_collapse_scan.draw, fig4_latent_scale.draw])
def test_under_equilibrated_points_are_hollow_and_in_the_legend(scan, draw):
    flagged = with_outcome(scan, flagged_T=[0, 1])
    fig = draw(flagged, table_of(flagged))
    T = scan["T"].values
    for ax in fig.axes[:2]:
        assert x_of(ax, "open") == set(T[:2])  # exactly the flagged temperatures
        assert x_of(ax, "points") == set(T[2:])
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "open"][:1]
        assert line.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))
    assert UNDER_EQUILIBRATED_LABEL in legend_texts(fig)
    # no flagged point: no hollow marker, no legend entry for one
    clean = with_outcome(scan)
    fig = draw(clean, table_of(clean))
    assert all(x_of(ax, "open") == set() for ax in fig.axes)
    assert UNDER_EQUILIBRATED_LABEL not in legend_texts(fig)


def face_is_white(collection) -> np.ndarray:
    return np.all(np.isclose(collection.get_facecolors()[:, :3], 1.0), axis=1)


def test_quantities_from_an_under_equilibrated_point_are_hollow(scan):
    # the lowest temperature gives every best level Dn*_k (Dn_k falls with T at
    # equilibrium) and is in every threshold fit (all modes active there)
    flagged = with_outcome(scan, flagged_T=[0])
    table = table_of(flagged)
    right = fig2_truncated_distortion.draw(flagged, table).axes[1]
    (vae,) = [c for c in right.collections if c.get_gid() == "vae"]
    assert face_is_white(vae).all()
    # flag only the highest temperature instead: above every threshold, in no fit
    # (rho < rho_min) and giving no best level, so nothing is hollow
    flagged = with_outcome(scan, flagged_T=[scan.sizes["T"] - 1])
    right = fig2_truncated_distortion.draw(flagged, table).axes[1]
    (vae,) = [c for c in right.collections if c.get_gid() == "vae"]
    assert not face_is_white(vae).any()


def vae_of(fig):
    return [c for c in fig.axes[0].collections if c.get_gid() == "vae"]


def test_fig3_draws_hollow_exactly_the_ranks_the_table_flags(tmp_path):
    """A rank is hollow when ``spectra.csv`` flags it ``under_equilibrated``
    (leaving the under-equilibrated points out moves its T_k or u_k by more than 5 %), not
    whenever one of its inputs is such a point. The paper scan's grid (37 points, 1e-6 to
    1) with its 6 coldest points flagged, at equilibrium (no noise): the leave-out moves
    u_k by (T'^2 - T_1^2) / (T_k^2 - T_1^2) (docs/science.md §4.3), <= 1 % for ranks 1-14
    (T_k >= 1e-4) and 6, 11, 25 % for ranks 15-17 (T_k = 4e-5, 3e-5, 2e-5)."""
    from collapse_spectroscopy.analysis.spectra import summarize

    T = np.geomspace(1e-6, 1.0, 37)
    tk = np.r_[np.geomspace(0.3, 1e-4, 14), 4e-5, 3e-5, 2e-5]
    base = equilibrium_scan(tk, K=20, temperatures=T, seeds=(0,), noise=0.0)
    scan = with_outcome(base, flagged_T=range(6))
    table, _ = summarize(scan)
    table.to_csv(tmp_path / "spectra.csv", index=False)
    table = pd.read_csv(tmp_path / "spectra.csv")  # as the figures command reads it
    assert list(np.flatnonzero(table["under_equilibrated"]) + 1) == [15, 16, 17]
    (vae,) = vae_of(fig3_duality.draw(scan, table))
    x = vae.get_offsets()[:, 0]
    drawn_rank = np.array([1 + int(np.argmin(np.abs(np.log(tk / v)))) for v in x])
    np.testing.assert_allclose(x, tk[drawn_rank - 1], rtol=1e-9)  # one point per rank
    assert sorted(drawn_rank[face_is_white(vae)]) == [15, 16, 17]
    assert sorted(drawn_rank[~face_is_white(vae)]) == list(range(1, 15))  # filled
    # the same scan without the column (an older table): the figure applies the same rule
    (vae,) = vae_of(fig3_duality.draw(scan, table.drop(columns="under_equilibrated")))
    assert sorted(drawn_rank[face_is_white(vae)]) == [15, 16, 17]
    # Fig 1 says the same of its fit bands: dotted for exactly the flagged ranks
    fig = fig1_collapse_scan.draw(scan, table)
    lines = fig.axes[1].get_lines()
    end = {ln.get_gid(): [] for ln in lines}
    for ln in lines:
        end[ln.get_gid()].append(ln.get_xdata()[-1])  # a band ends at its rank's T_k
    assert sorted(end["fit_flagged"]) == pytest.approx(sorted(tk[14:17]))
    assert sorted(end["fit"]) == pytest.approx(sorted(tk[:14]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "fit of an under-equilibrated rank" in labels


def test_fig3_eval_marks_and_seed_bars_lie_above_the_circles(scan):
    """Fig 3's marks of the PCA utility on the eval split and its seed-interval bars are
    drawn above the VAE circles, whose faces are translucent tints (a bar of the rank's own
    colour shows on one); the eval marks' arms reach past a circle they sit on, and they
    are crosses, unlike the bars' legend "+"."""
    from collapse_spectroscopy.analysis.spectra import summarize

    table, _ = summarize(scan)  # two seeds: interval columns
    ax = fig3_duality.draw(scan, table).axes[0]
    (vae,) = [c for c in ax.collections if c.get_gid() == "vae"]
    bars = [c for c in ax.collections if c.get_gid() == "seed_ci"]
    (cross,) = [ln for ln in ax.get_lines() if ln.get_gid() == "pca_eval"]
    assert bars and all(b.get_zorder() > vae.get_zorder() for b in bars)
    assert cross.get_zorder() > vae.get_zorder()
    assert not face_is_white(vae).any() and np.all(vae.get_facecolors()[:, 3] < 0.6)
    # marker size and the circle's diameter sqrt(s), both in points
    assert cross.get_markersize() > np.sqrt(vae.get_sizes()[0])
    assert cross.get_marker() == "x"


def test_legend_names_grey_ranks_only_when_drawn(scan):
    # 10 latents, 7 modes: ranks 8-10 are grey, and the legend says what they are
    texts = legend_texts(fig1_collapse_scan.draw(scan, table_of(scan)))
    assert any(t.startswith("rank > 7") for t in texts)
    exact = equilibrium_scan(K=7)  # as many latents as modes: nothing grey
    texts = legend_texts(fig1_collapse_scan.draw(exact, table_of(exact)))
    assert not any(t.startswith("rank >") for t in texts)


def test_legend_with_one_seed_has_one_data_entry():
    one = equilibrium_scan(seeds=(3,))
    texts = legend_texts(fig1_collapse_scan.draw(one, table_of(one)))
    assert "VAE, seed 3" in texts
    assert not any("mean" in t or "per seed" in t for t in texts)
    two = equilibrium_scan(seeds=(0, 1))
    texts = legend_texts(fig4_latent_scale.draw(two, table_of(two)))
    assert "VAE, per seed" in texts and "mean of 2 seeds" in texts


def test_fit_and_mean_lines_are_told_apart_and_keyed(scan):
    """Fig 1 draws seed-mean lines (a, c) and fits (b) in the ranks' colours: a reader tells
    them apart only if they differ in something besides colour, and matches each to its
    legend key only if the key looks like the line."""
    fig = fig1_collapse_scan.draw(scan, table_of(scan))
    fit = next(ln for ln in fig.axes[1].get_lines() if ln.get_gid() == "fit")
    mean = next(ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "mean")
    look = lambda ln: (ln.get_linestyle(), ln.get_linewidth(), ln.get_alpha())  # noqa: E731
    assert look(fit) != look(mean)
    keys = {
        text.get_text(): handle
        for legend in fig.legends
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True)
    }
    (fit_key,) = [h for t, h in keys.items() if t.startswith("fit $")]
    (mean_key,) = [h for t, h in keys.items() if t.startswith("mean of")]
    assert look(fit_key) == look(fit) and look(mean_key) == look(mean)


def test_fig2_labels_the_normalized_distortion_as_the_caption_does(scan):
    fig = fig2_truncated_distortion.draw(scan, table_of(scan))
    assert "Dn_k" in fig.axes[0].get_ylabel()
    caption = (ROOT / "workflow" / "report" / "fig2_truncated_distortion.rst").read_text()
    assert "Dn_k" in caption


def test_fig2b_names_the_triangles_below_the_axis(scan):
    # the zero eigenvalue gives a PCA distortion of 0 at k = 8: off the log axis
    right = fig2_truncated_distortion.draw(scan, table_of(scan)).axes[1]
    assert [ln for ln in right.get_lines() if ln.get_gid() == "below_axis"]
    assert "PCA below the axis (~0)" in [t.get_text() for t in right.get_legend().get_texts()]


def tick_boxes(fig, axis):
    fig.canvas.draw()
    labels = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
    return [t.get_window_extent() for t in labels], [t.get_text() for t in labels]


@pytest.mark.parametrize("top", [0.5, 0.3, 0.15])
def test_fig3_tick_labels_never_overlap(top):
    # a short range of thresholds: matplotlib labels minor log ticks there (2x10^-1,
    # 3x10^-1, ...), which can run into each other on the column-wide axis
    spectrum = np.array([top, top * 0.75, top * 0.6])
    spectrum = np.r_[spectrum, 1 - spectrum.sum()]
    short = equilibrium_scan(spectrum, K=4, temperatures=np.geomspace(0.02, 0.9, 15))
    table = table_of(short)
    fig = fig3_duality.draw(short, table)
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        boxes, texts = tick_boxes(fig, axis)
        assert len(boxes) >= 2, texts  # still something to read
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), texts


def test_fig4_small_values_get_a_power_of_ten(scan):
    # the Jensen gap of the equilibrium scan is ~1e-2 * noise: values ~1e-4
    small = scan.copy()
    small["jensen_gap"] = small["jensen_gap"] * 0.03
    fig = fig4_latent_scale.draw(small, table_of(small))
    _, texts = tick_boxes(fig, fig.axes[1].yaxis)
    assert texts and not any("0.000" in t for t in texts), texts
    # J ~ 1e-4 lies below Fig 4b's floor on its log axis (tests/figures/test_figure_reading.py); a
    # linear axis of values that small names its power of ten in the label
    assert fig.axes[1].get_yscale() == "log"
    from matplotlib.figure import Figure

    from collapse_spectroscopy.figures.axes import power_label

    ax = Figure().subplots()
    ax.plot([0.0, 3e-4])
    power_label(ax, "J")
    assert r"10^{-4}" in ax.get_ylabel()
    _, texts = tick_boxes(fig, fig.axes[0].yaxis)  # q ~ 1: plain numbers, no offset
    assert "1" in "".join(texts) and "10^" not in fig.axes[0].get_ylabel()


def test_colours_follow_the_runs_rho_min(scan):
    # without PCA modes to go by, the coloured ranks are those whose rho ever exceeds
    # rho_min: the rank-7 mode (threshold 0.003) tops out near 1 - 1e-3/0.003 = 0.67
    no_pca = scan.drop_vars(["pca_ratio", "pca_eval_distortion"])
    assert rank_colors(no_pca, rho_min=0.05).n == 7
    assert rank_colors(no_pca, rho_min=0.8).n == 6
    fig = fig1_collapse_scan.draw(scan, table_of(scan), rho_min=0.2)
    (cut,) = [ln for ln in fig.axes[1].get_lines() if ln.get_gid() == "rho_min"]
    assert cut.get_ydata()[0] == 0.2
    assert any("0.2" in t for t in legend_texts(fig))


@pytest.mark.parametrize("t_lo, t_hi", [(5e-7, 1e-6), (1e-7, 3e-6), (0.02, 0.05)])
def test_short_temperature_axes_have_readable_ticks(t_lo, t_hi):
    """A scan over less than a decade (the tail runs: 5e-7 to 1e-6): the T axis of Figs
    1, 2 and 4 is labelled at a few ticks that never run into each other."""
    spectrum = np.array([0.6, 0.3, 0.1]) if t_hi > 1e-3 else np.array([0.6, 0.4 - 3e-6, 3e-6])
    short = equilibrium_scan(spectrum, K=3, temperatures=np.geomspace(t_lo, t_hi, 3))
    table = table_of(short)
    for draw, index in (
        (fig1_collapse_scan.draw, 2),
        (fig2_truncated_distortion.draw, 0),
        (fig4_latent_scale.draw, 0),
    ):
        fig = draw(short, table)
        boxes, texts = tick_boxes(fig, fig.axes[index].xaxis)
        assert len(boxes) >= 2, texts
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), texts


def test_fig1_marks_the_points_each_refinement_round_added(scan):
    """One row of ticks per refinement round (docs/science.md §4.9) at the temperatures it
    added, along the T axis of panel (c), rows apart, named in the legend; none without."""
    rounds = [[0.02, 0.2], [0.03]]
    fig = fig1_collapse_scan.draw(scan, table_of(scan), refined=rounds)
    ax_l = fig.axes[2]
    heights = []
    for i, temps in enumerate(rounds, start=1):
        (row,) = [ln for ln in ax_l.get_lines() if ln.get_gid() == f"refine_round_{i}"]
        assert list(row.get_xdata()) == temps
        heights.append(set(row.get_ydata()))
    assert len(heights[0]) == len(heights[1]) == 1 and heights[0] != heights[1]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("refinement rounds 1-2 (2, 1)" in label for label in labels), labels
    plain = fig1_collapse_scan.draw(scan, table_of(scan))
    assert not [ln for ax in plain.axes for ln in ax.get_lines() if "refine" in str(ln.get_gid())]
    assert not any("refinement" in t.get_text() for t in plain.legends[0].get_texts())
