"""Continuation starts against independent starts, at ``demo_nonlinear``'s scale.

Run: ``python benchmarks/bench_continuation.py [--seeds 0 1 2] [--cores 2] [--linear]``.
Not a test; about 5-8 minutes on 2 quiet cores.

Two runs of the real workflow (Snakemake, one after the other, the spectra only), equal
but for ``scan.start``: the ``demo_nonlinear`` run of config/config.yaml (the synthetic
manifold source, an MLP VAE 64-64 GELU with 6 latents, 40k-update budget, patience 0.1,
7 temperatures from 0.003 to 0.5) with ``--seeds`` seeds (3 by default, for the seed
intervals), once ``independent`` (the paper's protocol: every point from its seed's
random initialization) and once ``continuation`` (each seed's chain cold to warm, one job
per chain). ``--linear`` runs the linear ``demo`` run instead (12 latents, 14
temperatures, 500k budget).

Printed, per run: the wall time, the Adam updates of all points (``updates_run`` of every
scan point), and per rank the collapse threshold and utility with their 95 % seed
intervals. Then:

``continuation_update_ratio=``
    updates with continuation / updates with independent starts (the issue's goal: at
    most 0.4);
``continuation_max_shift_in_ci=``
    true when, for every rank where the independent run (the paper's protocol, the
    reference) has a seed interval, the continuation run's threshold and utility lie
    inside it: the start moved nothing by more than the training noise the seeds measure.
    ``continuation_mutual_in_ci=`` also asks the converse (the independent value inside
    the continuation run's interval, where it has one).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from collapse_spectroscopy.analysis.seed_intervals import INTERVAL_COLUMNS, NON_NEGATIVE

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("collapse_threshold", "utility")


def run_config(name: str, start: str, seeds: list[int]) -> dict:
    """The run ``name`` of config/config.yaml with ``scan.start`` and ``seeds``; a chain
    is one job (the whole chain in one process: one start-up per seed)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    run = copy.deepcopy(config["runs"][name])
    run.pop("null_run", None)
    run["scan"].update(seeds=seeds, start=start)
    if start != "independent":
        run["scan"]["points_per_job"] = 1000
    return run


def snakemake(wd: Path, target: str, cores: int) -> float:
    """Wall seconds of ``snakemake target`` in ``wd``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd)]
    cmd += ["--cores", str(cores), target]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"snakemake {target} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def updates(wd: Path, run: str) -> int:
    with xr.open_dataset(wd / "results" / run / "scan.nc") as scan:
        return int(np.nansum(scan["updates_run"].values))


def inside(value, lo, hi, scale: str) -> bool:
    """``value`` in ``[lo, hi]``; on the non-negative scale a value below 0 (a utility of
    an unresolved mode, -1e-8 say) counts as 0, where the interval's cut lower bound is."""
    if scale == NON_NEGATIVE:
        value = max(value, 0.0)
    return bool(lo <= value <= hi)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[bool, bool, list[str]]:
    """Whether every value of ``b`` lies in ``a``'s interval (rank by rank where the
    interval exists), whether also the other way round, and one line per rank."""
    ok, mutual, lines = True, True, []
    for k in range(min(len(a), len(b))):
        cells = []
        for col in COLUMNS:
            va, vb = a[col].iloc[k], b[col].iloc[k]
            for v, ref in ((vb, a), (va, b)):
                lo, hi = ref[f"{col}_lo"].iloc[k], ref[f"{col}_hi"].iloc[k]
                if np.isfinite(lo) and np.isfinite(hi) and np.isfinite(v):
                    hit = inside(v, lo, hi, INTERVAL_COLUMNS[col])
                    ok &= hit or ref is b
                    mutual &= hit
            cells.append(
                f"{col} {va:.4g} [{a[f'{col}_lo'].iloc[k]:.3g}, {a[f'{col}_hi'].iloc[k]:.3g}]"
                f" -> {vb:.4g} [{b[f'{col}_lo'].iloc[k]:.3g}, {b[f'{col}_hi'].iloc[k]:.3g}]"
            )
        lines.append(f"  rank {k + 1}: " + "; ".join(cells))
    return ok, mutual, lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--linear", action="store_true", help="the linear demo run instead")
    ap.add_argument("--num", type=int, help="temperatures (default: the run's own grid)")
    ap.add_argument(
        "--keep", type=Path, help="work in this folder (kept) instead of a temporary one"
    )
    args = ap.parse_args(argv)
    name = "demo" if args.linear else "demo_nonlinear"
    runs = {s: run_config(name, s, args.seeds) for s in ("independent", "continuation")}
    for run in runs.values():
        if args.num:  # the same range, denser or coarser
            run["scan"]["temperatures"]["num"] = args.num
    with tempfile.TemporaryDirectory() as tmp:
        wd = args.keep or Path(tmp)
        (wd / "config").mkdir(parents=True, exist_ok=True)
        config = {"default_runs": list(runs), "runs": runs}
        (wd / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        measured = {}
        for start in runs:
            wall = snakemake(wd, f"results/{start}/spectra.csv", args.cores)
            table = pd.read_csv(wd / "results" / start / "spectra.csv")
            measured[start] = (wall, updates(wd, start), table)
            print(f"{name}, scan.start {start}: {wall:.0f} s wall, {measured[start][1]:,} updates")
    (_, u_ind, t_ind), (_, u_con, t_con) = measured["independent"], measured["continuation"]
    ok, mutual, lines = compare(t_ind, t_con)
    print("per rank, independent [95 % seed interval] -> continuation [interval]:")
    print("\n".join(lines))
    print(f"continuation_update_ratio={u_con / u_ind:.3f}")
    print(f"continuation_max_shift_in_ci={str(ok).lower()}")
    print(f"continuation_mutual_in_ci={str(mutual).lower()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
