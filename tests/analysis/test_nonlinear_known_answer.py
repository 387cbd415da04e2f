"""The nonlinear known answer (issue 11, must-show 1; docs/science.md §9).

Data on a 2-dimensional nonlinear manifold in 10 features (the synthetic source's manifold
kind, 2 % noise): PCA needs at least 4 components for 90 % of the variance and leaves at
least 0.3 of it with 2, while an MLP VAE at a suitable temperature keeps exactly 2 active
latents and reconstructs the data through them.

One scan point, T = 0.01, trained by the real `train` command with the paper's protocol
(Adam 1e-3, batch 256, early stopping with patience 0.1 of a 40k budget; it stops near 19k
updates, ~20-35 s on one core). The bounds are the issue's: they leave wide margins against
what was measured at this seed (rho 0.98, 0.97, then 2e-4; Dn_2 = 0.0016; PCA's distortion
at 2 components 0.36), so the test checks the qualitative claim, not the last digits.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from collapse_spectroscopy import cli
from collapse_spectroscopy.analysis.rate_distortion import rate_distortion_points, split_reference
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.prepared import load_prepared

T = 0.01


@pytest.fixture(scope="module")
def manifold_point(tmp_path_factory):
    root = tmp_path_factory.mktemp("known_answer")
    data = root / "data"
    assert cli.main(["prepare", "--out", str(data), "--synthetic-kind", "manifold"]) == 0
    out = root / "point.nc"
    cmd = [
        *(sys.executable, "-m", "collapse_spectroscopy.cli", "train"),
        *("--data", str(data / "prepared.npz"), "-T", str(T), "--seed", "0", "--out", str(out)),
        *("--kind", "mlp", "--hidden", "64", "64", "--latents", "6"),
        *("--max-updates", "40000", "--device", "cpu", "--threads", "1"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    truth = json.loads((data / "synthetic_layers" / "truth.json").read_text())
    return scanfile.read(out), truth, data / "prepared.npz"


@pytest.mark.slow
def test_pca_spreads_the_manifold_over_many_components(manifold_point):
    point, truth, _ = manifold_point
    assert truth["intrinsic_dim"] == 2 and truth["features"] >= 8
    assert truth["pca_components_for_90_percent"] >= 4
    # train components applied to the test split: the linear null model's distortion
    assert float(point["pca_eval_distortion"].values[2]) >= 0.3


@pytest.mark.slow
def test_an_mlp_vae_keeps_exactly_the_intrinsic_dimension(manifold_point):
    point, _, _ = manifold_point
    rho = np.asarray(point["signal_fraction"].values)  # ranked, descending
    assert int((rho > 0.5).sum()) == 2, rho
    dn = np.asarray(point["truncated_distortion"].values)  # k = 0..K, pruned latents at 0
    assert dn[2] <= 0.05, dn


@pytest.mark.slow
def test_the_mlp_point_lies_below_the_gaussian_bound(manifold_point):
    """On the rate-distortion plane (docs/science.md §9.1) the MLP VAE carries far less
    information than a code of a Gaussian source with the data's covariance needs at its
    distortion: proof of the non-Gaussian structure it uses. Measured in demo_nonlinear at
    T = 0.0165 and 0.0387: 6 and 4 nats below. The one-draw estimate of D (~8,000 test
    samples, relative error ~sqrt(2/8000) = 1.6 %) moves the bound by
    dD / (2 theta) ~ 0.016 D / (2 T) ~ 0.03 nats here; 1 nat below is far outside it. A
    linear VAE on these data sits above the bound (0.03-0.4 nats in demo_nonlinear_linear)."""
    point, _, data = manifold_point
    ds = load_prepared(data)
    ref = split_reference(ds.x_train, ds.split(str(point.attrs["eval_split"])))
    (p,) = rate_distortion_points(
        [T], [0], [float(point["rate"])], [float(point["distortion_sampled"])], ref
    )
    assert p["excess_rate"] < -1.0, p
    # every active rank carries a finite rate, the collapsed ones ~0
    rate = np.asarray(point["kl_rate"].values)
    rho = np.asarray(point["signal_fraction"].values)
    assert np.all(np.isfinite(rate)) and np.all(rate[rho > 0.5] > 0.5), rate
