"""What the workflow tests share: the repository's Snakefile, a tiny synthetic run, and a
working directory that holds its own config/config.yaml (so tests never write into the
repository)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# the first columns of spectra.csv, a contract with its readers (docs/science.md §4),
# written out here rather than read from the code that writes them
SPECTRA_CSV_HEAD = [
    "rank",
    "collapse_threshold",
    "fit_points",
    "free_exponent",
    "utility",
    "best_distortion",
    "pca_ratio",
    "pca_distortion",
]


def tiny_config(temperatures, max_updates=600, **training):
    """A one-seed synthetic run named ``tiny`` with 6 latents."""
    return {
        "default_runs": ["tiny"],
        "runs": {
            "tiny": {
                "dataset": {"source": "synthetic"},
                "model": {"latents": 6},
                "training": {
                    "max_updates": max_updates,
                    "eval_every": 100,
                    "patience": 0.5,
                    **training,
                },
                "scan": {"temperatures": temperatures, "seeds": [0]},
            }
        },
    }


def planned_jobs(wd) -> dict[str, int]:
    """The jobs a run of the repository's workflow in ``wd`` would execute now: {rule:
    count}, from a dry run's job stats."""
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2"]
    proc = subprocess.run([*cmd, "-n", "--quiet", "rules"], capture_output=True, text=True)
    assert proc.returncode == 0, f"snakemake -n:\n{proc.stderr[-4000:]}"
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:") :].splitlines()[3:]
    jobs = {}
    for line in table:
        if m := re.fullmatch(r"(\w+)\s+(\d+)", line.strip()):
            jobs[m[1]] = int(m[2])
        if line.startswith("total"):
            break
    return {rule: n for rule, n in jobs.items() if rule != "total"}


def workdir(path, config):
    """``path`` with ``config`` as its config/config.yaml."""
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def check_spectra_against_truth(table, truth, temperatures, n_train, n_test):
    """Assert a spectra table's thresholds and utilities are the declared spectrum's.

    ``table``: spectra.csv of a scan over ``temperatures`` on data with the declared
    normalized spectrum ``truth`` (``lambda_k / V``, descending); ``n_train``, ``n_test``:
    the effective split sizes, i.e. the sample counts divided by the design effect of the
    cells' spatial correlation (tests/spatial_sampling.py; 1 for i.i.d. samples). Returns
    the ranks checked (thresholds, utilities), 0-based.

    - Collapse thresholds, for the modes whose ``T_k`` lies inside the scanned range and
      that have a fit: ``T_k`` within ``3 sqrt(2/n_train) + 0.02`` (relative). The fit
      recovers the training split's spectrum, which differs from the declared one by
      sampling, ``sqrt(2/n)`` per eigenvalue of Gaussian data (1 sigma; 3 sigma allowed);
      0.02 is the residual non-equilibrium of the training budget (the caller argues it).
    - Utilities (best over the scan), for every mode active at the lowest temperature:
      the equilibrium utility there, ``u_k(T_min) = T_k - T_min^2 / T_k`` (the finite-T
      shortfall of docs/science.md §4.3; the lowest T gives the best level), within
      ``3 sqrt(2/n_test) + 0.02`` (relative): utilities are measured on the test split,
      whose variance along each mode differs from the declared one by its own sampling.
    """
    truth = np.asarray(truth, dtype=np.float64)
    t_min, t_max = min(temperatures), max(temperatures)
    ranks = np.arange(min(len(table), truth.size))
    tk = truth[ranks]
    fitted = table["collapse_threshold"].to_numpy()[ranks]
    inside = (t_min < tk) & (tk < t_max) & np.isfinite(fitted)
    tol_t = 3 * np.sqrt(2 / n_train) + 0.02
    np.testing.assert_allclose(fitted[inside], tk[inside], rtol=tol_t, err_msg="thresholds")
    active = tk > t_min
    u_eq = tk[active] - t_min**2 / tk[active]
    tol_u = 3 * np.sqrt(2 / n_test) + 0.02
    utility = table["utility"].to_numpy()[ranks][active]
    np.testing.assert_allclose(utility, u_eq, rtol=tol_u, err_msg="utilities")
    return ranks[inside], ranks[active]


def kill_when_paused(wd, res, pause_at: int, count: int) -> list[Path]:
    """Run the workflow in ``wd`` with the test-only pause (``checkpoint.PAUSE_ENV``) at
    update ``pause_at``; once ``count`` of its jobs wait there (their ``.ckpt.paused``
    markers under ``res/scan``), SIGKILL the whole workflow, jobs included, and return the
    markers. Nothing depends on timing: a paused job waits until it is killed."""
    from collapse_spectroscopy.training.checkpoint import PAUSE_ENV

    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, PAUSE_ENV: str(pause_at)},
    )
    try:
        deadline = time.time() + 300  # only a broken run gets here: the jobs cannot finish
        while len(paused := sorted(res.glob("scan/*/seed=0.ckpt.paused"))) < count:
            assert proc.poll() is None, f"the workflow ended before its jobs reached {pause_at}"
            assert time.time() < deadline, f"no {count} jobs waiting at {pause_at} in 5 minutes"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole workflow, jobs included
        proc.wait()
    return paused
