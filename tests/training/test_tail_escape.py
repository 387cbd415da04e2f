"""scripts/tail_escape.py (issue 12): started at the analytic equilibrium, the model it
trains *is* the equilibrium, mode by mode, before any update; the lines it prints follow
the updates it asks for.

Tolerance: measured on the training split, the equilibrium's per-mode rho is
``1 - T/T_k`` exactly up to float64 rounding of moment sums (test_modes.py: 1e-12);
the script prints four decimals, so the comparison is to half of the last digit.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from collapse_spectroscopy.analysis import equilibrium, pca
from synthetic_gaussian import gaussian_prepared
from workflow_helpers import ROOT

SPECTRUM = [0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0]


def load_script():
    spec = importlib.util.spec_from_file_location("tail_escape", ROOT / "scripts/tail_escape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(text):
    return np.array([[float(v) for v in ln.split()] for ln in text.splitlines() if ln[:1] != "#"])


def test_equilibrium_start_is_the_equilibrium(tmp_path, capsys):
    ds = gaussian_prepared(SPECTRUM, sizes=(4000, 500, 500), seed=3)
    ds.save(tmp_path / "prepared.npz")
    T = 0.002  # mode 7 (T_7 ~ 0.003) just active, mode 8 (zero variance) collapsed
    args = [str(tmp_path / "prepared.npz"), "--temperature", str(T), "--latents", "10"]
    args += ["--eval-split", "train", "--modes", "1,6,7,8", "--init", "equilibrium"]
    assert load_script().main([*args, "--updates", "0"]) == 0
    (line,) = rows(capsys.readouterr().out)
    tk = pca.pca_spectrum(ds.x_train)
    expected = equilibrium.signal_fraction(tk, T)[[0, 5, 6, 7]]
    assert 0.2 < expected[2] < 0.6 and expected[3] == 0.0
    assert line[0] == 0
    np.testing.assert_allclose(line[2:], expected, rtol=0, atol=5e-5)


def test_prints_one_line_per_window(tmp_path, capsys):
    ds = gaussian_prepared(SPECTRUM, sizes=(2000, 500, 500), seed=3)
    ds.save(tmp_path / "prepared.npz")
    args = [str(tmp_path / "prepared.npz"), "--latents", "10", "--modes", "1,2"]
    assert load_script().main([*args, "--updates", "2500", "--every", "1000"]) == 0
    table = rows(capsys.readouterr().out)
    np.testing.assert_array_equal(table[:, 0], [0, 1000, 2000, 2500])
    assert np.all(np.isfinite(table)) and table.shape[1] == 4
    # from the default start, 2,500 updates at T = 1e-6 activate PC 1 (T_1 = 0.5)
    assert table[-1, 2] > 0.9
