"""Tests of the synthetic manifold source (datasets/synthetic_manifold.py): its truth,
its seed and smoothness, its intrinsic dimension over the noise, its PCA spectrum and its
bad parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from collapse_spectroscopy import cli
from collapse_spectroscopy.datasets import synthetic, synthetic_manifold
from collapse_spectroscopy.datasets.prepare import OUTPUTS, SYNTHETIC_DIR
from collapse_spectroscopy.store.prepared import load_prepared
from dataset_helpers import leftovers, run_cli

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]


@pytest.fixture(scope="module")
def manifold(tmp_path_factory):
    """The manifold kind at its defaults (m = 2, d = 10, noise 0.02), prepared once through
    the CLI; its noisy layers read back from the GeoTIFFs, land cells x features."""
    out = tmp_path_factory.mktemp("manifold")
    assert cli.main(["prepare", "--out", str(out), "--synthetic-kind", "manifold"]) == 0
    folder = out / SYNTHETIC_DIR
    bands = []
    for i in range(1, 11):
        with rasterio.open(folder / f"synth_{i}.tif") as src:
            bands.append(src.read(1))
    stack = np.stack(bands)
    land = stack[0] != np.float32(synthetic.NODATA)
    truth = json.loads((folder / synthetic.TRUTH_FILE).read_text())
    return out, stack, land, truth


def test_manifold_prepare_writes_truth_and_a_prepared_dataset(manifold):
    out, stack, land, truth = manifold
    assert (out / OUTPUTS["prepared"]).is_file() and (out / OUTPUTS["split_map_png"]).is_file()
    assert sorted(p.name for p in (out / SYNTHETIC_DIR).iterdir()) == sorted(
        [f"synth_{i}.tif" for i in range(1, 11)] + ["truth.json"]
    )
    assert (truth["kind"], truth["intrinsic_dim"], truth["features"]) == ("manifold", 2, 10)
    assert truth["noise"] == 0.02 and "sin(w_jt . u + phi_jt)" in truth["generator"]
    assert len(truth["pca_spectrum"]) == 10
    # the noise's share of the variance: noise^2 / (1 + noise^2) up to sampling (n ~ 25k
    # cells x 10 layers: relative std of a variance ~ sqrt(2 / 250k) ~ 0.3 %; 2 % allowed)
    assert truth["noise_fraction"] == pytest.approx(0.02**2 / (1 + 0.02**2), rel=0.02)
    assert truth["distortion_floor"] == pytest.approx(truth["noise_fraction"] * 8 / 10)
    ds = load_prepared(out / OUTPUTS["prepared"])
    assert ds.feature_names == [f"synth_{i}" for i in range(1, 11)]
    assert ds.true_spectrum is None  # no linear spectrum truth for a nonlinear manifold
    assert "true_spectrum_meaning" not in ds.metadata
    info = ds.metadata["source_info"]
    assert (info["kind"], info["intrinsic_dim"], info["noise"]) == ("manifold", 2, 0.02)
    assert ds.metadata["source_options"]["synthetic_kind"] == "manifold"
    assert ds.x_train.shape[0] + ds.x_val.shape[0] + ds.x_test.shape[0] == int(land.sum())


def test_manifold_is_seeded_and_spatially_smooth(manifold):
    _, stack, land, _ = manifold
    a, _ = synthetic_manifold.generate_manifold(seed=0)
    np.testing.assert_array_equal(a, stack)  # the GeoTIFFs hold exactly the generator's
    b, _ = synthetic_manifold.generate_manifold(seed=0)
    np.testing.assert_array_equal(a, b)
    c, _ = synthetic_manifold.generate_manifold(seed=1)
    assert not np.array_equal(a, c)
    # the same grid and land mask as the gaussian kind of the same seed
    np.testing.assert_array_equal(land, synthetic.land_mask(0))
    # Smooth in space: east neighbours on land correlate at > 0.9 in every layer (measured
    # 0.992-0.998: 1 degree is ~1/30 of the shortest wavelength; the white noise is 0.04 %
    # of the variance). The gaussian kind, i.i.d. per cell, gives ~0.
    pair = land[:, :-1] & land[:, 1:]
    for band in stack:
        r = np.corrcoef(band[:, :-1][pair], band[:, 1:][pair])[0, 1]
        assert r > 0.9


def test_manifold_has_intrinsic_dimension_2_over_the_noise_level(manifold):
    """Local PCA: the covariance of the 100 nearest neighbours (in feature space) of 300
    cells has 2 dominant eigenvalues, and the other 8 sit at the noise variance.

    Measured at seed 0 (in units of noise^2 = 4e-4, medians over the 300 cells): the
    eigenvalues are 86, 62, then 1.5 .. 0.6, and the mean of the 8 normal ones is 1.00
    (curvature adds a little, choosing neighbours by distance removes a little; 0.95-1.03
    at seeds 1, 2 and noise 0.016-0.04). With intrinsic_dim = 3 the third is 73. Bounds:
    the 2nd above 30, the 3rd below 3 (a gap of 40x between them), and the normal mean in
    [0.85, 1.2], which a noise standard deviation off by 10 % (0.81 or 1.21) fails.
    """
    from scipy.spatial import cKDTree

    _, stack, land, _ = manifold
    x = stack[:, land].T.astype(np.float64)
    rng = np.random.default_rng(0)
    centres = rng.choice(len(x), 300, replace=False)
    _, idx = cKDTree(x).query(x[centres], k=100)
    nb = x[idx] - x[idx].mean(axis=1, keepdims=True)
    ev = np.linalg.eigvalsh(np.einsum("cki,ckj->cij", nb, nb) / 100)[:, ::-1] / 0.02**2
    median = np.median(ev, axis=0)
    assert median[1] > 30, median
    assert median[2] < 3, median
    assert 0.85 < np.median(ev[:, 2:].mean(axis=1)) < 1.2, median


def test_manifold_pca_needs_at_least_4_components_for_90_percent(manifold):
    _, stack, land, truth = manifold
    x = stack[:, land].T.astype(np.float64)
    ev = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))[::-1]
    cum = np.cumsum(ev / ev.sum())
    assert cum[2] < 0.9  # 3 components are not enough (measured: 5 are needed)
    assert 1 - cum[1] >= 0.3  # PCA distortion at 2 components (measured 0.38)
    assert truth["pca_components_for_90_percent"] >= 4
    # the truth is the noiseless spectrum: the noise moves each lambda_k / V by at most
    # noise^2 / (1 + noise^2) ~ 4e-4 plus a cross term of that order (measured 1.6e-4)
    np.testing.assert_allclose(ev / ev.sum(), truth["pca_spectrum"], atol=1e-3)


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--features", "2"], "dataset.features"),
        (["--intrinsic-dim", "0"], "dataset.intrinsic_dim"),
        (["--noise=-0.1"], "dataset.noise"),
    ],
)
def test_manifold_bad_parameters_name_the_key(tmp_path, capsys, flags, key):
    argv = ["prepare", "--out", tmp_path / "o", "--synthetic-kind", "manifold", *flags]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and key in err
    assert leftovers(tmp_path / "o") == []
