"""``figures``: the paper's Figs 1-4 from scan.nc and spectra.csv (docs/science.md §6)."""

from __future__ import annotations

from pathlib import Path

from .runconfig import add_run_config_argument, config_option
from .spectra import RHO_MIN_KEY, add_tolerances_option, check_rho_min


def register_figures(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="draw the paper's Figs 1-4 from scan.nc and spectra.csv",
        description="Fig 1 collapse scan (m, rho with fits, l against T); Fig 2 truncated "
        "distortion (Dn_k(T) and Dn*_k against rank with PCA); Fig 3 utility-threshold "
        "duality (u_k against T_k); Fig 4 latent-scale diagnostics (q and the Jensen gap). "
        "Each as PNG and PDF in OUT_DIR, with the analytic equilibrium of the training PCA "
        "spectrum as thin dashed lines (docs/science.md §6). Under-equilibrated scan points "
        "(stopped at max_updates before the early-stopping test passed) are drawn hollow.",
    )
    p.add_argument("scan", type=Path, help="gathered scan file (scan.nc)")
    p.add_argument("spectra", type=Path, help="spectra table (spectra.csv)")
    p.add_argument("--out-dir", required=True, type=Path)
    add_run_config_argument(p)
    config_option(
        p,
        RHO_MIN_KEY,
        "--rho-min",
        type=float,
        help="the rho_min the spectra were fitted with: ranks whose rho exceeds it somewhere "
        "are coloured, and Fig 1b marks it",
    )
    # figures reads the whole spectra section (settings.STAGES); the tolerances are for the
    # utility-concentration figure (Fig 5, docs/science.md §9), not drawn yet
    add_tolerances_option(p, "the distortion tolerances eps of n(eps) (for Fig 5, not yet drawn)")
    p.set_defaults(func=run_figures)


def run_figures(args) -> int:
    import pandas as pd

    from .. import scanfile
    from ..errors import InputError
    from ..figures import make_figures

    scan = scanfile.read(args.scan)
    if not args.spectra.is_file():
        raise InputError(f"spectra table {str(args.spectra)!r} does not exist")
    table = pd.read_csv(args.spectra)
    check_rho_min(args.rho_min)
    for path in make_figures(scan, table, args.out_dir, rho_min=args.rho_min):
        print(path)
    return 0
