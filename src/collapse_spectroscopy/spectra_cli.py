"""CLI subcommands ``spectra`` (scan.nc -> spectra.csv + summary.json) and ``figures``."""

from __future__ import annotations

from pathlib import Path


def register_spectra(sub) -> None:
    p = sub.add_parser(
        "spectra",
        help="collapse, utility and PCA spectra of a gathered scan",
        description="From scan.nc: fit the collapse threshold T_k of each ranked mode "
        "(rho = 1 - T/T_k on the points with rho > rho_min; closed form, seeds pooled) and "
        "the free-exponent diagnostic; the best truncated distortions Dn*_k over the scan and "
        "the utilities u_k = Dn*_{k-1} - Dn*_k; and the training PCA spectrum lambda_k/V "
        "(SPEC §4). Writes the table (one row per ranked mode: rank, collapse_threshold, "
        "fit_points, free_exponent, utility, best_distortion, pca_ratio, pca_distortion, "
        "...) and a JSON summary.",
    )
    p.add_argument("scan", type=Path, help="gathered scan file (scan.nc)")
    p.add_argument("--out", required=True, type=Path, help="spectra table to write (.csv)")
    p.add_argument("--summary", type=Path, help="JSON summary to write")
    p.add_argument(
        "--rho-min",
        type=float,
        default=0.05,
        help="fit only points with rho above this (default 0.05)",
    )
    p.set_defaults(func=run_spectra)


def run_spectra(args) -> int:
    from . import scanfile
    from .io import atomic_path, write_json
    from .spectra import summarize

    scan = scanfile.read(args.scan)
    table, summary = summarize(scan, rho_min=args.rho_min)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
    if args.summary:
        write_json(args.summary, summary)
    print(
        table[["rank", "collapse_threshold", "fit_points", "utility", "pca_ratio"]]
        .head(int(scan.sizes["mode"]) + 1)
        .to_string(index=False)
    )
    return 0


def register_figures(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="draw the paper's Figs 1-4 from scan.nc and spectra.csv",
        description="Fig 1 collapse scan (m, rho with fits, l against T); Fig 2 truncated "
        "distortion (Dn_k(T) and Dn*_k against rank with PCA); Fig 3 utility-threshold "
        "duality (u_k against T_k); Fig 4 latent-scale diagnostics (q and the Jensen gap). "
        "Each as PNG and PDF in OUT_DIR, with the analytic equilibrium of the training PCA "
        "spectrum as thin dashed lines (SPEC §6).",
    )
    p.add_argument("scan", type=Path, help="gathered scan file (scan.nc)")
    p.add_argument("spectra", type=Path, help="spectra table (spectra.csv)")
    p.add_argument("--out-dir", required=True, type=Path)
    p.set_defaults(func=run_figures)


def run_figures(args) -> int:
    import pandas as pd

    from . import scanfile
    from .errors import InputError
    from .figures import make_figures

    scan = scanfile.read(args.scan)
    if not args.spectra.is_file():
        raise InputError(f"spectra table {str(args.spectra)!r} does not exist")
    table = pd.read_csv(args.spectra)
    for path in make_figures(scan, table, args.out_dir):
        print(path)
    return 0
