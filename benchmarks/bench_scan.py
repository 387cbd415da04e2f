"""A reduced paper-like scan, one scan point per job against several points per job.

Run: ``python benchmarks/bench_scan.py [--points 8] [--updates 20000] [--jobs 2]
[--rounds 2]``. Not a test.

The data: synthetic, of WorldClim's size (808,053 samples x 19 features, split
0.6/0.2/0.2, standardized float32, correlated with a decaying spectrum), written once as
the prepared dataset every job loads; its generation is not timed. The scan: ``--points``
temperatures log-spaced from 1e-4 to 0.3, seed 0, 32 latents, batch 256, ``--updates``
Adam updates each (patience longer than that: every point trains the same number of
updates), validation every 1,000, the default engine (numba on a CPU), measured on the
test split: the paper's protocol, shortened.

The two ways of running it, in the same process, on the same machine, taking turns for
``--rounds`` rounds (each reports its best round, so that a load spike on a shared machine
does not favour one of them):

``per_point``
    one job per scan point (``scan.points_per_job: 1``), ``--jobs`` at a time;
``chunked``
    the points dealt into ``--jobs`` jobs (``points_per_job = points / jobs``, as
    ``chunks.scan_chunks`` deals them), run at once.

Each job is the command Snakemake runs for it (``workflow/rules/scan.smk``, TRAIN_SHELL:
``collapse-spectroscopy train --data ... --point T SEED OUT ... --threads 1`` with the
BLAS pools pinned to one thread), started as a process of its own as Snakemake's local
executor starts it, at most ``--jobs`` at a time as ``--cores`` would allow. Snakemake's
own bookkeeping between jobs (a few tenths of a second per job locally, far more in a
cluster's queue) is left out: it would only add to the per-point side, so the ratio is a
lower bound of what the workflow gains. The last line is ``chunked_speedup=<ratio>``
(per-point wall time over chunked wall time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from collapse_spectroscopy.jobs.chunks import scan_chunks
from collapse_spectroscopy.store.prepared import PreparedDataset

N_SAMPLES, D = 808_053, 19  # WorldClim 2.1 at 10': land cells, bioclimatic variables
FRACTIONS = (0.6, 0.2, 0.2)


def prepared(path: Path, seed: int = 0) -> None:
    """The synthetic prepared dataset (correlated Gaussian features, decaying spectrum)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    x = (rng.standard_normal((N_SAMPLES, D)) * np.exp(-0.35 * np.arange(D))) @ q.T
    n_tr, n_va = int(FRACTIONS[0] * N_SAMPLES), int(FRACTIONS[1] * N_SAMPLES)
    mean, std = x[:n_tr].mean(0), x[:n_tr].std(0)
    x = ((x - mean) / std).astype(np.float32)
    PreparedDataset(
        x_train=x[:n_tr],
        x_val=x[n_tr : n_tr + n_va],
        x_test=x[n_tr + n_va :],
        mean=mean,
        std=std,
        feature_names=[f"bio{i + 1}" for i in range(D)],
        metadata={"source": "benchmarks/bench_scan.py"},
    ).save(path)


def job_command(data: Path, points, folder: Path, updates: int) -> list[str]:
    """The training command of one job (TRAIN_SHELL, its options given as a run
    configuration would give them)."""
    exe = shutil.which("collapse-spectroscopy") or sys.executable
    cmd = [exe] if exe != sys.executable else [exe, "-m", "collapse_spectroscopy.cli"]
    cmd += ["train", "--data", str(data)]
    cmd += ["--latents", "32", "--max-updates", str(updates), "--patience", str(10 * updates)]
    cmd += ["--eval-every", "1000", "--threads", "1", "--no-progress"]
    for t in points:
        cmd += ["--point", repr(t), "0", str(folder / f"T={t!r}" / "seed=0.nc")]
    return cmd


def run_jobs(commands: list[list[str]], parallel: int) -> float:
    """Run the jobs, at most ``parallel`` at a time; return the wall time (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["OPENBLAS_NUM_THREADS"] = "1"
    pending, running = list(commands), []
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < parallel:
            running.append(subprocess.Popen(pending.pop(0), env=env, stdout=subprocess.DEVNULL))
        for proc in list(running):
            if proc.poll() is not None:
                running.remove(proc)
                if proc.returncode:
                    raise SystemExit(f"a job failed (exit {proc.returncode}): {proc.args}")
        time.sleep(0.01)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=8, help="scan points (default: %(default)s)")
    ap.add_argument("--updates", type=int, default=20_000, help="updates per point")
    ap.add_argument("--jobs", type=int, default=2, help="jobs at once = chunks (cores)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each mode's best counts")
    args = ap.parse_args()
    temperatures = [float(t) for t in np.geomspace(1e-4, 0.3, args.points)]
    modes = {
        "per_point": scan_chunks(temperatures, 1),
        "chunked": scan_chunks(temperatures, -(-args.points // args.jobs)),
    }
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        data = Path(tmp) / "prepared.npz"
        t0 = time.perf_counter()
        prepared(data)
        print(f"data: {N_SAMPLES} x {D} synthetic, prepared in {time.perf_counter() - t0:.1f} s")
        # warm numba's cache (compiled once per machine, as after a first scan): not timed
        run_jobs([job_command(data, temperatures[:1], Path(tmp) / "warm", 1000)], 1)
        best = {}
        for r in range(args.rounds):
            for mode, jobs in modes.items():
                folder = Path(tmp) / f"{mode}-{r}"
                wall = run_jobs(
                    [job_command(data, c, folder, args.updates) for c in jobs], args.jobs
                )
                best[mode] = min(best.get(mode, np.inf), wall)
                print(
                    f"round {r + 1} {mode}: {len(jobs)} jobs of "
                    f"{'/'.join(str(len(c)) for c in jobs[:3])}{'/...' if len(jobs) > 3 else ''} "
                    f"points, {args.jobs} at a time: {wall:.1f} s"
                )
                shutil.rmtree(folder)
    n = args.points
    for mode, wall in best.items():
        print(f"{mode}: best {wall:.1f} s for {n} points x {args.updates} updates")
    # the core-seconds saved, per job that chunking avoided (points - chunks of them)
    saved = (best["per_point"] - best["chunked"]) * args.jobs / (n - len(modes["chunked"]))
    print(f"saved per avoided job: {saved:.2f} core-s (its start-up: imports, data, PCA)")
    print(f"chunked_speedup={best['per_point'] / best['chunked']:.2f}")


if __name__ == "__main__":
    main()
