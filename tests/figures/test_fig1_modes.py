"""Fig 1 per mode (``figures.fig1_view: modes``; docs/science.md §10.1, issue 12): a scan
of analytic equilibria with mode 2 spread by hand over three latents. Drawn per mode, the
spread mode's points, fit and log-variance are the single mode's equilibrium; drawn per
latent (the paper's view) none of its three latents is. A run that cannot have mode
totals is refused with one line naming the key.

Tolerances: the points are exact equilibria measured in float64 on the training split
(rounding ~1e-15, 1e-12 leaves room for the moment sums); the fits divide sums of ~10
such points, 1e-10 relative, as in test_modes.py. The spread latents' rho differ from the
mode's by a factor of ~3 (they share its signal), far outside either tolerance.
"""

from __future__ import annotations

import subprocess

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from analytic_scan import gathered_scan  # noqa: E402
from collapse_spectroscopy import figures  # noqa: E402
from collapse_spectroscopy.analysis import equilibrium, pca, spectra, thresholds  # noqa: E402
from collapse_spectroscopy.cli import build_parser, main  # noqa: E402
from collapse_spectroscopy.cli.runconfig import with_run_config  # noqa: E402
from collapse_spectroscopy.config.checks import check_config  # noqa: E402
from collapse_spectroscopy.errors import InputError  # noqa: E402
from collapse_spectroscopy.figures import fig1_collapse_scan, make_figures  # noqa: E402
from synthetic_gaussian import gaussian_splits  # noqa: E402
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir  # noqa: E402

SPECTRUM = [0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0]
D = len(SPECTRUM)
LATENTS = D + 3  # three spare latents to spread a mode into
SPREAD_MODE = 1  # 0-based: PC 2


@pytest.fixture(scope="module")
def spread_scan(tmp_path_factory):
    xtr, _, _, _, _ = gaussian_splits(SPECTRUM, sizes=(4000, 10, 10), seed=1)
    temperatures = np.geomspace(1e-3, 0.7, 14)
    scan = gathered_scan(
        tmp_path_factory.mktemp("spread"), temperatures, xtr, xtr, LATENTS, SPREAD_MODE
    )
    table, _ = spectra.summarize(scan)
    return scan, table, pca.pca_spectrum(xtr), temperatures


def lines(ax, gid, color):
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid and ln.get_color() == color]


def points(ax, color):
    """(T, value) of the filled points drawn in ``color``."""
    x, y = [], []
    for ln in lines(ax, "points", color):
        x += list(ln.get_xdata())
        y += list(ln.get_ydata())
    order = np.argsort(x)
    return np.asarray(x)[order], np.asarray(y)[order]


def test_modes_view_draws_the_spread_mode_as_one(spread_scan):
    scan, table, tk, temperatures = spread_scan
    fig = fig1_collapse_scan.draw(scan, table, fig1_view="modes")
    ax_m, ax_rho, ax_l = fig.axes[:3]
    modes = fig1_collapse_scan.rank_colors(scan, thresholds.RHO_MIN, "mode_signal_fraction", "mode")
    color = modes(SPREAD_MODE + 1)
    x, rho = points(ax_rho, color)
    np.testing.assert_allclose(x, temperatures)
    expected = equilibrium.signal_fraction(tk, temperatures)[:, SPREAD_MODE]
    np.testing.assert_allclose(rho, expected, rtol=0, atol=1e-12)
    x, m = points(ax_m, color)
    law = equilibrium.posterior_mean_square(tk, temperatures)[:, SPREAD_MODE]
    np.testing.assert_allclose(m, law, rtol=0, atol=1e-12)
    # panel (c): log v = log(T / T_k) below the threshold, 0 (the prior) above it
    x, logv = points(ax_l, color)
    law = equilibrium.posterior_log_variance(tk, temperatures)[:, SPREAD_MODE]
    np.testing.assert_allclose(logv, law, rtol=0, atol=1e-12)
    # the fit band in (b) is the table's mode threshold, which is lambda_2 / V
    (fit,) = lines(ax_rho, "fit", color)
    assert fit.get_xdata()[-1] == pytest.approx(tk[SPREAD_MODE], rel=1e-10)
    assert table.mode_collapse_threshold.iloc[SPREAD_MODE] == pytest.approx(
        tk[SPREAD_MODE], rel=1e-10
    )
    assert fig.axes[-1].get_ylabel() == "PCA mode $k$"  # the colour bar
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("mode totals" in t for t in texts)


