"""``refine``: the temperatures one refinement round adds to a scan (docs/science.md §4.9)."""

from __future__ import annotations

import json
from pathlib import Path

from collapse_spectroscopy.analysis.refine import refine_round
from collapse_spectroscopy.analysis.spectra import scan_arrays
from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.cli.spectra import (
    RHO_MIN_KEY,
    add_unused_spectra_options,
    check_rho_min,
)
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.atomic import write_json

POINTS_PER_MODE_KEY = "scan.refine.points_per_mode"


def register_refine(sub) -> None:
    p = sub.add_parser(
        "refine",
        help="the temperatures a refinement round adds to a scan",
        description="From every scan point trained so far (all seeds): for each ranked mode "
        "whose crossing threshold (where the seed-mean rho falls through rho_min, linear in "
        "log T) lies inside the scan, the two scan temperatures around it (its bracket) and "
        "POINTS_PER_MODE temperatures splitting the bracket into equal steps in log T; "
        "temperatures already in the scan (within 0.1 %) are left out, and ranks that share "
        "a bracket share its points. Writes OUT (JSON): the round, the added temperatures "
        "with the ranks that asked for each, and every rank's bracket (docs/science.md §4.9).",
    )
    p.add_argument("points", nargs="+", type=Path, help="scan-point .nc files (all seeds)")
    p.add_argument("--out", required=True, type=Path, help="the round's record (.json)")
    p.add_argument(
        "--round", type=int, default=1, help="the round's number, for the record (default: 1)"
    )
    add_run_config_argument(p)
    config_option(p, RHO_MIN_KEY, "--rho-min", suffix="; the crossings are of this level")
    config_option(p, POINTS_PER_MODE_KEY, "--points-per-mode", metavar="M")
    # refine reads the whole spectra section (settings.STAGES); only rho_min is used
    add_unused_spectra_options(p, "refine")
    p.set_defaults(func=run_refine)


def run_refine(args) -> int:

    check_rho_min(args.rho_min)
    if args.round < 1:
        raise InputError(f"--round {args.round}: expected a round number >= 1")
    scan = scanfile.gather(args.points)
    t, rho, _ = scan_arrays(scan)
    record = refine_round(t, rho, args.rho_min, args.points_per_mode)
    record = {
        "round": args.round,
        "rho_min": args.rho_min,
        "points_per_mode": args.points_per_mode,
        "scan_temperatures": sorted({float(x) for x in t}),
        **record,
    }
    write_json(args.out, record)
    ranks = sorted({r for a in record["added"] for r in a["ranks"]})
    print(
        f"refinement round {args.round}: {len(record['added'])} temperature(s) added "
        f"for rank(s) {', '.join(map(str, ranks)) or 'none'}: "
        f"{json.dumps([a['T'] for a in record['added']])}"
    )
    return 0
