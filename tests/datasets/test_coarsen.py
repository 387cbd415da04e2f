"""The dataset transforms of the studies (docs/science.md §11): ``dataset.coarsen`` and
``split.train_subsample``.

Oracles: a naive block average written out cell by cell (independent of xarray's
``coarsen``), the exact block means of separable sinusoidal fields (the discrete mean of a
sinusoid over N equally spaced cells is its centre value times a known factor), and the
sampling error of covariance eigenvalues of Gaussian data (``sqrt(2/n)``).
"""

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from scipy.stats import random_correlation

from collapse_spectroscopy.analysis import equilibrium, pca, thresholds
from collapse_spectroscopy.datasets.coarsen import CoarsenOptions, coarsen_samples
from collapse_spectroscopy.datasets.prepare import SplitOptions, prepare
from collapse_spectroscopy.datasets.rasters import RasterStack
from collapse_spectroscopy.datasets.sources import SourceOptions
from collapse_spectroscopy.datasets.split import subsample_train
from collapse_spectroscopy.datasets.stack import row_areas_km2_geographic, stack_samples
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.prepared import load_prepared


def _stack(layers, valid, transform, crs) -> RasterStack:
    return RasterStack(
        layers=[np.asarray(v, dtype=np.float64) for v in layers],
        valid=valid,
        names=[f"f{i}" for i in range(len(layers))],
        labels=[f"f{i}" for i in range(len(layers))],
        transform=transform,
        crs=crs,
    )