def test_latents_view_of_the_same_scan_splits_the_mode(spread_scan):
    """The paper's view of the same scan: no ranked latent follows mode 2's equilibrium,
    and rank 2's fit lands far from lambda_2/V (the reason for the modes view)."""
    scan, table, tk, temperatures = spread_scan
    fig = fig1_collapse_scan.draw(scan, table)
    ax_rho = fig.axes[1]
    expected = equilibrium.signal_fraction(tk, temperatures)[:, SPREAD_MODE]
    colors = fig1_collapse_scan.rank_colors(scan, thresholds.RHO_MIN)
    for rank in range(1, colors.n + 1):
        x, rho = points(ax_rho, colors(rank))
        if x.size == temperatures.size:
            assert np.max(np.abs(rho - expected)) > 0.1, rank
    assert table.collapse_threshold.iloc[SPREAD_MODE] < 0.8 * tk[SPREAD_MODE]


def test_modes_view_needs_mode_totals(spread_scan):
    scan, table, _, _ = spread_scan
    bare = scan.drop_vars([n for n in scan.data_vars if n.startswith("mode_")])
    with pytest.raises(InputError, match=r"figures\.fig1_view = 'modes'.*per-mode totals"):
        fig1_collapse_scan.draw(bare, table, fig1_view="modes")
    with pytest.raises(InputError, match=r"figures\.fig1_view = 'rank'"):
        fig1_collapse_scan.draw(scan, table, fig1_view="rank")


@pytest.mark.slow
def test_make_figures_passes_the_view_to_fig1_only(spread_scan, tmp_path):
    """The view changes Fig 1's drawing (the spread mode is one line per mode, three per
    latent) and leaves every other figure as it is."""
    scan, table, _, _ = spread_scan
    images = {}
    for view in ("latents", "modes"):
        paths = make_figures(
            scan, table, tmp_path / view, rho_min=thresholds.RHO_MIN, fig1_view=view
        )
        assert sorted(p.name for p in paths) == sorted(
            f"{name}.{ext}" for name in figures.NAMES for ext in ("png", "pdf")
        )
        images[view] = {p.stem: mpimg.imread(p) for p in paths if p.suffix == ".png"}
    for name in figures.NAMES:
        latents, modes = images["latents"][name], images["modes"][name]
        same = latents.shape == modes.shape and np.array_equal(latents, modes)
        assert same == (name != "fig1_collapse_scan"), name


def test_figures_command_refuses_modes_without_totals(spread_scan, tmp_path, capsys):
    scan, table, _, _ = spread_scan
    bare = scan.drop_vars([n for n in scan.data_vars if n.startswith("mode_")])
    bare.to_netcdf(tmp_path / "scan.nc")
    table.to_csv(tmp_path / "spectra.csv", index=False)
    args = ["figures", str(tmp_path / "scan.nc"), str(tmp_path / "spectra.csv")]
    assert main([*args, "--out-dir", str(tmp_path / "out"), "--fig1-view", "modes"]) == 2
    err = capsys.readouterr().err
    assert "figures.fig1_view = 'modes'" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


CONFIG = """\
runs:
  r:
    dataset: {source: synthetic}
    model: {kind: KIND}
    scan: {temperatures: [0.1]}
    figures: {fig1_view: modes}
"""


def test_config_refuses_modes_view_for_a_nonlinear_run():
    check_config(yaml.safe_load(CONFIG.replace("KIND", "linear")))
    with pytest.raises(InputError, match=r"runs\.r\.figures\.fig1_view = 'modes'.*'mlp'"):
        check_config(yaml.safe_load(CONFIG.replace("KIND", "mlp")))
    bad = yaml.safe_load(CONFIG.replace("KIND", "linear").replace("modes", "mode"))
    with pytest.raises(InputError, match=r"runs\.r\.figures\.fig1_view"):
        check_config(bad)


@pytest.mark.slow
def test_workflow_passes_fig1_view_to_the_figures_command(tmp_path):
    """figures.fig1_view reaches the figures command through the stage file the workflow
    writes (results/RUN/config/figures.json), read back by the command's own parser."""
    config = tiny_config([0.1])
    config["runs"]["tiny"]["figures"] = {"fig1_view": "modes"}
    wd = workdir(tmp_path, config)
    snakemake = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1"]
    stage = wd / "results/tiny/config/figures.json"
    proc = subprocess.run([*snakemake, str(stage.relative_to(wd))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    parser = build_parser()
    argv = ["figures", "scan.nc", "spectra.csv", "--out-dir", "out", "--run-config", str(stage)]
    args = with_run_config(parser, argv, parser.parse_args(argv))
    assert args.fig1_view == "modes"
