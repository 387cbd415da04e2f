"""The figures as a reader sees them (issue 20, item 6): what each mark means must be
readable off the figure, and no mark may say more than the data do.

Each test inspects the drawn matplotlib artists and would fail on the drawing the issue
describes: Fig 2b's colour bar stopping at the last coloured rank while its axis runs to
``K``, its flat grey ranks with no word why; Fig 4b's ``J ~ 1e-4`` scatter drawn as spikes
with no ``J = 0`` guide; Fig 5's legend dot unlike the drawn markers, its ``n(eps)``
climbing to ``K - 1`` on the spare latents' scatter, a curve ending with no "not reached"
mark, and its rank axis starting at 0; panel prefixes and titles crowding the legends of
Figs 1 and 5; the maps' and the loadings' ``rho`` written to different decimals; the split
map of a small region drawn on the whole world.
"""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from collapse_spectroscopy.analysis.thresholds import RHO_MIN  # noqa: E402
from collapse_spectroscopy.figures import (
    fig1_collapse_scan,
    fig2_truncated_distortion,
    fig4_latent_scale,
    fig5_utility_concentration,
)
from collapse_spectroscopy.figures.common import NullRun  # noqa: E402
from test_fig5 import concentration_scan, lines  # noqa: E402
from test_figures import SPECTRUM, equilibrium_scan, legend_texts, render, table_of  # noqa: E402

K = 10  # the equilibrium scan's latents: 7 active modes (SPECTRUM), 3 spare


@pytest.fixture(scope="module")
def scan():
    return equilibrium_scan(K=K)


def colorbar_of(fig):
    """The colour bar's axes (the one axes with a label ``rank``/``mode`` on its y axis)."""
    (cax,) = [ax for ax in fig.axes if "rank" in ax.get_ylabel() or "mode" in ax.get_ylabel()]
    return cax


# ---------------------------------------------------------------------------------------
# Fig 2b: the colour bar spans the rank axis; the flat grey ranks are explained


def test_fig2_colour_bar_spans_the_rank_axis_with_the_grey_ranks(scan):
    fig = fig2_truncated_distortion.draw(scan, table_of(scan))
    render(fig)  # the layout: the colour bar's limits are final
    right = fig.axes[1]
    lo, hi = right.get_xlim()
    ranks_on_axis = set(range(int(np.ceil(lo)), int(np.floor(hi)) + 1))
    assert ranks_on_axis == set(range(1, K + 1))
    # the bar runs from rank 1 to rank K (boundaries at half ranks), not to the last
    # coloured rank 7, and one rank of the bar is one rank of the axis
    cax = colorbar_of(fig)
    assert sorted(cax.get_ylim()) == pytest.approx([0.5, K + 0.5])
    labels = [t.get_text() for t in cax.get_yticklabels()]
    assert "8\u201310" in labels  # the grey segment names the grey ranks
    assert labels[:7] == [str(r) for r in range(1, 8)]


def test_fig2_says_why_the_grey_ranks_are_flat(scan):
    # the equilibrium scan's best Dn*_7 is at its lowest temperature (1e-3): the note says
    # the plateau is that level, and that the ranks past 7 are never active
    fig = fig2_truncated_distortion.draw(scan, table_of(scan))
    right = fig.axes[1]
    (note,) = [t for t in right.texts if t.get_gid() == "grey_note"]
    text = note.get_text()
    assert "k > 7" in text and "never active" in text
    assert "lowest T scanned (0.001)" in text
    # the note sits over the plateau: its y is above the level of Dn*_7
    best7 = table_of(scan)["best_distortion"].to_numpy()[6]
    assert note.get_position()[1] > best7
    # where rank 7's best level is not at the lowest T, the note does not claim it is
    late = scan.copy(deep=True)
    dn = late["truncated_distortion"].values
    dn[0, :, 7:] = dn[0, :, 7:] * 10.0  # the lowest T no longer gives the best Dn_7
    fig = fig2_truncated_distortion.draw(late, table_of(late))
    (note,) = [t for t in fig.axes[1].texts if t.get_gid() == "grey_note"]
    assert "never active" in note.get_text() and "lowest T" not in note.get_text()


