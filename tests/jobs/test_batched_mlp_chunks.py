"""A chunk job with ``training.engine: batched`` and ``model.kind: mlp`` (issue 22 item 2):
its points are trained together as one stacked MLP, then each is measured through its
networks and written as after a training of its own; the scan gathered from them gives
the spectra that one-point jobs give.

Oracle: three one-point jobs with the ``mlp_fast`` engine, the per-point engine the
batched MLP engine follows (tests/training/test_batched_mlp.py). In float64 the two differ
only in the order the batched products sum (~1e-16 relative per update); 2000 Adam
updates grow that to ~1e-14 (measured, relative to the largest of its kind: weights
7.5e-15, training log 4e-16, observables 4.4e-13, the spectra table as written equal), and
the observables are smooth functions of the weights on this well-conditioned data
(eigenvalues 0.5..0.05, no latent near its threshold), so every number of a scan point and
of the spectra table agrees to TOL = 1e-10 relative to the largest of its kind
(tests/jobs/test_batched_chunks.py's bound); another point's files fail it (checked
below). The free-exponent fit is the exception: scipy's ``curve_fit``
(Levenberg-Marquardt) stops once its relative step is below its ``xtol`` of 1.5e-8, so
inputs 1e-13 apart may stop on iterates ~1e-8 apart (measured: 2e-9 in
``free_exponent``); its columns get FIT_TOL = 1e-6.
"""

import numpy as np
import pandas as pd
import pytest

from collapse_spectroscopy.cli import main
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.jobs.points import PointFiles
from collapse_spectroscopy.jobs.train_job import train_points
from collapse_spectroscopy.models.families import Architecture
from collapse_spectroscopy.store import scanfile
from synthetic_gaussian import gaussian_prepared
from test_batched_chunks import TOL, assert_close_point
from test_chunks import assert_clean

POINTS = [(0.05, 2, "a"), (0.02, 1, "b"), (0.1, 0, "c")]  # not in scan order
LATENTS, HIDDEN, ACTIVATION = 4, (16, 16), "gelu"
FIT_TOL = 1e-6
FREE_FIT = ("free_exponent", "free_threshold", "mode_free_exponent")  # curve_fit's columns
EVAL_SPLIT = settings.section_defaults("training")["eval_split"]
SIGMA2 = settings.section_defaults("model")["sigma2"]
TRAINING = dict(
    max_updates=2000,
    patience=500,
    learning_rate=3e-3,
    eval_every=250,
    checkpoint_every=500,
    device="cpu",
    dtype="float64",
    progress=False,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("batched_mlp_chunks") / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=4).save(path)
    return path


def run_job(prepared, folder, engine, names="abc"):
    """``train_points`` of an MLP VAE on the chunk's points named in ``names``; the report
    lines, as the CLI prints them."""
    points = [PointFiles.of(t, s, folder / f"{n}.nc") for t, s, n in POINTS if n in names]
    lines = []
    train_points(
        points,
        data=prepared,
        latents=LATENTS,
        sigma2=SIGMA2,
        training={**TRAINING, "engine": engine},
        eval_split=EVAL_SPLIT,
        arch=Architecture("mlp", tuple(HIDDEN), ACTIVATION),
        report=lambda p, r: lines.append(f"{p.label}: {r.summary_line() if r else 'kept'}"),
    )
    return lines


def spectra(folder):
    """gather -> spectra through the CLI on the folder's three points; the table."""
    scan, csv = folder / "scan.nc", folder / "spectra.csv"
    points = [str(folder / f"{name}.nc") for _, _, name in POINTS]
    assert main(["gather", *points, "--out", str(scan)]) == 0
    assert main(["spectra", str(scan), "--out", str(csv), "--rho-min", "0.05"]) == 0
    return pd.read_csv(csv)


@pytest.fixture(scope="module")
def alone(prepared, tmp_path_factory):
    """Each point trained by a job of its own with mlp_fast; the folder and the spectra."""
    folder = tmp_path_factory.mktemp("mlp_fast_alone")
    for _, _, name in POINTS:
        run_job(prepared, folder, "mlp_fast", names=name)
    return folder, spectra(folder)


@pytest.fixture(scope="module")
def together(prepared, tmp_path_factory):
    """The three points as one chunk job with the batched engine; the folder, the report
    lines and the spectra."""
    folder = tmp_path_factory.mktemp("batched_mlp_chunk")
    lines = run_job(prepared, folder, "batched")
    return folder, lines, spectra(folder)


def test_a_batched_mlp_chunk_follows_three_mlp_fast_jobs(together, alone):
    """Each point's scan file (observables measured through the networks), weights (with
    the architecture) and training log, to TOL; the points stop at different updates."""
    folder, lines, _ = together
    assert len(lines) == 3 and all("[batched]" in line for line in lines), lines
    updates = []
    for t, s, name in POINTS:
        assert_close_point(alone[0] / name, folder / name)
        point = scanfile.read(folder / f"{name}.nc")
        assert point.attrs["engine"] == "batched" and '"kind": "mlp"' in point.attrs["model"]
        updates.append(int(point["updates_run"].values))
        assert f"T={t:g}, seed={s}: trained" in "\n".join(lines)
    assert len(set(updates)) > 1, f"every point ran {updates}: retiring a point untested"
    assert_clean(folder)


def test_the_spectra_are_the_one_point_jobs(together, alone):
    """gather and spectra accept the chunk's files, and the spectra table (thresholds,
    utilities, distortions, PCA references) is the one of the one-point jobs, to TOL
    (the free-exponent fit to FIT_TOL)."""
    got, ref = together[2], alone[1]
    assert list(got.columns) == list(ref.columns) and len(got) == LATENTS
    for col in ref.columns:
        a, b = ref[col].to_numpy(), got[col].to_numpy()
        if a.dtype.kind not in "fiu":  # notes (NaN where none)
            assert ref[col].equals(got[col]), col
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        ok = ~np.isnan(a)
        scale = max(np.abs(a[ok]).max(initial=0.0), 1e-300)
        tol = FIT_TOL if col in FREE_FIT else TOL
        assert np.abs(a[ok] - b[ok]).max(initial=0.0) <= tol * scale, col
    assert np.isfinite(got["utility"]).any() and np.isfinite(got["best_distortion"]).all()


def test_another_points_training_is_caught(together, alone):
    """The comparison above is not vacuous: point b's files against point a's oracle."""
    with pytest.raises(AssertionError):
        assert_close_point(alone[0] / "a", together[0] / "b")
