"""Print a nonlinear run's utility concentration under every pruning rule and selection
split, beside its autoencoder baseline, its null run and its rate-distortion points
(docs/science.md §9, §9.1).

    python scripts/selection_grid.py results/worldclim_mlp --null results/worldclim

For each ``spectra.pruning`` (zero, prior) and ``spectra.select_on`` (test, val) it runs
``collapse-spectroscopy spectra`` on the run's ``scan.nc`` with the run's own spectra
configuration (``config/spectra.json``) into a temporary folder, so every number is the
one the workflow would write under that choice, and prints per choice: ``n(eps)`` at the
run's tolerances (pooled seeds, and the range over seeds as ``lo-hi``), the participation
ratio of the positive utilities, ``Dn*_k`` for the first ranks, and the pairs of ranks whose
utilities run against the rho order. Then the autoencoder baseline's ``D_AE(k)`` and its
``n(eps)`` (``baselines/autoencoder.csv``), the null run's ``n(eps)`` and PCA's, and the
rate-distortion block of the run's ``summary.json`` (points below the Gaussian bound).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from collapse_spectroscopy.analysis.concentration import variables_needed

RULES = [(p, s) for p in ("zero", "prior") for s in ("test", "val")]
SHOW_RANKS = 8


def spectra_under(run: Path, pruning: str, select_on: str, out: Path) -> dict:
    """The spectra summary of ``run`` under one pruning rule and selection split."""
    csv, summary = out / f"{pruning}_{select_on}.csv", out / f"{pruning}_{select_on}.json"
    cmd = ["collapse-spectroscopy", "spectra", str(run / "scan.nc"), "--out", str(csv)]
    cmd += ["--summary", str(summary), "--pruning", pruning, "--select-on", select_on]
    if (run / "config" / "spectra.json").is_file():
        cmd += ["--run-config", str(run / "config" / "spectra.json")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"selection_grid: {' '.join(cmd)} failed: {done.stderr.strip()}")
    block = json.loads(summary.read_text())
    block["table"] = pd.read_csv(csv)
    return block


def n_cell(pooled, seed_range) -> str:
    n = "-" if pooled is None else str(pooled)
    if seed_range is None:
        return n
    return f"{n} ({seed_range[0]}-{seed_range[1]})"


def grid_rows(run: Path, tmp: Path) -> list[dict]:
    rows = []
    for pruning, select_on in RULES:
        s = spectra_under(run, pruning, select_on, tmp)
        conc = s["utility_concentration"]
        ranges = conc.get("n_vae_seed_range") or [None] * len(conc["eps"])
        row = {"pruning": pruning, "select_on": select_on}
        for eps, n, r in zip(conc["eps"], conc["n_vae"], ranges, strict=True):
            row[f"n({eps:g})"] = n_cell(n, r)
        row["PR"] = f"{conc['participation_ratio_vae']:.2f}"
        best = s["table"]["best_distortion"].to_numpy()[:SHOW_RANKS]
        row.update({f"Dn*_{k + 1}": f"{v:.3g}" for k, v in enumerate(best)})
        row["inversions"] = str(s.get("rank_order", {}).get("inversions", []))
        rows.append(row)
    return rows


def reference_rows(run: Path, null: Path | None) -> list[dict]:
    summary = json.loads((run / "summary.json").read_text())
    conc = summary["utility_concentration"]
    rows = [
        {"curve": "PCA (training split)", **_n_row(conc["eps"], conc["n_pca"])},
    ]
    if "n_pca_eval" in conc:
        rows.append({"curve": "PCA (evaluation split)", **_n_row(conc["eps"], conc["n_pca_eval"])})
    if null is not None:
        nconc = json.loads((null / "summary.json").read_text())["utility_concentration"]
        ranges = nconc.get("n_vae_seed_range") or [None] * len(nconc["eps"])
        cells = [n_cell(n, r) for n, r in zip(nconc["n_vae"], ranges, strict=True)]
        rows.append({"curve": f"null run {null.name}", **_n_row(nconc["eps"], cells)})
    ae = run / "baselines" / "autoencoder.csv"
    if ae.is_file():
        table = pd.read_csv(ae).sort_values("k")
        levels = [1.0] + table["distortion"].tolist()
        n = [variables_needed(levels, e) for e in conc["eps"]]
        rows.append({"curve": "autoencoder baseline", **_n_row(conc["eps"], n)})
        print("autoencoder baseline D_AE(k):")
        for _, r in table.iterrows():
            flag = " (under-equilibrated)" if r.get("under_equilibrated", False) else ""
            print(f"  k={int(r['k'])}: {r['distortion']:.4g}{flag}")
    return rows


def _n_row(eps, values) -> dict:
    return {f"n({e:g})": "-" if v is None else str(v) for e, v in zip(eps, values, strict=True)}


def rate_distortion_lines(run: Path) -> list[str]:
    block = json.loads((run / "summary.json").read_text()).get("rate_distortion")
    if not block:
        return ["no rate_distortion block (the summary was written without --prepared)"]
    pts = pd.DataFrame(block["points"])
    below = pts[pts["excess_rate"] < 0]
    lines = [f"rate-distortion: {len(below)} of {len(pts)} points below the Gaussian bound"]
    if len(below):
        gap = -below["excess_rate"]
        lines.append(f"  below by {gap.min():.3g} to {gap.max():.3g} nats")
    above = pts[pts["excess_rate"] >= 0]
    if len(above):
        lines.append(
            f"  above by {above['excess_rate'].min():.3g} to {above['excess_rate'].max():.3g} "
            f"nats (T {above['T'].min():.4g} to {above['T'].max():.4g})"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run's results folder (scan.nc, summary.json)")
    parser.add_argument("--null", type=Path, help="the null run's results folder")
    args = parser.parse_args(argv)
    for path in [args.run / "scan.nc", args.run / "summary.json"] + (
        [args.null / "summary.json"] if args.null else []
    ):
        if not path.is_file():
            print(f"selection_grid: {path} does not exist", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        grid = pd.DataFrame(grid_rows(args.run, Path(tmp)))
    print(grid.to_markdown(index=False))
    print()
    print(pd.DataFrame(reference_rows(args.run, args.null)).to_markdown(index=False))
    print()
    print("\n".join(rate_distortion_lines(args.run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
