"""``spectra``: scan.nc -> spectra.csv + summary.json (docs/science.md §4)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from collapse_spectroscopy.analysis.hysteresis import (
    hysteresis_summary,
    scan_both_branches,
    scan_hysteresis,
)
from collapse_spectroscopy.analysis.rate_distortion import split_reference
from collapse_spectroscopy.analysis.refine import refinement_summary
from collapse_spectroscopy.analysis.selection import resolve
from collapse_spectroscopy.analysis.spectra import scan_arrays, summarize
from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.atomic import all_or_none, atomic_path, write_json
from collapse_spectroscopy.store.prepared import load_prepared

RHO_MIN_KEY = "spectra.rho_min"
TOLERANCES_KEY = "spectra.tolerances"


def check_rho_min(rho_min: float) -> None:

    if not 0 <= rho_min < 1:
        raise InputError(f"--rho-min {rho_min!r}: expected a number in [0, 1)")


def check_tolerances(tolerances) -> list[float]:
    """The tolerances as floats: arguments, each one number or several joined by commas."""

    values = []
    for text in (t for arg in tolerances for t in str(arg).split(",")):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not (math.isfinite(value) and value > 0):
            raise InputError(f"--tolerances {text!r}: expected finite numbers above 0")
        values.append(value)
    return values


def joined_argv(flag: str, values) -> list[str]:
    # One token, "--tolerances=0.1,0.01": a run configuration's options go before the
    # positional scan file, which a space-separated list would swallow.
    return [f"{flag}={','.join(map(str, values))}"]


def add_tolerances_option(parser, use: str) -> None:
    """``--tolerances``, set by ``spectra.tolerances`` (spectra and figures read it);
    ``use`` says what this command does with them."""
    config_option(
        parser,
        TOLERANCES_KEY,
        "--tolerances",
        metavar="EPS",
        to_argv=joined_argv,
        suffix=f"; {use}; separated by spaces or commas",
    )


def add_selection_options(parser, use: str) -> None:
    """``--pruning`` and ``--select-on``, set by ``spectra.pruning`` and
    ``spectra.select_on`` (every command of the spectra section reads them); ``use`` says
    what this command does with them."""
    config_option(parser, "spectra.pruning", "--pruning", suffix=f"; {use}")
    config_option(parser, "spectra.select_on", "--select-on", suffix=f"; {use}")


def add_unused_spectra_options(parser, who: str) -> None:
    """The spectra keys a command of the spectra stage reads with the section
    (settings.STAGES: a changed key reruns its jobs) but does not use, its help naming the
    command as ``who``: the tolerances and the selection."""
    add_tolerances_option(parser, f"not used by {who}")
    add_selection_options(parser, f"not used by {who}")


def register_spectra(sub) -> None:
    p = sub.add_parser(
        "spectra",
        help="collapse, utility and PCA spectra of a gathered scan",
        description="From scan.nc: fit the collapse threshold T_k of each ranked mode "
        "(rho = 1 - T/T_k on the points with rho > rho_min; closed form, seeds pooled) and "
        "the free-exponent diagnostic; the best truncated distortions Dn*_k over the scan and "
        "the utilities u_k = Dn*_{k-1} - Dn*_k; and the training PCA spectrum lambda_k/V "
        "(docs/science.md §4). Writes the table (one row per ranked mode: rank, "
        "collapse_threshold, fit_points, free_exponent, utility, best_distortion, pca_ratio, "
        "pca_distortion, ..., crossing_threshold: where the seed-mean rho falls through "
        "rho_min, linear in log T) and a JSON summary, with the utility concentration (n(eps) "
        "of the VAE and of PCA, participation ratios; docs/science.md §9) and the "
        "under-equilibrated scan points (stopped at max_updates before patience updates "
        "passed without improvement); a warning names them too.",
    )
    p.add_argument("scan", type=Path, help="gathered scan file (scan.nc)")
    p.add_argument("--out", required=True, type=Path, help="spectra table to write (.csv)")
    p.add_argument("--summary", type=Path, help="JSON summary to write")
    p.add_argument(
        "--cooling-scan",
        type=Path,
        metavar="SCAN",
        help="the cooling chains' gathered scan of a sweep (scan.start sweep; SCAN is then "
        "the warming one): the table gets each rank's crossing threshold of both directions "
        "and their ratio, hysteresis, the cooling chains' Dn*_k and the minimum over both "
        "directions' points, and the summary a hysteresis block with n(eps) of that minimum "
        "(docs/science.md §5.9)",
    )
    p.add_argument(
        "--prepared",
        type=Path,
        metavar="NPZ",
        help="the run's prepared dataset: adds the rate-distortion block to the summary, the "
        "scan points' (rate, distortion) beside the Gaussian bound of the evaluation split's "
        "covariance (docs/science.md §9.1)",
    )
    add_refined_argument(
        p,
        "the summary gets a refinement block: the points each round added "
        "and each rank's final bracket around its crossing",
    )
    add_run_config_argument(p)
    config_option(p, RHO_MIN_KEY, "--rho-min")
    add_tolerances_option(p, "n(eps) goes into the summary")
    add_selection_options(p, "the rule and split of Dn*_k, u_k and n(eps)")
    p.set_defaults(func=run_spectra)


def add_refined_argument(parser, use: str) -> None:
    """``--refined``: the round records of a refined scan (scan.refine, docs/science.md §4.9)."""
    parser.add_argument(
        "--refined",
        nargs="+",
        type=Path,
        metavar="JSON",
        help=f"the records of the scan's refinement rounds (results/RUN/scan/"
        f"refine_round_I.json, from `collapse-spectroscopy refine`), in order: {use}",
    )


def read_refined(paths) -> list[dict]:
    """The round records of ``--refined`` (empty without it), each checked for its keys."""
    records = []
    for path in paths or []:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--refined {str(path)!r} cannot be read as JSON: {exc}") from None
        if not isinstance(record, dict) or not {"round", "added"} <= set(record):
            raise InputError(
                f"--refined {str(path)!r}: expected a round record written by "
                "`collapse-spectroscopy refine` (keys round, added)"
            )
        records.append(record)
    return records


def ran_points(scan) -> np.ndarray:
    """Which of a gathered scan's (T, seed) points were run (finite rho), flat."""
    rho = scan["signal_fraction"].transpose("T", "seed", "latent").values
    return np.all(np.isfinite(rho), -1).ravel()


