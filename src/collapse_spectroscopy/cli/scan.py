"""``train`` one scan point and ``gather`` the scan (docs/science.md §5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from collapse_spectroscopy.cli.argtypes import (
    check_prepared_file,
    patience,
    positive_float,
)
from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store import scanfile

TRAIN_DESCRIPTION = (
    "Train the beta-VAE (linear, or MLP with --kind mlp: docs/science.md §9) at one "
    "normalized temperature T "
    "(beta = T V / sigma2, docs/science.md §2) to equilibrium (Adam, early stopping on the "
    "validation split, best weights kept; docs/science.md §5), then measure the per-latent "
    "observables m, v, l, R, rho, q, J and the truncated distortions Dn_k on the "
    "evaluation split (docs/science.md §3-4). Writes the scan-point NetCDF file OUT, the "
    "best weights beside it (OUT with suffix .pt) and the training log (OUT with "
    "suffix .log.csv: update, mean batch loss, validation loss, distortion, rate, time, "
    "largest batch loss). With "
    "--point T SEED OUT, once per point, one process trains several scan points in turn "
    "(the workflow's scan.points_per_job), loading the data once; each point keeps its own "
    "files, checkpoint and resume, and a rerun keeps the points already written. Every "
    "option marked with a configuration key takes its default from the schema and its "
    "value from --run-config, if given."
)


def gpu_device(flag: str, gpu) -> list[str]:
    """training.gpu -> the torch device: a run configuration names it, never ``auto``."""
    return [f"{flag}={'cuda' if gpu else 'cpu'}"]


def register_train(sub) -> None:
    """Add the ``train`` subcommand to the CLI."""
    p = sub.add_parser(
        "train",
        help="train one scan point (T, seed) and measure its observables",
        description=TRAIN_DESCRIPTION,
    )
    _add_point_options(p)
    add_run_config_argument(p)
    _add_model_options(p)
    add_training_options(p)
    add_job_runtime_options(p)
    p.set_defaults(func=run_train)


def _add_point_options(p: argparse.ArgumentParser) -> None:
    """The dataset, and the scan point(s) to train: ``-T --seed --out`` or ``--point``."""
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="prepared dataset (.npz from `collapse-spectroscopy prepare`)",
    )
    p.add_argument(
        "--temperature",
        "-T",
        type=positive_float,
        help="normalized temperature T > 0 (one scan point; or give --point)",
    )
    # every default below is shown by %(default)s, so the help cannot drift from the code
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    p.add_argument("--out", type=Path, help="scan-point file to write (.nc)")
    p.add_argument(
        "--point",
        nargs=3,
        action="append",
        metavar=("T", "SEED", "OUT"),
        help="a scan point of a job of several (instead of -T, --seed, --out): temperature, "
        "seed and its .nc file (weights and log beside it); repeat for each point",
    )
    p.add_argument(
        "--weights", type=Path, help="where to save the best weights (default: OUT with suffix .pt)"
    )
    p.add_argument("--log", type=Path, help="training log CSV (default: OUT with suffix .log.csv)")
    p.add_argument(
        "--chain",
        action="store_true",
        help="continuation starts (the workflow's scan.start continuation or sweep; "
        "docs/science.md §5.8): the points, in the order given, form a chain, each "
        "starting from the weights the previous one saved instead of a random initialization "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--start-from",
        type=Path,
        metavar="WEIGHTS",
        help="with --chain: the .pt of the chain's point before this job's first one "
        "(default: the first point starts from its seed's random initialization)",
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The model (model.*): help, default, choices and type from the schema."""
    config_option(p, "model.kind", "--kind")
    config_option(p, "model.hidden", "--hidden", metavar="WIDTH")
    config_option(p, "model.activation", "--activation")
    config_option(p, "model.factory", "--factory", metavar="MODULE:FUNCTION")
    config_option(p, "model.options", "--model-options", metavar="JSON")
    config_option(p, "model.latents", "--latents")
    config_option(p, "model.sigma2", "--sigma2", type=positive_float)


def add_training_options(
    p: argparse.ArgumentParser, checkpoint: str = "OUT with suffix .ckpt"
) -> None:
    """The training protocol (training.*): help, default, choices and type from the
    schema; the engine's choices are the schema's list, auto and the keys of
    engines.ENGINES (a test keeps them equal), so --help imports no engine (and no torch).
    ``checkpoint``: where the command's help says the checkpoint is."""
    config_option(p, "training.max_updates", "--max-updates")
    config_option(p, "training.patience", "--patience", type=patience)
    config_option(p, "training.average", "--average")
    config_option(p, "training.average_horizon", "--average-horizon", type=patience)
    config_option(p, "training.batch_size", "--batch-size")
    config_option(p, "training.learning_rate", "--learning-rate", type=positive_float)
    config_option(p, "training.eval_every", "--eval-every")
    config_option(p, "training.eval_split", "--eval-split")
    config_option(p, "training.engine", "--engine")
    config_option(
        p,
        "training.checkpoint_every",
        "--checkpoint-every",
        suffix=f"; the checkpoint is {checkpoint}, and a job stopped by a signal "
        "exits with status 4",
    )
    # the key is a boolean, the option a torch device (cuda:1, say): text, default auto
    config_option(
        p,
        "training.gpu",
        "--device",
        type=None,
        metavar="DEVICE",
        default="auto",
        to_argv=gpu_device,
        suffix=". --device is the torch device, auto = CUDA if present; a run "
        "configuration sets cuda if its training.gpu is true, else cpu",
    )


