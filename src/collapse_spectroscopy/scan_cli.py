"""CLI subcommands for the scan: ``train`` one scan point, ``gather`` the scan, ``beta``."""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from pathlib import Path

from .errors import InputError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def _check_prepared_file(path: Path) -> None:
    """InputError unless ``path`` could be a prepared dataset (an .npz is a zip archive):
    a CSV or any other file is named as such, before numpy can say something obscure."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise InputError(
            f"--data {str(path)!r} is not a prepared dataset: expected the .npz written by "
            "`collapse-spectroscopy prepare` (run prepare on a table or rasters first)"
        )


def _patience(text: str) -> float:
    value = _positive_float(text)
    return int(value) if value >= 1 else value


def register_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one scan point (T, seed) and measure its observables",
        description="Train the linear beta-VAE at one normalized temperature T "
        "(beta = T V / sigma2, docs/science.md §2) to equilibrium (Adam, early stopping on the "
        "validation split, best weights kept; docs/science.md §5), then measure the per-latent "
        "observables m, v, l, R, rho, q, J and the truncated distortions Dn_k on the "
        "evaluation split (docs/science.md §3-4). Writes the scan-point NetCDF file OUT, the "
        "best weights beside it (OUT with suffix .pt) and the training log (OUT with "
        "suffix .log.csv: update, train loss, validation loss, distortion, rate).",
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="prepared dataset (.npz from `collapse-spectroscopy prepare`)",
    )
    p.add_argument(
        "--temperature",
        "-T",
        required=True,
        type=_positive_float,
        help="normalized temperature T > 0",
    )
    # every default below is shown by %(default)s, so the help cannot drift from the code
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="scan-point file to write (.nc)")
    p.add_argument(
        "--weights", type=Path, help="where to save the best weights (default: OUT with suffix .pt)"
    )
    p.add_argument("--log", type=Path, help="training log CSV (default: OUT with suffix .log.csv)")
    p.add_argument(
        "--latents", type=int, default=32, help="K, number of latents (default: %(default)s)"
    )
    p.add_argument(
        "--sigma2",
        type=_positive_float,
        default=1.0,
        help="decoder variance sigma2 (default: %(default)s)",
    )
    p.add_argument(
        "--max-updates",
        type=int,
        default=500_000,
        help="most Adam updates of the training (default: %(default)s)",
    )
    p.add_argument(
        "--patience",
        type=_patience,
        default=0.1,
        help="updates without validation improvement before stopping: a count "
        ">= 1, or a fraction of --max-updates (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=256, help="samples per update (default: %(default)s)"
    )
    p.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=1e-3,
        help="Adam learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=1000,
        help="validate on the whole validation split every N updates (default: %(default)s)",
    )
    p.add_argument(
        "--eval-split",
        choices=("test", "val", "train"),
        default="test",
        help="split the observables are measured on (paper: test; default: %(default)s)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "fast", "autograd", "numba"),
        default="auto",
        help="training engine: auto (numba on a CPU, fast on CUDA), hand-written gradients "
        "in torch (fast), the autograd "
        "reference, or jitted on one CPU core (numba); same batches and Adam, the torch "
        "engines the same noise, numba noise of the same distribution (default: %(default)s)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=10_000,
        help="write a resumable checkpoint (OUT with suffix .ckpt) every N updates and on "
        "SIGTERM/SIGUSR1 (then exit 4); a rerun resumes from it (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="torch device; auto = CUDA if present (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/BLAS threads (the workflow passes the rule's threads; default: %(default)s)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: only on a terminal)",
    )
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from .pointjob import train_point

    _check_prepared_file(args.data)
    result = train_point(
        data=args.data,
        temperature=args.temperature,
        seed=args.seed,
        out=args.out,
        weights=args.weights,
        log=args.log,
        latents=args.latents,
        sigma2=args.sigma2,
        training=dict(
            max_updates=args.max_updates,
            patience=args.patience,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            eval_every=args.eval_every,
            engine=args.engine,
            checkpoint_every=args.checkpoint_every,
            device=args.device,
            progress=args.progress,
        ),
        eval_split=args.eval_split,
        threads=args.threads,
    )
    print(result.summary_line())
    return 0


def register_gather(sub) -> None:
    p = sub.add_parser(
        "gather",
        help="combine scan-point files into one scan.nc",
        description="Concatenate scan-point files (one per T and seed) into one NetCDF "
        "file with dims T, seed, latent (rank by rho) and k (latents kept). Scan points "
        "that were not run are NaN.",
    )
    p.add_argument("points", nargs="+", type=Path, help="scan-point .nc files")
    p.add_argument("--out", required=True, type=Path, help="scan file to write (scan.nc)")
    p.set_defaults(func=run_gather)


def run_gather(args) -> int:
    from . import scanfile

    scan = scanfile.gather(args.points)
    scanfile.write(scan, args.out)
    print(
        f"gathered {scan.attrs['scan_points']} scan points "
        f"({scan.sizes['T']} temperatures x {scan.sizes['seed']} seeds) into {args.out}"
    )
    return 0


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
    what.add_argument("--temperature", "-T", type=_positive_float, nargs="+")
    what.add_argument("--beta", type=_positive_float, nargs="+")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--total-variance",
        "-V",
        type=_positive_float,
        help="V, e.g. the number of features for standardized data",
    )
    where.add_argument("--data", type=Path, help="take V from a prepared dataset (.npz)")
    p.add_argument(
        "--sigma2",
        type=_positive_float,
        default=1.0,
        help="decoder variance sigma2 (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_beta)


def run_beta(args) -> int:
    from .units import beta_to_temperature, temperature_to_beta

    if args.data is not None:
        from .prepared import load_prepared
        from .training import total_variance

        _check_prepared_file(args.data)
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
