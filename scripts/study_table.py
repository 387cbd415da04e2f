"""Print a study's comparison as the Markdown table of docs/science.md §11: per rank, each
run's T_k and u_k, and the subspace angle and map correlation against the base run.

    python scripts/study_table.py results/studies/worldclim_resolution --base 1

Reads the study's long-form ``spectra.csv`` (``studies/compare.py``). ``--base`` names the
value that is the base run (its angle and r are 0 and 1 by construction and get no
column). ``--ranks`` limits the rows (default: every rank). A utility below 1e-7 prints as
``<1e-7`` (round-off, docs/science.md §7b); a missing number as ``–``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROUND_OFF = 1e-7


def number(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3g}"


def utility(v) -> str:
    return "<1e-7" if np.isfinite(v) and v < ROUND_OFF else number(v)


def stability(angle, r) -> str:
    if not (np.isfinite(angle) or np.isfinite(r)):
        return "–"
    a = "–" if not np.isfinite(angle) else f"{angle:.0f}"
    return f"{a} / {'–' if not np.isfinite(r) else f'{r:.2f}'}"


def study_table(table: pd.DataFrame, base: str, ranks: int | None = None) -> str:
    table = table.assign(value=table["value"].astype(str))
    values = list(dict.fromkeys(table["value"]))  # the study's order
    if base not in values:
        raise SystemExit(f"study_table: --base {base!r} is not a value of the study {values}")
    others = [v for v in values if v != base]
    by = {v: table[table["value"] == v].set_index("rank") for v in values}
    all_ranks = sorted(set(table["rank"]))[:ranks]
    head = ["rank"] + [f"T_k @{v}" for v in values] + [f"u_k @{v}" for v in values]
    head += [f"angle/r @{v}" for v in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in all_ranks:

        def get(v, col, k=k):
            rows = by[v]
            return float(rows.at[k, col]) if k in rows.index else np.nan

        cells = [str(k)]
        cells += [number(get(v, "collapse_threshold")) for v in values]
        cells += [utility(get(v, "utility")) for v in values]
        for v in others:
            cells.append(stability(get(v, "subspace_angle_deg"), get(v, "map_correlation")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="results/studies/NAME (with spectra.csv)")
    parser.add_argument("--base", required=True, help="the value that is the base run")
    parser.add_argument("--ranks", type=int, help="the first RANKS ranks only")
    args = parser.parse_args(argv)
    path = args.study / "spectra.csv"
    if not path.is_file():
        print(f"study_table: {path} does not exist", file=sys.stderr)
        return 2
    print(study_table(pd.read_csv(path), args.base, args.ranks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
