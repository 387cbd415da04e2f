"""``beta``: convert between the temperature T and beta (docs/science.md §2, §8)."""

from __future__ import annotations

import json
from pathlib import Path

from collapse_spectroscopy.analysis.temperature import (
    beta_to_temperature,
    temperature_to_beta,
    total_variance,
)
from collapse_spectroscopy.cli.argtypes import check_prepared_file, positive_float
from collapse_spectroscopy.cli.schema_options import schema_argument
from collapse_spectroscopy.store.prepared import load_prepared


def register_beta(sub) -> None:
    p = sub.add_parser(
        "beta",
        help="convert between the temperature T and beta (docs/science.md §2, §8)",
        description="T = beta sigma2 / V, beta = T V / sigma2, with V the total variance "
        "of the (standardized) training data and sigma2 the decoder variance of a "
        "Gaussian likelihood. For a plain sum-of-squares reconstruction loss use "
        "sigma2 = 0.5. Give --temperature to get beta, or --beta to get T.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--temperature", "-T", type=positive_float, nargs="+")
    what.add_argument("--beta", type=positive_float, nargs="+")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--total-variance",
        "-V",
        type=positive_float,
        help="V, e.g. the number of features for standardized data",
    )
    where.add_argument("--data", type=Path, help="take V from a prepared dataset (.npz)")
    schema_argument(p, "model.sigma2", "--sigma2", type=positive_float)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_beta)


def run_beta(args) -> int:

    if args.data is not None:
        check_prepared_file(args.data)
        V = total_variance(load_prepared(args.data).x_train)
    else:
        V = args.total_variance
    if args.temperature is not None:
        rows = [{"T": t, "beta": temperature_to_beta(t, V, args.sigma2)} for t in args.temperature]
    else:
        rows = [{"T": beta_to_temperature(b, V, args.sigma2), "beta": b} for b in args.beta]
    if args.json:
        # allow_nan=False: never print Infinity or NaN, which are not JSON (units checks
        # every result is finite, so this only guards that promise)
        print(json.dumps({"V": V, "sigma2": args.sigma2, "values": rows}, allow_nan=False))
    else:
        print(f"# V = {V:.6g}, sigma2 = {args.sigma2:g}")
        print(f"{'T':>14} {'beta':>14}")
        for r in rows:
            print(f"{r['T']:>14.6g} {r['beta']:>14.6g}")
    return 0