def test_no_grey_segment_when_every_rank_is_coloured():
    full = equilibrium_scan(K=7)  # 7 modes, 7 latents: nothing grey
    fig = fig2_truncated_distortion.draw(full, table_of(full))
    render(fig)
    cax = colorbar_of(fig)
    assert sorted(cax.get_ylim()) == pytest.approx([0.5, 7.5])
    assert not [t for t in fig.axes[1].texts if t.get_gid() == "grey_note"]


# ---------------------------------------------------------------------------------------
# Fig 4b: J = 0 is a guide; noise below the floor is not drawn as spikes


def fig4_right(scan):
    fig = fig4_latent_scale.draw(scan, table_of(scan))
    return fig, fig.axes[1]


def test_fig4_jensen_gap_below_the_floor_is_flat_on_the_guide(scan):
    # the equilibrium scan's J is noise of order 1e-3 * [0, 1): scale it to the ~1e-4 of a
    # trained linear VAE (the demo's: up to 6e-4)
    small = scan.copy()
    small["jensen_gap"] = scan["jensen_gap"] * 0.05
    fig, right = fig4_right(small)
    floor = fig4_latent_scale.J_FLOOR
    assert right.get_yscale() == "log"
    (band,) = [p for p in right.patches if p.get_gid() == "j_floor"]
    y0, y1 = band.get_extents().y0, band.get_extents().y1  # display coords
    to_data = right.transData.inverted()
    top = to_data.transform((0, y1))[1]
    bottom = to_data.transform((0, y0))[1]
    assert top == pytest.approx(floor) and bottom <= right.get_ylim()[0] * (1 + 1e-9)
    # every point and mean line of J lies on the floor: no zigzag of the scatter below it
    drawn = [ln for ln in right.get_lines() if ln.get_gid() in ("points", "open", "mean")]
    assert drawn
    for ln in drawn:
        y = np.asarray(ln.get_ydata(), dtype=float)
        np.testing.assert_array_equal(y[np.isfinite(y)], floor)
    # the guide is named: the legend says J <= floor is ~0, as at equilibrium
    assert any(re.search(r"J \$\\leq\$ 0\.001: \$\\approx\$ 0", t) for t in legend_texts(fig))
    assert [t for t in right.texts if t.get_gid() == "j_note"]


def test_fig4_a_real_jensen_gap_is_drawn_at_its_size(scan):
    # a gap above the floor (a posterior variance that varies with x) keeps its value, so
    # the floor cannot hide one: rank 1 at the fourth temperature, J = 0.05, both seeds
    big = scan.copy(deep=True)
    big["jensen_gap"].values[3, :, 0] = 0.05
    _, right = fig4_right(big)
    ys = [
        float(y)
        for ln in right.get_lines()
        if ln.get_gid() == "points"
        for y in ln.get_ydata()
        if np.isfinite(y)
    ]
    assert max(ys) == pytest.approx(0.05)
    assert right.get_ylim()[1] >= 0.05
    assert not [t for t in right.texts if t.get_gid() == "j_note"]  # not "every J <= floor"


# ---------------------------------------------------------------------------------------
# Fig 5: legend markers as drawn; spare latents do not count; "not reached"; k from 1


def marker_key(ln):
    """(marker, edge colour) of a drawn or legend line."""
    return ln.get_marker(), to_rgba(ln.get_markeredgecolor())


def test_fig5_legend_markers_are_the_drawn_markers():
    scan, table = concentration_scan()
    null = NullRun("lin", concentration_scan(best=[1.0, 0.5, 0.2, 0.06])[1])
    fig = fig5_utility_concentration.draw(scan, table, tolerances=[0.1, 0.01, 1e-3], null_run=null)
    legend = fig.legends[0]
    handles = [h for h in legend.legend_handles if hasattr(h, "get_marker")]
    marked = {marker_key(h) for h in handles if h.get_marker() not in ("None", "", None)}
    shapes = {h.get_marker() for h in handles}
    drawn = [
        ln
        for ax in fig.axes[:2]
        for ln in ax.get_lines()
        if ln.get_marker() not in ("None", "", None) and len(ln.get_xdata())
    ]
    assert drawn
    for ln in drawn:
        if ln.get_gid() in ("below_axis",) or str(ln.get_gid()).startswith("unreached_"):
            # triangles on an edge, drawn in each model's colour: one entry names the shape
            assert ln.get_marker() in shapes, ln.get_gid()
        else:
            assert marker_key(ln) in marked, (ln.get_gid(), marker_key(ln), marked)
    # and every legend marker is one that is drawn: no neutral "markers: ..." dot
    drawn_keys = {marker_key(ln) for ln in drawn}
    drawn_shapes = {ln.get_marker() for ln in drawn}
    for h in handles:
        if h.get_marker() in ("None", "", None) or h.get_label().endswith("never $\\rho$ > 0.05"):
            continue
        if h.get_marker() in ("v", "^"):
            assert h.get_marker() in drawn_shapes, h.get_label()
        else:
            assert marker_key(h) in drawn_keys, h.get_label()


