"""The null model recovered by an MLP VAE (issue 11, must-show 2; docs/science.md §7, §9).

On Gaussian data the linear VAE is not just the simplest model but the optimal one: a
Gaussian source is compressed best by reverse water-filling over its principal components,
which is exactly the linear VAE's equilibrium (docs/science.md §2). A nonlinear decoder
therefore has nothing to gain, and a correctly trained and measured MLP VAE must show the
linear null model's spectra: collapse thresholds ``T_k`` and utilities ``u_k`` equal to
``lambda_k / V``. What this catches: a wrong ``T <-> beta`` factor anywhere on the MLP's
path (the thresholds move by that factor; the utilities, read at the coldest points,
barely do), a decoder that cannot reach the data
(a saturating output: the utilities fall short), a measurement through the networks that
ranks, prunes or normalizes wrongly (``Dn_k`` and so ``u_k`` off).

The scan, chosen to be decisive at ~20 s of one core (measured: 21 s CPU, 43 s wall on
the shared 2-core machine under a load of 7):

- Data: 4 features with the normalized spectrum 0.5, 0.3, 0.15, 0.05 (a factor 1.7-3
  between neighbours, so no two modes mix for long, docs/science.md §7b); 10k training,
  2k validation, 10k test samples (``synthetic_gaussian``).
- Model: ``model.kind: mlp`` with the schema's defaults (hidden 64-64, GELU) and
  ``K = d = 4`` latents; the paper's optimizer (Adam 1e-3, batch 256).
- Temperatures: 6, log-spaced from 0.005 to 0.7. "Inside the scan" means the mode's
  threshold lies strictly inside that range, which holds for all four modes (0.5 ... 0.05).
  Each then has >= 3 points with ``rho`` above ``rho_min`` (mode 4: T = 0.005, 0.013, 0.036)
  for the fit of docs/science.md §4.1, and the coldest point lies a decade below the
  smallest threshold, so the best-over-scan utility there is ``T_k - T^2/T_k``, within
  1 % of ``T_k`` (docs/science.md §4.3). The hottest point (all collapsed) shows no mode
  survives above ``T_1``.
- Budget: 3,000 updates per point (patience half of it, validation every 500). Measured
  with this scan, data and training seeds 0 and 1: fitted thresholds 0.963-1.017 and
  utilities 0.990-1.028 times ``lambda_k / V``; an 8-point scan with 4,000 updates
  agreed as well (within 2.2 %). So the budget is not what limits the agreement.

The 10 % bound (the issue's): the sampling term between the training spectrum (the
reference) and the 10k-sample test split on which ``Dn_k`` is measured is
~ sqrt(2/n) = 1.4 % of a mode's variance (1 sigma); the coldest point's equilibrium
shortfall is 1 % for mode 4; residual non-equilibrium and Adam noise moved ``rho`` by
<= 0.01 (measured), 2 % of ``T_k`` in the fit. Together ~5 % at 3 sigma; 10 % leaves
room for other seeds, yet the failures this test is for land far outside it (measured
with this scan when the test was written): beta doubled on the MLP's path gives fitted
thresholds 0.46-0.51 times ``lambda_k / V`` (mode 4 keeps only 2 fit points); a ``tanh``
appended to the decoder's output (reconstructions saturate at +-1 on unit-variance data)
gives utilities 0.55-0.90 and thresholds 0.49-0.93 times ``lambda_k / V``.
"""

import numpy as np
import pytest

from collapse_spectroscopy.analysis import observables, pca, spectra
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.models.families import Architecture, numpy_codec
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_splits

# the schema's default MLP (64-64 GELU)
MLP = Architecture.from_spec({**settings.section_defaults("model"), "kind": "mlp"})

SPECTRUM = [0.5, 0.3, 0.15, 0.05]
TEMPERATURES = np.geomspace(0.005, 0.7, 6)
SIZES = (10_000, 2_000, 10_000)  # train, validation, test
CONFIG = dict(max_updates=3000, patience=0.5, eval_every=500, batch_size=256, learning_rate=1e-3)
TOLERANCE = 0.10  # the bound, argued in the module docstring


def mlp_scan(data_seed=0, train_seed=0):
    """Train and measure every temperature the way the workflow's jobs do (train_scan_point,
    measure_decoded on the test split, spectra_table over the scan)."""
    xtr, xva, xte, _, _ = gaussian_splits(SPECTRUM, sizes=SIZES, seed=data_seed)
    tk = pca.pca_spectrum(xtr)
    config = TrainConfig(**CONFIG, device="cpu")
    points = []
    for T in TEMPERATURES:
        result = train_scan_point(
            xtr, xva, T, seed=train_seed, latents=len(SPECTRUM), config=config, arch=MLP
        )
        assert result.engine == "mlp_fast"  # auto on a CPU
        encode, decode = numpy_codec(result.model)
        points.append(observables.measure_decoded(encode, decode, xte, xtr, seed=train_seed))
    rho = np.array([p.per_latent["signal_fraction"] for p in points])
    dn = np.array([p.truncated_distortion for p in points])
    table = spectra.spectra_table(TEMPERATURES, rho, dn, tk)
    return {"tk": tk, "rho": rho, "table": table}


@pytest.fixture(scope="module")
def scan():
    return mlp_scan()


def inside_the_scan(tk):
    """The modes whose threshold lies strictly inside the scanned range."""
    return (TEMPERATURES.min() < tk) & (tk < TEMPERATURES.max())


@pytest.mark.slow
def test_the_reference_is_the_declared_spectrum(scan):
    # the training PCA (the reference) is the spectrum we built, up to its sampling error
    # sqrt(2/n) = 1.4 % at n = 10k: 5 % is > 3 sigma
    np.testing.assert_allclose(scan["tk"], SPECTRUM, rtol=0.05)
    assert inside_the_scan(scan["tk"]).all()  # every mode is checked below


@pytest.mark.slow
def test_mlp_thresholds_are_the_pca_spectrum(scan):
    table, tk = scan["table"], scan["tk"]
    for k in np.flatnonzero(inside_the_scan(tk)):
        row = table.iloc[k]
        assert row.fit_points >= 3, f"rank {k + 1}: {row.fit_note}"
        assert row.collapse_threshold == pytest.approx(tk[k], rel=TOLERANCE), f"rank {k + 1}"


@pytest.mark.slow
def test_mlp_utilities_are_the_pca_spectrum(scan):
    table, tk = scan["table"], scan["tk"]
    for k in np.flatnonzero(inside_the_scan(tk)):
        assert table.utility.iloc[k] == pytest.approx(tk[k], rel=TOLERANCE), f"rank {k + 1}"


@pytest.mark.slow
def test_everything_collapses_above_the_largest_threshold(scan):
    # T = 0.7 > T_1 = 0.5: the equilibrium has rho = 0 for every latent; 0.03 is the
    # oracle's bound for collapsed latents (tests/analysis/test_oracle.py)
    assert TEMPERATURES[-1] > scan["tk"][0]
    assert np.all(scan["rho"][-1] < 0.03), scan["rho"][-1]