def _naive(values, valid, areas, n, min_valid):
    """Block by block, by hand: {(block row, block col): (mean per layer, valid area)}
    of the kept blocks."""
    h, w = valid.shape
    out = {}
    for bi in range(-(-h // n)):
        for bj in range(-(-w // n)):
            total, held, sums = 0.0, 0.0, np.zeros(len(values))
            for r in range(bi * n, min(bi * n + n, h)):
                for c in range(bj * n, min(bj * n + n, w)):
                    total += areas[r, c]
                    if valid[r, c]:
                        held += areas[r, c]
                        sums += [v[r, c] * areas[r, c] for v in values]
            if held > 0 and held / total >= min_valid:
                out[(bi, bj)] = (sums / held, held)
    return out


@pytest.mark.parametrize("n", [2, 3])  # 3 does not divide the grid: edge blocks cut short
def test_coarsen_equals_a_naive_block_average_with_holes(n):
    rng = np.random.default_rng(1)
    h, w = 7, 8
    transform = Affine(2.0, 0, -8.0, 0, -2.0, 70.0)  # 2-degree cells from 70 N: areas vary
    layers = [rng.normal(10, 3, (h, w)), rng.normal(-5, 1, (h, w))]
    valid = rng.random((h, w)) > 0.35  # ~35 % holes, scattered
    valid[0, :3] = False  # a block with no data at all
    samples = stack_samples(_stack(layers, valid, transform, CRS.from_epsg(4326)))
    rows = row_areas_km2_geographic(transform, h, _geod())
    areas = np.broadcast_to(rows[:, None], (h, w))
    for min_valid in (0.5, 0.8):
        want = _naive(layers, valid, areas, n, min_valid)
        got = coarsen_samples(samples, n, min_valid)
        wc = -(-w // n)
        keys = [(int(i) // wc, int(i) % wc) for i in got.index]
        assert keys == sorted(want)  # the same blocks kept, row-major
        # float32 features: 1e-6 relative is float32 rounding of values ~10
        np.testing.assert_allclose(got.x, [want[k][0] for k in keys], rtol=1e-6)
        np.testing.assert_allclose(got.area_km2, [want[k][1] for k in keys], rtol=1e-12)
        # a coarse cell's centre is the centre of its n x n block on the input grid
        bi, bj = np.array(keys).T
        np.testing.assert_allclose(got.lon, -8.0 + 2.0 * n * (bj + 0.5))
        np.testing.assert_allclose(got.lat, 70.0 - 2.0 * n * (bi + 0.5))
        assert got.info["grid_shape"] == [-(-h // n), wc]
        assert got.info["coarsen"]["factor"] == n


def _geod():
    import pyproj

    return pyproj.Geod(ellps="WGS84")


def test_a_block_is_kept_from_min_valid_of_its_area():
    """On an equal-area grid a 2 x 2 block with 2 valid cells is half valid: kept at
    coarsen_min_valid 0.5, dropped at 0.51."""
    valid = np.ones((2, 4), dtype=bool)
    valid[:, 0] = False  # block (0, 0): 2 of 4 cells valid; block (0, 1): all 4
    transform = Affine(50e3, 0, 0.0, 0, -50e3, 1e6)  # 50 km cells of EPSG:6933
    samples = stack_samples(
        _stack([np.arange(8.0).reshape(2, 4)], valid, transform, CRS.from_epsg(6933))
    )
    assert coarsen_samples(samples, 2, 0.5).n == 2
    assert coarsen_samples(samples, 2, 0.51).n == 1
    with pytest.raises(InputError, match="dataset.coarsen = 4 with dataset.coarsen_min_valid"):
        coarsen_samples(samples, 4, 0.9)  # the one 2 x 4 block (padded to 4 x 4) is 6/16 valid


def _standardized_spectrum(x):
    x = np.asarray(x, dtype=np.float64)
    x = (x - x.mean(0)) / x.std(0)
    return np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1] / x.shape[1]


def test_coarsening_smooth_fields_keeps_their_spectrum():
    """Six layers mixing four separable sinusoids of 1-3 periods over a 144 x 72 grid of
    equal-area 50 km cells, coarsened 4 x 4.

    Exact oracle: the discrete mean of sin over N cells spaced 1 apart is its centre value
    times D(L) = sin(N pi / L) / (N sin(pi / L)) (L the wavelength in cells), so a coarse
    cell holds each factor at its centre times a_i = D(Lx_i) D(Ly_i), and every factor
    still spans whole periods on the coarse grid: the coarse layers are A diag(a) f with
    orthogonal factors of variance a_i^2 / 4. Their normalized spectrum is that of the
    correlation matrix of A diag(a^2 / 4) A^T (the input's: A diag(1/4) A^T), to float32
    rounding of the features (1e-5). A coarsening that took one cell per block instead of
    the mean would miss it by ~1e-3 (no factor a).

    Tolerance against the input's spectrum, the claim: each factor's variance shrinks by at
    most 1 - min a_i^2 (5.8 % here: wavelengths of 48 x 36 cells, 12 x 9 blocks), and a
    normalized eigenvalue (<= 1) moves by at most that much.
    """
    h, w, n = 72, 144, 4
    r, c = np.mgrid[0:h, 0:w].astype(np.float64)
    waves = [(1, 1), (2, 1), (1, 2), (3, 2)]  # (periods across, periods down)
    phases = np.random.default_rng(3).uniform(0, 2 * np.pi, (len(waves), 2))
    factors = [
        np.sin(2 * np.pi * kx * c / w + p) * np.cos(2 * np.pi * ky * r / h + q)
        for (kx, ky), (p, q) in zip(waves, phases, strict=True)
    ]
    mix = np.random.default_rng(4).normal(size=(6, len(waves)))
    layers = [sum(mix[j, i] * factors[i] for i in range(len(waves))) for j in range(6)]
    transform = Affine(50e3, 0, -3.6e6, 0, -50e3, 1.8e6)
    samples = stack_samples(_stack(layers, np.ones((h, w), bool), transform, CRS.from_epsg(6933)))
    coarse = coarsen_samples(samples, n, 0.5)
    assert coarse.n == (h // n) * (w // n)

    def d(length):
        return np.sin(n * np.pi / length) / (n * np.sin(np.pi / length))

    a = np.array([d(w / kx) * d(h / ky) for kx, ky in waves])

    def predicted(scale):
        cov = mix @ np.diag(scale**2 / 4) @ mix.T
        s = np.sqrt(np.diag(cov))
        return np.sort(np.linalg.eigvalsh(cov / np.outer(s, s)))[::-1] / 6

    fine, got = _standardized_spectrum(samples.x), _standardized_spectrum(coarse.x)
    np.testing.assert_allclose(fine, predicted(np.ones(4)), atol=1e-5)
    np.testing.assert_allclose(got, predicted(a), atol=1e-5)
    assert np.max(np.abs(predicted(a) - predicted(np.ones(4)))) > 1e-4  # the check can fail
    np.testing.assert_allclose(got, fine, atol=1 - a.min() ** 2)


# ---- train_subsample --------------------------------------------------------------------


def test_subsample_keeps_a_nested_seeded_share_of_training_only():
    labels = np.random.default_rng(0).integers(0, 3, 10_000)
    train = labels == 0
    small, large = (subsample_train(train, f, seed=7) for f in (0.01, 0.1))
    assert small.sum() == round(0.01 * train.sum()) and large.sum() == round(0.1 * train.sum())
    assert not (small & ~train).any() and not (small & ~large).any()  # nested, train only
    assert np.array_equal(small, subsample_train(train, 0.01, seed=7))  # seeded
    assert not np.array_equal(small, subsample_train(train, 0.01, seed=8))
    assert subsample_train(train, 1.0, seed=7) is train


def test_fitted_threshold_error_shrinks_as_one_over_sqrt_n():
    """The analytic route: at equilibrium the linear VAE's collapse curve on a training
    split is rho_k = 1 - T / T_k with T_k that split's normalized covariance eigenvalue
    (docs/science.md §2), so the threshold fitted on its scan is the PCA ratio of the
    (subsampled) training split. For Gaussian data an eigenvalue's sampling error is
    ~ lambda_k sqrt(2/n): the RMS relative error over 30 draws and 6 ranks falls by
    sqrt(10) = 3.16 per factor 10 in n. Tolerance: a ratio within [3.16/1.6, 3.16*1.6]: the
    RMS over 180 errors is known to ~ 1/sqrt(2*180) = 5 % (ranks correlate somewhat,
    say 10 %), and at n = 200 (f = 0.01 of 20,000) the O(d/n) = 3 % eigenvalue bias adds
    to the noise; a subsample that ignored f gives a ratio of 1."""
    truth = np.array([0.4, 0.25, 0.15, 0.1, 0.07, 0.03])
    temperatures = np.geomspace(1e-3, 0.02, 6)  # below every T_k: all points fit
    n_train, fractions = 20_000, (0.01, 0.1, 1.0)
    errors = {f: [] for f in fractions}
    for rep in range(30):
        rng = np.random.default_rng(rep)
        corr = random_correlation.rvs(truth * truth.size, random_state=rng)
        lam, vecs = np.linalg.eigh(corr)
        x = (rng.standard_normal((n_train, truth.size)) * np.sqrt(np.clip(lam, 0, None))) @ vecs.T
        train = np.ones(n_train, dtype=bool)
        for f in fractions:
            kept = x[subsample_train(train, f, seed=rep)]
            ratio = pca.pca_spectrum((kept - kept.mean(0)) / kept.std(0))
            for k, tk in enumerate(truth):
                rho = equilibrium.signal_fraction(ratio, temperatures)[:, k]
                fit = thresholds.fixed_exponent_threshold(temperatures, rho, rho_min=0.0)
                errors[f].append(fit.threshold / tk - 1)
    rms = {f: np.sqrt(np.mean(np.square(e))) for f, e in errors.items()}
    for small, large in ((0.01, 0.1), (0.1, 1.0)):
        assert np.sqrt(10) / 1.6 < rms[small] / rms[large] < np.sqrt(10) * 1.6, rms


# ---- through prepare --------------------------------------------------------------------


def test_prepare_coarsens_and_subsamples_and_leaves_defaults_untouched(tmp_path):
    """Coarsening the synthetic 1-degree stack 2 x 2 keeps ~1/4 of the cells and the same
    land area to within the dropped coastal blocks; subsampling leaves val and test as
    they are; with the defaults nothing of either is written."""
    plain = prepare(tmp_path / "a", SourceOptions())
    ds = load_prepared(tmp_path / "a" / "prepared.npz")
    assert "coarsen" not in ds.metadata["source_info"]
    assert "train_subsample" not in plain and "coarsen" not in ds.metadata["source_options"]
    summary = prepare(
        tmp_path / "b", SourceOptions(), SplitOptions(train_subsample=0.1), CoarsenOptions(2, 0.5)
    )
    coarse = load_prepared(tmp_path / "b" / "prepared.npz")
    n_fine, n_coarse = plain["n_samples"], summary["n_samples"]
    assert n_fine / 4 * 0.9 < n_coarse < n_fine / 4 * 1.1  # coasts: blocks kept or dropped
    # blocks kept at >= half valid: the land area changes by well under the coastal share
    assert abs(summary["area_km2"] / plain["area_km2"] - 1) < 0.02
    kept = summary["train_subsample"]
    assert kept["samples_kept"] == coarse.x_train.shape[0] == round(0.1 * kept["samples_in_split"])
    assert coarse.x_val.shape[0] == summary["splits"]["val"]["samples"]
    assert coarse.metadata["source_info"]["grid_shape"] == [90, 180]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(coarsen=CoarsenOptions(0)), "dataset.coarsen = 0: expected an integer >= 1"),
        (dict(coarsen=CoarsenOptions(2, 0)), "dataset.coarsen_min_valid = 0: expected"),
        (dict(split=SplitOptions(train_subsample=0)), "split.train_subsample = 0: expected"),
        (dict(split=SplitOptions(train_subsample=1.5)), "split.train_subsample = 1.5: expected"),
    ],
)
def test_prepare_names_a_bad_value_before_any_work(tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        prepare(tmp_path / "out", SourceOptions(), **options)
    assert not (tmp_path / "out").exists()


def test_coarsen_of_a_table_is_an_error(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b\n" + "\n".join(f"{i},{i % 7}" for i in range(50)))
    with pytest.raises(InputError, match="dataset.coarsen = 2 applies to raster sources only"):
        prepare(
            tmp_path / "out",
            SourceOptions(source="table", path=[str(table)]),
            coarsen=CoarsenOptions(2),
        )
