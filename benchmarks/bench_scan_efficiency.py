"""How busy the paper scan keeps its cores: ``snakemake paper_figures --cores N``.

Run: ``python benchmarks/bench_scan_efficiency.py --worldclim DIR [--cores 2]
[--points-per-job auto] [--keep WORKDIR]``. Not a test; 4-8 minutes on 2 quiet cores.

In a fresh working folder, with config/config.yaml and the ``worldclim`` run pointed at
``DIR`` (the 19 WorldClim 2.1 10' GeoTIFFs, or their zip), first the prepared dataset is
built (not timed: it is the same for every way of running the scan), then ``snakemake
paper_figures --cores N`` is timed: every scan point's training, the gathering, spectra,
figures and maps. Printed:

``scan_training_s=``
    the sum over the 37 scan points of their training time (``elapsed_s`` of each point:
    the protocol's own clock, from the first update to the last validation pass);
``wall_s=``
    the wall time of the timed command;
``scan_efficiency=``
    ``scan_training_s / (N * wall_s)``: the share of the cores' time spent training;
    what is left went to job start-ups (imports, loading the data, the PCA references),
    measuring and writing each point, the gathering, spectra, figures and maps, and cores
    left idle while the last points finish.

``--points-per-job`` sets the run's ``scan.points_per_job`` (the default: the schema's).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(wd: Path, cores: int, *targets: str) -> float:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd)]
    # the targets before --configfile, which takes every word after it
    cmd += ["--cores", str(cores), *targets, "--configfile", "config/config.yaml", "local.yaml"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=wd)
    if proc.returncode:
        sys.exit(f"snakemake {' '.join(targets)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worldclim", required=True, type=Path, help="folder of the 19 layers")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--points-per-job", help="scan.points_per_job of the worldclim run")
    ap.add_argument("--keep", type=Path, help="work in this folder (kept)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wd = args.keep or Path(tmp)
        (wd / "config").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "config" / "config.yaml", wd / "config" / "config.yaml")
        run = {"dataset": {"source": "worldclim", "path": str(args.worldclim.resolve())}}
        if args.points_per_job:
            ppj = args.points_per_job
            run["scan"] = {"points_per_job": int(ppj) if ppj.isdigit() else ppj}
        (wd / "local.yaml").write_text(yaml.safe_dump({"runs": {"worldclim": run}}))
        snakemake(wd, args.cores, "results/worldclim/data/prepared.npz")
        wall = snakemake(wd, args.cores, "paper_figures")
        with xr.open_dataset(wd / "results" / "worldclim" / "scan.nc") as scan:
            training = float(np.nansum(scan["elapsed_s"].values))
    print(f"scan_training_s={training:.1f}")
    print(f"wall_s={wall:.1f}")
    print(f"scan_efficiency={training / (args.cores * wall):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