def spare_scan():
    """A concentration scan of 3 active latents and 3 spare ones (rho < rho_min at every
    T) whose best levels scatter 1e-8 below the last active level, as the demo's did
    (3.6013e-4 at k = 7, then 3.6014, 3.6010, 3.6011, 3.6009, 3.6012e-4)."""
    best = [1.0, 0.2, 0.05, 0.005, 0.005 - 2e-9, 0.005 - 5e-9, 0.005 - 3e-9]
    scan, table = concentration_scan(best=best, pca=[0.5, 0.3, 0.15, 0.03, 0.015, 0.005])
    rho = scan["signal_fraction"].values
    rho[..., 3:] = 0.01  # never above rho_min = 0.05
    return scan, table


def test_fig5_spare_latents_do_not_count_as_variables_needed():
    scan, table = spare_scan()
    # eps = 0.004999997 lies among the spare levels: min{k : Dn*_k <= eps} over all K is 5,
    # a step drawn up to 5 at eps ~ 0.005 (the "11 variables needed"); over the
    # active latents the VAE never reaches it
    eps = [0.1, 0.01, 0.005 - 3.5e-9]
    fig = fig5_utility_concentration.draw(scan, table, tolerances=eps, rho_min=RHO_MIN)
    left, right = fig.axes[:2]
    (step,) = lines(right, "step_vae")
    assert np.nanmax(np.asarray(step.get_ydata(), dtype=float)) == 3
    # panel (a): the spare ranks are grey points off the VAE's line, named in the legend
    (curve,) = lines(left, "curve_vae")
    np.testing.assert_array_equal(curve.get_xdata(), [1, 2, 3])
    (spare,) = lines(left, "vae_spare")
    np.testing.assert_array_equal(spare.get_xdata(), [4, 5, 6])
    assert "VAE k > 3: never $\\rho$ > 0.05" in legend_texts(fig)


def test_fig5_marks_a_tolerance_that_is_never_reached():
    # VAE levels 1, 0.2, 0.05, 0.005: eps = 0.001 is never reached within its 3 latents;
    # PCA (1, 0.5, 0.2, 0.05, 0) reaches every eps
    scan, table = concentration_scan()
    fig = fig5_utility_concentration.draw(scan, table, tolerances=[0.1, 0.01, 0.001])
    right = fig.axes[1]
    (mark,) = lines(right, "unreached_vae")
    np.testing.assert_array_equal(mark.get_xdata(), [0.001])
    assert not lines(right, "unreached_pca")
    assert any("not reached" in t for t in legend_texts(fig))
    # every eps reached: no mark, no legend entry
    fig = fig5_utility_concentration.draw(scan, table, tolerances=[0.1, 0.01])
    assert not lines(fig.axes[1], "unreached_vae")
    assert not any("not reached" in t for t in legend_texts(fig))


def test_rank_axes_start_at_1_in_fig2b_and_fig5a(scan):
    fig2 = fig2_truncated_distortion.draw(scan, table_of(scan))
    c_scan, c_table = concentration_scan()
    fig5 = fig5_utility_concentration.draw(c_scan, c_table)
    for ax in (fig2.axes[1], fig5.axes[0]):
        lo, _ = ax.get_xlim()
        assert 0 < lo < 1, ax.get_xlabel()  # no room for a k = 0 column
        # in data coordinates (a tolerance guide spans the axes' width in axes coordinates)
        data = [ln for ln in ax.get_lines() if ln.get_transform() == ax.transData]
        xs = [float(x) for ln in data for x in ln.get_xdata()]
        xs += [float(x) for c in ax.collections for x in c.get_offsets()[:, 0]]
        assert xs and min(xs) >= 1, ax.get_xlabel()


# ---------------------------------------------------------------------------------------
# Legends of Figs 1 and 5 are not crowded