def add_job_runtime_options(p: argparse.ArgumentParser) -> None:
    """How a training job runs, not what it computes: its threads and progress bar."""
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


def widths(values) -> list[int]:
    """``--hidden`` as integers (list options stay text, as the schema's default is given;
    :func:`collapse_spectroscopy.models.families.check_model` then checks each is >= 1)."""
    try:
        return [int(v) for v in values]
    except ValueError:
        raise InputError(f"model.hidden = {list(values)}: expected integers >= 1") from None


def scan_points(args) -> list:
    """The job's scan points: ``-T --seed --out [--weights --log]``, or every ``--point``."""
    from collapse_spectroscopy.jobs.points import PointFiles  # lazy: torch

    if not args.point:
        if args.temperature is None or args.out is None:
            raise InputError("give -T and --out (one scan point), or --point T SEED OUT")
        return [PointFiles.of(args.temperature, args.seed, args.out, args.weights, args.log)]
    if args.temperature is not None or args.out or args.weights or args.log:
        raise InputError(
            "--point names each point's T, seed and file: not with -T, --out, --weights or --log"
        )
    points = []
    for t, s, out in args.point:
        try:
            temperature, seed = positive_float(t), int(s)
        except (ValueError, argparse.ArgumentTypeError):
            temperature, seed = None, -1
        if temperature is None or seed < 0:
            raise InputError(
                f"--point {t} {s} {out}: expected a temperature T > 0, a seed (an integer "
                ">= 0) and a .nc file"
            )
        points.append(PointFiles.of(temperature, seed, out))
    return points


def architecture(args):
    """The model the options describe (:class:`.models.families.Architecture`)."""
    from collapse_spectroscopy.models.families import Architecture  # lazy: torch

    return Architecture(
        args.kind, tuple(widths(args.hidden)), args.activation, args.factory, args.model_options
    )


def training_options(args) -> dict:
    """The options of ``TrainConfig`` that :func:`add_training_options` and ``--progress``
    set (training.eval_split is the measurement's, not the trainer's)."""
    return dict(
        max_updates=args.max_updates,
        patience=args.patience,
        average=args.average,
        average_horizon=args.average_horizon,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        eval_every=args.eval_every,
        engine=args.engine,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        progress=args.progress,
    )


def run_train(args) -> int:
    from collapse_spectroscopy.jobs.train_job import train_points  # lazy: torch

    check_prepared_file(args.data)
    points = scan_points(args)

    def report(point, result):
        if len(points) > 1:  # a job of several points: one line per point as it is done
            line = result.summary_line() if result else "kept: written by an earlier run"
            print(f"{point.label}: {line}", flush=True)

    results = train_points(
        points,
        data=args.data,
        latents=args.latents,
        sigma2=args.sigma2,
        arch=architecture(args),
        training=training_options(args),
        eval_split=args.eval_split,
        threads=args.threads,
        report=report,
        chain=args.chain,
        start_from=args.start_from,
    )
    if len(points) == 1:
        print(results[0].summary_line())
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

    scan = scanfile.gather(args.points)
    scanfile.write(scan, args.out)

    def count(n, noun):
        return f"{n} {noun}{'s' * (n != 1)}"

    sizes = f"{count(scan.sizes['T'], 'temperature')} x {count(scan.sizes['seed'], 'seed')}"
    print(f"gathered {count(scan.attrs['scan_points'], 'scan point')} ({sizes}) into {args.out}")
    return 0


def register_measure(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="measure scan points again from their saved weights",
        description="Measure each scan-point file again from the best weights beside it "
        "(POINT with .pt), with this version's observables, on the run's prepared dataset, "
        "and rewrite it atomically, keeping what it records of the training: a scan whose "
        "observables grew need not be trained again. Gather the scan again afterwards "
        "(snakemake does: the points are newer than scan.nc).",
    )
    p.add_argument("points", nargs="+", type=Path, help="scan-point .nc files")
    p.add_argument("--data", required=True, type=Path, help="the run's prepared.npz")
    p.set_defaults(func=run_measure)


def run_measure(args) -> int:

    from collapse_spectroscopy.jobs.remeasure import remeasure  # lazy: torch

    check_prepared_file(args.data)
    for path in remeasure(args.points, args.data):
        print(path)
    return 0
