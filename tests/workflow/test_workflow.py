"""The real Snakemake workflow, end to end (issue 4): runs, not dry runs.

Each test runs the project's Snakefile in a temporary working directory that holds its
own ``config/config.yaml`` (a tiny synthetic run), so the repository is never written to.
"""

import base64
import json
import os
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import rasterio

from collapse_spectroscopy.datasets import synthetic
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.prepared import load_prepared
from spatial_sampling import mode_design_effects
from workflow_helpers import (
    ROOT,
    SNAKEMAKE,
    SPECTRA_CSV_HEAD,
    check_spectra_against_truth,
    kill_when_paused,
    tiny_config,
    workdir,
)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def snakemake(wd, *args, check=True, **kwargs):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.slow
def test_end_to_end_outputs_agree(tmp_path):
    """The workflow's outputs agree with each other and with the synthetic source's
    declared spectrum (docs/science.md §7).

    The budget, 20k updates (validation every 500), brings the run close enough to
    equilibrium for that comparison: within 1 % of a longer run's thresholds and
    utilities, which ``check_spectra_against_truth`` allows for twice (its 0.02 term); a
    few hundred updates would leave it far off.
    """
    temperatures = [0.01, 0.05, 0.12, 0.3]
    wd = workdir(tmp_path, tiny_config(temperatures, max_updates=20_000, eval_every=500))
    proc = snakemake(wd)
    res = wd / "results" / "tiny"
    # the run ends with its summary (Snakefile onsuccess, cli/run_summary.py)
    said = proc.stdout + proc.stderr
    assert "tiny: results in results/tiny/ -- open results/tiny/figures/fig3_duality.png" in said
    assert "of 4 scan points under-equilibrated" in said
    assert "variables needed n(eps) at eps = 0.1 / 0.03 / 0.01 / 0.003 / 0.001: " in said

    # the spectra table's PCA column is the PCA of the training split, recomputed here
    ds = load_prepared(res / "data" / "prepared.npz")
    x = ds.x_train.astype(np.float64)
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    ratio = sv**2 / np.sum(sv**2)
    table = pd.read_csv(res / "spectra.csv")
    assert list(table.columns[:8]) == SPECTRA_CSV_HEAD
    n = min(len(table), ratio.size)  # K = 6 latents < d = 8 features: 6 rows
    np.testing.assert_allclose(table["pca_ratio"][:n], ratio[:n], atol=1e-12)

    # split counts are the prepared dataset's
    split = json.loads((res / "data" / "split_summary.json").read_text())
    assert split["splits"]["train"]["samples"] == ds.x_train.shape[0]
    assert split["splits"]["test"]["samples"] == ds.x_test.shape[0]

    # one scan point per temperature, T in the file name round-trips exactly
    scan = scanfile.read(res / "scan.nc")
    assert sorted(scan["T"].values.tolist()) == temperatures
    for t in temperatures:
        point = scanfile.read(res / "scan" / f"T={t!r}" / "seed=0.nc")
        assert float(point["T"]) == t
        assert (res / "logs" / "train" / f"T={t!r}_seed=0.log").is_file()

    # utilities are differences of the best truncated distortions of the gathered scan
    dn = scan["truncated_distortion"].values.reshape(-1, scan.sizes["k"])
    best = np.nanmin(dn, axis=0)
    best[0] = 1.0
    np.testing.assert_allclose(table["utility"], -np.diff(best), rtol=1e-9)

    # the spectra are the declared spectrum's: the source's truth.json, carried by the
    # prepared dataset; the training PCA within the sampling error of n_train samples
    # (sqrt(2/n) per eigenvalue, 3 sigma), then T_k and u_k (workflow_helpers)
    truth_file = wd / ds.metadata["source_info"]["truth_file"]
    truth = np.array(json.loads(truth_file.read_text())["spectrum"])
    np.testing.assert_array_equal(ds.true_spectrum, truth)
    real = truth[:n] > 0
    # the synthetic layers are spatially correlated: a split of n cells samples the
    # spectrum like n / deff i.i.d. ones (tests/spatial_sampling.py; deff of the most
    # correlated mode, so the tolerance holds for every mode)
    folder = truth_file.parent
    stack = np.stack([rasterio.open(folder / f"{name}.tif").read(1) for name in ds.feature_names])
    deff = mode_design_effects(stack, stack[0] != np.float32(synthetic.NODATA)).max()
    n_train, n_test = ds.x_train.shape[0] / deff, ds.x_test.shape[0] / deff
    np.testing.assert_allclose(
        table["pca_ratio"].to_numpy()[:n][real], truth[:n][real], rtol=3 * np.sqrt(2 / n_train)
    )
    thresholds, utilities = check_spectra_against_truth(table, truth, temperatures, n_train, n_test)
    assert len(thresholds) >= 3 and len(utilities) >= 6  # T_k 0.25, 0.15, 0.08; u_1..u_6

    # every output follows the umask; the split map's copy beside the figures too (it was
    # written 0600 by mktemp, unreadable to others on a shared cluster)
    for png in (res / "data" / "split_map.png", res / "figures" / "split_map.png"):
        assert png.stat().st_mode & 0o777 == 0o666 & ~current_umask(), png

    for name in (
        "fig1_collapse_scan",
        "fig2_truncated_distortion",
        "fig3_duality",
        "fig4_latent_scale",
        "split_map",
    ):
        png = mpimg.imread(res / "figures" / f"{name}.png")
        assert png.ndim == 3 and min(png.shape[:2]) > 300
        assert png[..., :3].std() > 0.05  # not a blank canvas
    for name in ("fig1_collapse_scan", "fig3_duality"):
        assert (res / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"

    # the HTML report carries every figure's caption
    snakemake(wd, "--report", str(wd / "report.html"))
    html = (wd / "report.html").read_text()
    for caption in (
        "collapse scan",
        "truncated distortion",
        "utility-threshold duality",
        "latent-scale diagnostics",
        "Spatial-block split",
    ):
        assert caption in html, caption

    # nothing left to do on a rerun
    again = snakemake(wd, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def incomplete_outputs(wd):
    """Outputs Snakemake has marked incomplete (jobs started but not recorded as done).

    Snakemake keeps one marker per output under ``.snakemake/incomplete``, named by the
    URL-safe base64 of the output's path (long names split into ``@``-prefixed parts).
    """
    root = wd / ".snakemake" / "incomplete"
    out = set()
    for marker in root.rglob("*"):
        if marker.is_file():
            parts = marker.relative_to(root).parts
            name = "".join(p.lstrip("@") for p in parts)
            try:
                out.add(Path(base64.urlsafe_b64decode(name).decode()))
            except ValueError:
                continue  # not a marker (e.g. a migration flag)
    return out


@pytest.mark.slow
def test_kill_and_rerun_keeps_finished_points(tmp_path):
    """A workflow killed with SIGKILL mid-scan, then rerun: the finished scan points are
    kept, the killed jobs resume from their checkpoints, nothing half-written is left.

    The kill comes at a known state, not after a timer: two points are first run to the
    end (a run with those targets); then the whole workflow runs with the test-only pause
    (``checkpoint.PAUSE_ENV``), so that each training job stops at update 2500, after its
    checkpoint at 2000, and waits; the workflow is killed once both of its job slots
    (``--cores 2``) hold a waiting job.
    """
    temperatures = [0.01, 0.02, 0.04, 0.08, 0.16, 0.3]
    config = tiny_config(temperatures, max_updates=4000, patience=10**6, checkpoint_every=1000)
    wd = workdir(tmp_path, config)
    res = wd / "results" / "tiny"

    def point(t):
        return res / "scan" / f"T={t!r}" / "seed=0.nc"

    snakemake(wd, *(str(point(t).relative_to(wd)) for t in temperatures[:2]))
    done = {point(t): point(t).stat().st_mtime_ns for t in temperatures[:2]}

    paused = kill_when_paused(wd, res, pause_at=2500, count=2)
    killed = [p.parent / "seed=0.nc" for p in paused]
    assert sorted(res.glob("scan/*/seed=0.nc")) == sorted(done)  # the killed jobs wrote none
    pending = incomplete_outputs(wd)
    assert all(p.relative_to(wd) in pending for p in killed)
    assert not any(p.relative_to(wd) in pending for p in done)
    for marker in paused:
        marker.unlink()

    snakemake(wd, "--unlock")
    snakemake(wd)
    assert all(point(t).is_file() for t in temperatures)
    for p, mtime in done.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was redone"
    for p in killed:
        log = res / "logs" / "train" / f"{p.parent.name}_seed=0.log"
        assert "resumed from a checkpoint at update 2000" in log.read_text(), log
    assert not list(res.glob("scan/*/.tmp-*")), "a rerun job left a killed job's temp file"
    assert not list(res.glob("scan/*/*.ckpt")), "a finished job left its checkpoint"
    assert (res / "figures" / "fig3_duality.png").is_file()


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"runs": {"tiny": {"bogus": 1}}}, "runs.tiny"),
        (
            {"runs": {"tiny": {"scan": {"temperatures": [0.1, -0.2]}}}},
            "runs.tiny.scan.temperatures[1]",
        ),
        ({"runs": {"tiny": {"scan": {"seeds": []}}}}, "runs.tiny.scan.seeds"),
        ({"default_runs": ["nope"]}, "default_runs"),
    ],
)
def test_bad_config_names_the_key_before_any_job(tmp_path, patch, key):
    config = tiny_config([0.1])

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k, {}), v) if isinstance(v, dict) else v
        return a

    wd = workdir(tmp_path, merge(config, patch))
    proc = snakemake(wd, check=False)
    assert proc.returncode != 0
    assert f"config key {key}" in proc.stderr
    assert not (wd / "results").exists()


@pytest.mark.slow
def test_a_diverging_training_job_fails_cleanly(tmp_path):
    """A non-finite loss: the rule log names T, seed and update; no scan-point file stays."""
    wd = workdir(tmp_path, tiny_config([0.1], learning_rate=1e30))  # Adam steps of 1e30
    proc = snakemake(wd, check=False)
    assert proc.returncode != 0
    assert "Error in rule train_point" in proc.stderr
    assert not list((wd / "results" / "tiny").glob("scan/*/*.nc"))
    log = (wd / "results" / "tiny" / "logs" / "train" / "T=0.1_seed=0.log").read_text()
    assert "training failed: non-finite" in log
    assert "T=0.1" in log and "seed=0" in log and "update" in log
