"""``figures``: the paper's Figs 1-4 and the utility concentration (Fig 5) from scan.nc and
spectra.csv (docs/science.md §6, §9), with a linear null run's spectra.csv beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from collapse_spectroscopy import figures
from collapse_spectroscopy.analysis.hysteresis import COLUMNS as HYSTERESIS_COLUMNS
from collapse_spectroscopy.analysis.selection import resolve
from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.cli.spectra import (
    RHO_MIN_KEY,
    add_refined_argument,
    add_selection_options,
    add_tolerances_option,
    add_unused_spectra_options,
    check_rho_min,
    check_tolerances,
    read_refined,
)
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store import scanfile


def register_figures(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="draw the paper's Figs 1-5 from scan.nc and spectra.csv",
        description="Fig 1 collapse scan (m, rho with fits, l against T); Fig 2 truncated "
        "distortion (Dn_k(T) and Dn*_k against rank with PCA); Fig 3 utility-threshold "
        "duality (u_k against T_k); Fig 4 latent-scale diagnostics (q and the Jensen gap); Fig 5 "
        "utility concentration (Dn*_k against k beside the PCA truncation curve, the linear "
        "null model, and n(eps) against eps; with --null-spectra, a linear run's Dn*_k too, "
        "and with --autoencoder the run's autoencoder baseline). "
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
        suffix="; give the one the spectra were fitted with: a rank whose rho exceeds it "
        "somewhere is coloured, and Fig 1b marks it",
    )
    # figures reads the whole spectra section (settings.STAGES); the tolerances are Fig 5's
    add_tolerances_option(p, "Fig 5 draws n(eps)")
    # the figures read Dn*_k from the spectra table, which holds the selection's values
    add_selection_options(p, "the spectra table drawn holds its values")
    config_option(p, "figures.fig1_view", "--fig1-view")
    # The null run is a relation between two runs, not a setting of this one's stage: the
    # workflow passes it from the run's null_run (its spectra.csv an input of the job)
    p.add_argument(
        "--null-spectra",
        type=Path,
        metavar="CSV",
        help="spectra.csv of a linear run on the same dataset (the run's null_run), drawn in "
        "Fig 5 as the measured linear null model",
    )
    p.add_argument(
        "--null-name",
        metavar="RUN",
        help="the null run's name for the legend (default: the folder holding --null-spectra)",
    )
    # like the null run, a table of another job (rule autoencoder_baseline), not a setting
    p.add_argument(
        "--autoencoder",
        type=Path,
        metavar="CSV",
        help="the run's autoencoder baseline (baselines/autoencoder.csv from "
        "`collapse-spectroscopy autoencoder`), drawn in Fig 5 beside the VAE (default: none)",
    )
    add_refined_argument(p, "Fig 1 draws a row of ticks per round at the temperatures it added")
    p.set_defaults(func=run_figures)


def run_figures(args) -> int:

    scan = scanfile.read(args.scan)
    table = read_spectra_table(args.spectra)
    check_rho_min(args.rho_min)
    tolerances = check_tolerances(args.tolerances)
    null_run = read_null_run(args.null_spectra, args.null_name)
    autoencoder = read_autoencoder(args.autoencoder)
    refined = [[a["T"] for a in record["added"]] for record in read_refined(args.refined)]
    ran = np.all(np.isfinite(scan["signal_fraction"].transpose("T", "seed", "latent").values), -1)
    # the spectra's choice of each Dn*_k's point, as spectra resolved it (auto included)
    selection = resolve(scan, args.pruning, args.select_on, ran.ravel(), repr(str(args.scan)))
    paths = figures.make_figures(
        scan,
        table,
        args.out_dir,
        rho_min=args.rho_min,
        tolerances=tolerances,
        null_run=null_run,
        fig1_view=args.fig1_view,
        autoencoder=autoencoder,
        refined=refined or None,
        selection=selection,
    )
    for path in paths:
        print(path)
    return 0


def read_spectra_table(path: Path):
    """The spectra table at ``path``; InputError naming it when it does not exist."""
    import pandas as pd

    if not path.is_file():
        raise InputError(f"spectra table {str(path)!r} does not exist")
    return pd.read_csv(path)


def read_null_run(path: Path | None, name: str | None):
    """The :class:`.figures.common.NullRun` of ``--null-spectra`` (None without it)."""
    import pandas as pd

    from collapse_spectroscopy.figures.common import NullRun  # lazy: matplotlib

    if path is None:
        if name is not None:
            raise InputError("--null-name given without --null-spectra: expected both or neither")
        return None
    if not path.is_file():
        raise InputError(f"--null-spectra {str(path)!r} does not exist: expected a spectra.csv")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"--null-spectra {str(path)!r} cannot be read as CSV: {exc}") from None
    missing = [c for c in ("rank", "best_distortion", "utility") if c not in table]
    if missing:
        raise InputError(
            f"--null-spectra {str(path)!r} lacks column(s) {', '.join(missing)}: expected a "
            "spectra table written by `collapse-spectroscopy spectra`"
        )
    return NullRun(name or path.resolve().parent.name, table)


AUTOENCODER_COLUMNS = ("k", "distortion", "under_equilibrated")


def read_autoencoder(path: Path | None):
    """The table of ``--autoencoder`` (None without it): one row per ``k = 1, 2, ...``."""
    import pandas as pd

    if path is None:
        return None
    flag = f"--autoencoder {str(path)!r}"
    if not path.is_file():
        raise InputError(f"{flag} does not exist: expected a baselines/autoencoder.csv")
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"{flag} cannot be read as CSV: {exc}") from None
    missing = [c for c in AUTOENCODER_COLUMNS if c not in table]
    if missing:
        raise InputError(
            f"{flag} lacks column(s) {', '.join(missing)}: expected the table of "
            "`collapse-spectroscopy autoencoder`"
        )
    if sorted(table["k"].tolist()) != list(range(1, len(table) + 1)):
        raise InputError(f"{flag}: expected one row per k = 1 .. {len(table)}")
    return table


def register_hysteresis(sub) -> None:
    p = sub.add_parser(
        "hysteresis",
        help="draw a sweep's hysteresis figure from its two scans and spectra.csv",
        description="For a run with scan.start sweep (docs/science.md §5.9): each ranked "
        "latent's seed-mean rho against T while warming (scan.nc) and while cooling "
        "(scan_cooling.nc), the crossing thresholds of both directions and their ratio "
        "(the spectra table's hysteresis columns, from `spectra --cooling-scan`). Writes "
        "hysteresis.png and hysteresis.pdf into OUT_DIR.",
    )
    p.add_argument("scan", type=Path, help="the warming chains' gathered scan (scan.nc)")
    p.add_argument("cooling_scan", type=Path, help="the cooling chains' (scan_cooling.nc)")
    p.add_argument("spectra", type=Path, help="spectra table with the hysteresis columns")
    p.add_argument("--out-dir", required=True, type=Path)
    add_run_config_argument(p)
    config_option(p, RHO_MIN_KEY, "--rho-min", suffix="; the one the spectra were fitted with")
    # reads the whole spectra section (settings.STAGES), as maps does
    add_unused_spectra_options(p, "the hysteresis figure")
    p.set_defaults(func=run_hysteresis)


def run_hysteresis(args) -> int:

    from collapse_spectroscopy.figures import hysteresis  # lazy: matplotlib

    check_rho_min(args.rho_min)
    warming, cooling = scanfile.read(args.scan), scanfile.read(args.cooling_scan)
    table = read_spectra_table(args.spectra)
    missing = [c for c in HYSTERESIS_COLUMNS if c not in table]
    if missing:
        raise InputError(
            f"spectra table {str(args.spectra)!r} lacks {', '.join(missing)}: expected the "
            "table of a sweep (collapse-spectroscopy spectra --cooling-scan)"
        )
    fig = hysteresis.draw(warming, cooling, table, args.rho_min)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in figures.save_figure(fig, args.out_dir, "hysteresis"):
        print(path)
    return 0


def register_rate_distortion(sub) -> None:
    p = sub.add_parser(
        "rate-distortion",
        help="draw a run's rate-distortion plane from its summary.json",
        description="Every scan point's total KL rate against its sampled distortion, beside "
        "the Gaussian rate-distortion bound of the evaluation split's covariance, from the "
        "rate_distortion block of the summary (`spectra --prepared`; docs/science.md §9.1). "
        "Writes rate_distortion.png and rate_distortion.pdf into OUT_DIR.",
    )
    p.add_argument("summary", type=Path, help="the run's summary.json")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--null-summary", type=Path, help="the null run's summary.json")
    p.add_argument("--null-name", help="the null run's name, for the legend")
    p.set_defaults(func=run_rate_distortion)


def read_rate_distortion(path: Path, flag: str) -> dict:
    """The ``rate_distortion`` block of a summary, or one line saying what is wrong."""
    try:
        block = json.loads(path.read_text()).get("rate_distortion")
    except FileNotFoundError:
        raise InputError(f"{flag} {str(path)!r} does not exist: expected a summary.json") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{flag} {str(path)!r} cannot be read as a JSON summary: {exc}") from None
    if not isinstance(block, dict) or not {"points", "bound"} <= block.keys():
        raise InputError(
            f"{flag} {str(path)!r} has no rate_distortion block: expected the summary of "
            "`collapse-spectroscopy spectra --prepared`"
        )
    return block


def run_rate_distortion(args) -> int:

    from collapse_spectroscopy.figures import rate_distortion  # lazy: matplotlib

    block = read_rate_distortion(args.summary, "summary")
    null = read_rate_distortion(args.null_summary, "--null-summary") if args.null_summary else None
    fig = rate_distortion.draw(block, null, args.null_name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in figures.save_figure(fig, args.out_dir, "rate_distortion"):
        print(path)
    return 0