def add_cooling(table, summary, scan, args, selection, tolerances) -> None:
    """The hysteresis columns and block of ``--cooling-scan`` (docs/science.md §5.9),
    with ``Dn*_k`` over both directions read by the warming scan's rule and split."""
    where = repr(str(args.cooling_scan))
    cooling_scan = scanfile.read(args.cooling_scan)
    cool_selection = resolve(
        cooling_scan, selection.pruning, selection.select_on, ran_points(cooling_scan), where
    )
    crossings = scan_hysteresis(scan, cooling_scan, args.rho_min)
    branches, block = scan_both_branches(
        scan, cooling_scan, selection, cool_selection, tolerances, args.rho_min
    )
    for frame in (crossings, branches):  # appended after every other column
        for name in frame.columns:
            table[name] = frame[name].reindex(range(len(table))).to_numpy()
    summary["hysteresis"] = {**hysteresis_summary(crossings), "both_branches": block}


def run_spectra(args) -> int:

    check_rho_min(args.rho_min)
    tolerances = check_tolerances(args.tolerances)
    scan = scanfile.read(args.scan)
    reference = split_reference_of(args.prepared, scan) if args.prepared else None
    selection = resolve(scan, args.pruning, args.select_on, ran_points(scan), repr(str(args.scan)))
    if selection.note.startswith("auto: test, as"):  # a nonlinear scan measured before
        print(f"collapse-spectroscopy spectra: warning: {selection.note}", file=sys.stderr)
    table, summary = summarize(
        scan,
        rho_min=args.rho_min,
        tolerances=tolerances,
        reference=reference,
        selection=selection,
    )
    if args.cooling_scan:
        add_cooling(table, summary, scan, args, selection, tolerances)
    if args.refined:
        t, rho, _ = scan_arrays(scan)
        summary["refinement"] = refinement_summary(read_refined(args.refined), t, rho, args.rho_min)
    with all_or_none() as written:  # a table without its summary would look complete
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.10g")
        written.append(args.out)
        if args.summary:
            write_json(args.summary, summary)
    warning = under_equilibrated_warning(summary["under_equilibrated"])
    if warning:
        print(warning, file=sys.stderr)
    print(
        table[["rank", "collapse_threshold", "fit_points", "utility", "pca_ratio"]]
        .head(int(scan.sizes["mode"]) + 1)
        .to_string(index=False)
    )
    return 0


def split_reference_of(prepared: Path, scan) -> dict:
    """:func:`.rate_distortion.split_reference` of the split the scan was measured on."""
    ds = load_prepared(prepared)
    if ds.x_train.shape[1] != scan.sizes["mode"]:
        raise InputError(
            f"--prepared {str(prepared)!r}: has {ds.x_train.shape[1]} features, the scan "
            f"{scan.sizes['mode']}: expected the prepared dataset of the scan's run"
        )
    return split_reference(ds.x_train, ds.split(str(scan.attrs.get("eval_split", "test"))))


def under_equilibrated_warning(block: dict) -> str:
    """One line naming the under-equilibrated scan points, empty when there are none."""
    points = block["points"]
    if not points:
        return ""
    shown = ", ".join(f"(T={p['T']:.4g}, seed {p['seed']})" for p in points[:6])
    more = f" and {len(points) - 6} more" if len(points) > 6 else ""
    patience = block["patience_updates"]
    return (
        f"collapse-spectroscopy spectra: warning: {block['count']} of {block['of']} scan "
        f"points are under-equilibrated (stopped at max_updates before "
        f"{patience if patience is not None else 'patience'} updates passed without a better "
        f"validation loss): {shown}{more}; their observables may still drift (raise "
        "training.max_updates, docs/science.md §7b); the summary JSON lists them under "
        "under_equilibrated"
    )
