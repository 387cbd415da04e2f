"""``study``: the comparison of a study's runs (docs/science.md §11)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from collapse_spectroscopy.cli.schema_options import schema_argument
from collapse_spectroscopy.cli.spectra import RHO_MIN_KEY, check_rho_min
from collapse_spectroscopy.store.atomic import all_or_none, atomic_path

DESCRIPTION = """\
Compare the runs of a study (config `studies.NAME`): one run per value of the varied key,
each a results/RUN folder with its spectra.csv, data/prepared.npz and the scan point
scan/T=LABEL/seed=SEED.{nc,pt} to compare. Writes OUT (long form, one row per value and
rank: value, rank, collapse_threshold, utility, pca_ratio, fit_points, then run,
temperature, active_latents, subspace_angle_deg -- the largest principal angle between the
leading-k decoder subspaces of the run and the base run -- and map_correlation -- the
correlation of the rank-k latent map with the base run's map resampled to the run's grid,
raster runs only) and FIGURE (T_k, u_k and both stability measures against the value).
"""


def register_study(sub) -> None:
    """Add the ``study`` subcommand to the CLI."""
    p = sub.add_parser(
        "study",
        help="compare the runs of a study (spectra and stability of the effective variables)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--member",
        nargs=3,
        action="append",
        required=True,
        metavar=("VALUE", "RUN_DIR", "T"),
        help="a value of the varied key, its run's folder and the T label of its scan point "
        "to compare (repeat for each value, in order)",
    )
    p.add_argument(
        "--base",
        nargs=2,
        required=True,
        metavar=("RUN_DIR", "T"),
        help="the base run's folder and the T label of its scan point to compare",
    )
    p.add_argument("--seed", type=int, default=0, help="the compared scan points' seed")
    p.add_argument("--vary", required=True, help="the varied key, SECTION.KEY")
    p.add_argument("--name", default="study", help="the study's name (the figure's title)")
    # the workflow passes the base run's spectra.rho_min (study reads no run configuration)
    schema_argument(
        p, RHO_MIN_KEY, "--rho-min", required=True, default=None, suffix="; the base run's"
    )
    p.add_argument("--out", type=Path, required=True, help="the long table (CSV)")
    p.add_argument("--figure", type=Path, required=True, help="the figure (PNG)")
    p.set_defaults(func=run_study)


def run_study(args) -> int:
    from collapse_spectroscopy.figures import study  # lazy: matplotlib
    from collapse_spectroscopy.figures.style import DPI, style  # lazy: matplotlib
    from collapse_spectroscopy.studies import compare  # lazy: scipy

    check_rho_min(args.rho_min)
    members = [compare.Member(yaml.safe_load(v), Path(d), t, args.seed) for v, d, t in args.member]
    base = compare.Member(None, Path(args.base[0]), args.base[1], args.seed)
    table = compare.study_table(members, base, args.rho_min)
    # warnings, not errors: the comparison is still written, but the log says where it is
    # weak and which key moves it (the base point decides every row's angles and maps)
    for line in compare.point_warnings(base, args.rho_min):
        print(
            f"collapse-spectroscopy study: warning: {line}; the comparison at this point is "
            f"unreliable: set studies.{args.name}.temperature to a scan temperature where the "
            "base run's ranks hold distinct modes (docs/science.md §11)",
            file=sys.stderr,
        )
    base_value = next((m.value for m in members if m.run_dir == base.run_dir), None)
    title = f"study {args.name}: {args.vary} (base run {base.name}, seed {args.seed})"
    fig = study.draw(table, args.vary, base_value, title)
    with all_or_none() as written:
        compare.write_table(args.out, table)
        written.append(args.out)
        with style(), atomic_path(args.figure) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        written.append(args.figure)
    for path in written:
        print(path)
    return 0