@pytest.mark.parametrize("name", ["fig1", "fig5"])
def test_legends_name_no_panels_and_have_no_title(scan, name):
    if name == "fig1":
        split = scan.assign(pca_eval_ratio=(("mode",), np.asarray(SPECTRUM) * 0.9))
        fig = fig1_collapse_scan.draw(split, table_of(split))
    else:
        fig = fig5_utility_concentration.draw(*concentration_scan(), tolerances=[0.1, 1e-3])
    (legend,) = fig.legends
    assert legend.get_title().get_text() == ""
    texts = legend_texts(fig)
    assert not [t for t in texts if re.match(r"\([a-c](, [a-c])*\)", t)], texts
    assert not [t for t in texts if "eval split" in t and name == "fig1"], texts
    plain = [re.sub(r"\$[^$]*\$", "x", t) for t in texts]  # mathtext counts as one symbol
    assert max(len(t) for t in plain) <= 45, plain


# ---------------------------------------------------------------------------------------
# Maps and loadings write rho alike; the split map shows the region


def test_maps_loadings_and_bands_write_rho_to_the_same_decimals():
    from collapse_spectroscopy.figures.maps import draw_latent_means, draw_loadings
    from collapse_spectroscopy.maps.latent_maps import Grid, LatentMaps

    rho = np.array([0.98765, 0.5, 0.061])
    maps = LatentMaps(
        temperature=0.01,
        seed=0,
        kind="linear",
        latent_index=np.arange(3),
        rho=rho,
        sign=np.ones(3),
        loadings=np.arange(12, dtype=float).reshape(3, 4) - 5,
        feature_names=["a", "b", "c", "d"],
        means={},
        jacobian_rms=np.abs(np.arange(12, dtype=float).reshape(3, 4) - 5),
        sign_agreement=np.ones((3, 4)),
    )
    wgs84 = (
        'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
        'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'
    )
    grid = Grid(shape=(4, 6), transform=(1.0, 0.0, 0.0, 0.0, -1.0, 4.0), crs_wkt=wgs84, nodata=None)
    bands = np.random.default_rng(0).standard_normal((3, 4, 6))
    means = draw_latent_means(bands, maps, grid, "t")
    loadings = draw_loadings(maps, "t")

    def decimals(texts):
        return {len(m) for t in texts for m in re.findall(r"\d\.(\d+)", t)}

    titles = [ax.get_title() for ax in means.axes if ax.get_title()]
    rows = [t.get_text() for t in loadings.axes[0].get_yticklabels()]
    bands_text = maps.labels()  # the GeoTIFF's band descriptions
    assert decimals(titles) == decimals(rows) == decimals(bands_text) == {3}
    assert "0.988" in titles[0] and "0.988" in rows[0] and "0.988" in bands_text[0]


def test_split_map_of_a_small_region_shows_the_region():
    from collapse_spectroscopy.datasets.split import spatial_block_split, split_summary
    from collapse_spectroscopy.datasets.splitmap import split_map_figure

    # a 12 x 8 degree region at 0.25 degree, 100 km blocks: ~1300 x 900 km of blocks, where
    # the projected world is ~34700 x 14700 km
    lon, lat = np.meshgrid(np.arange(0.125, 12, 0.25), np.arange(40.125, 48, 0.25))
    lon, lat = lon.ravel(), lat.ravel()
    area = (27.8 * 0.25) ** 2 * np.cos(np.radians(lat))
    split = spatial_block_split(lon, lat, area, block_km=100, seed=0)
    fig = split_map_figure(split, split_summary(split, area))
    (ax,) = fig.axes
    b = split.blocks
    x0, x1 = b["x_min_m"].min(), (b["x_min_m"] + b["size_m"]).max()
    y0, y1 = b["y_min_m"].min(), (b["y_min_m"] + b["size_m"]).max()
    half = 0.5 * b["size_m"].max()
    # the axes hold every block with half a block of margin (the equal aspect may widen
    # one direction to fill the axes box, by at most the box's shape)
    xl, yl = ax.get_xlim(), ax.get_ylim()
    assert xl[0] <= x0 and xl[1] >= x1 and yl[0] <= y0 and yl[1] >= y1
    assert xl[1] - xl[0] == pytest.approx(x1 - x0 + 2 * half)
    assert yl[1] - yl[0] == pytest.approx(y1 - y0 + 2 * half)
    assert xl[1] - xl[0] < 2.0e6  # not the world's 3.5e7 m
