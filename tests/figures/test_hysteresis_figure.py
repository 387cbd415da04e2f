"""The hysteresis figure (docs/science.md §5.9): panel (b) draws, for ranks 1-3, the seed
mean of each direction's truncated distortion ``Dn_k(T)`` (the scan's own numbers, with
the cooling direction told apart by its dashed line and open circles).

The warming scan is the linear VAE's analytic equilibrium; the cooling one is the same
scan with every ``Dn_k`` (k >= 1) halved, so that the two directions' lines differ and a
line drawn from the wrong direction, rank or ``k`` offset fails.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from analytic_scan import gathered_scan  # noqa: E402
from collapse_spectroscopy.analysis.hysteresis import scan_hysteresis  # noqa: E402
from collapse_spectroscopy.figures import hysteresis  # noqa: E402
from synthetic_gaussian import gaussian_splits  # noqa: E402

SPECTRUM = [0.5, 0.3, 0.15, 0.05]


def test_panel_b_draws_each_directions_first_truncated_distortions(tmp_path):
    xtr, _, _, _, _ = gaussian_splits(SPECTRUM, sizes=(3000, 10, 10), seed=2)
    temperatures = np.geomspace(1e-3, 0.7, 8)
    warming = gathered_scan(tmp_path, temperatures, xtr, xtr, 4)
    cooling = warming.copy(deep=True)
    cooling["truncated_distortion"][{"k": slice(1, None)}] *= 0.5
    fig = hysteresis.draw(warming, cooling, scan_hysteresis(warming, cooling), rho_min=0.05)
    _, panel_b = fig.axes[:2]
    drawn = [ln for ln in panel_b.get_lines() if ln.get_xdata().size]
    assert len(drawn) == 6  # k = 1, 2, 3, each warming then cooling
    levels = warming["truncated_distortion"].transpose("T", "seed", "k").values.mean(axis=1)
    for i, line in enumerate(drawn):
        k, cooled = i // 2 + 1, i % 2 == 1
        want = levels[:, k] * (0.5 if cooled else 1.0)
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
        assert line.get_linestyle() == ("--" if cooled else "-")
    # ranks 1..k kept: at the coldest point, where modes 1-3 are active, each k removes
    # more than the one before (warmer, collapsed ranks leave the level where it was)
    assert np.all(np.diff(levels[0, 1:4]) < 0)
    assert panel_b.get_yscale() == "log"
