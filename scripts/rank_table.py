"""Print a run's rank-by-rank table: thresholds and utilities against the training PCA
ratios and the split-aware references, per ranked latent and per mode (issue 12;
docs/science.md §4.7, §10.1).

    python scripts/rank_table.py results/worldclim            # ranks with lambda_k/V > 1e-12
    python scripts/rank_table.py results/worldclim --markdown # the same as a Markdown table

Reads ``spectra.csv`` of the run (and ``scan.nc`` for the evaluation split's variance along
each training PC, ``S_k = pca_eval_ratio``). Columns: ``lam`` = lambda_k/V; ``S`` = S_k;
``T_k`` the per-rank fitted threshold and its ratio to lambda_k/V (``/lam``) and to the
split-aware reference (``/split``); ``gam`` its free exponent; ``Tmode`` the threshold
fitted on mode k's totals, ``/split`` its ratio to the reference, ``gam_m`` its free
exponent, ``nlat`` the most latents the mode spans at a fit point; ``u_k`` the utility and
its ratio to the split-matched PCA utility (``/pcae``) and to the split-aware expected
utility (``/usplit``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PCA_FLOOR = 1e-12  # as spectra.PCA_FLOOR: below it, rounding of a dependent feature


def rank_table(run: Path) -> pd.DataFrame:
    spectra = pd.read_csv(run / "spectra.csv")
    rows = spectra[spectra["pca_ratio"] > PCA_FLOOR]
    out = pd.DataFrame({"rank": rows["rank"], "lam": rows["pca_ratio"]})
    scan = run / "scan.nc"
    if scan.is_file():
        import xarray as xr

        with xr.open_dataset(scan) as ds:
            if "pca_eval_ratio" in ds:
                out["S"] = ds["pca_eval_ratio"].values[: len(out)]

    def col(name):
        return rows[name] if name in rows else pd.Series(np.nan, index=rows.index)

    split = col("split_threshold_reference")
    out["T_k"] = rows["collapse_threshold"]
    out["T_k/lam"] = rows["collapse_threshold"] / rows["pca_ratio"]
    out["T_k/split"] = rows["collapse_threshold"] / split
    out["gam"] = rows["free_exponent"]
    out["split_T"] = split
    out["Tmode"] = col("mode_collapse_threshold")
    out["Tmode/split"] = col("mode_collapse_threshold") / split
    out["gam_m"] = col("mode_free_exponent")
    out["nlat"] = col("mode_latents")
    out["u_k"] = rows["utility"]
    out["u/pcae"] = rows["utility"] / col("pca_eval_utility")
    out["u/usplit"] = rows["utility"] / col("split_utility_reference")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run's results folder (with spectra.csv)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if not (args.run / "spectra.csv").is_file():
        print(f"rank_table: {args.run / 'spectra.csv'} does not exist", file=sys.stderr)
        return 2
    table = rank_table(args.run)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        if args.markdown:
            print(table.to_markdown(index=False, floatfmt=".3g"))
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
