"""``autoencoder``: the deterministic autoencoder baseline of a nonlinear run
(docs/science.md §9, "Autoencoder baseline")."""

from __future__ import annotations

from pathlib import Path

from collapse_spectroscopy.cli.argtypes import check_prepared_file, positive_float
from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.cli.scan import (
    add_job_runtime_options,
    add_training_options,
    training_options,
    widths,
)
from collapse_spectroscopy.errors import InputError

AUTOENCODER_DESCRIPTION = (
    "Train deterministic autoencoders with the run's MLP architecture (encoder d -> "
    "model.hidden -> k, the decoder mirrored, model.activation) and a bottleneck of k = 1 "
    ".. MAX_LATENTS latents, by the run's training protocol (the same prepared data, "
    "batches, Adam, budget, validation and early stopping on the validation split, best "
    "weights kept; float32) with no noise and no KL: the MLP VAE's engines in their "
    "noise-free mode. Writes OUT (CSV), one row per k: the distortion on the evaluation "
    "split normalized as the VAE's Dn*_k (E||x - xhat||^2 / E||x - xbar_train||^2), the "
    "training split's, and the training outcome. Each k checkpoints to OUT.k=K.ckpt and, "
    "once trained, keeps its row in OUT.k=K.json, so that a rerun after a signal (exit 4) "
    "keeps the finished k and resumes the interrupted one. Every option marked with a "
    "configuration key takes its default from the schema and its value from --run-config."
)


def register_autoencoder(sub) -> None:
    """Add the ``autoencoder`` subcommand to the CLI."""
    p = sub.add_parser(
        "autoencoder",
        help="train the autoencoder baseline of an MLP run: distortion against k",
        description=AUTOENCODER_DESCRIPTION,
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="prepared dataset (.npz from `collapse-spectroscopy prepare`)",
    )
    p.add_argument("--out", required=True, type=Path, help="the table to write (.csv)")
    add_run_config_argument(p)
    config_option(p, "baselines.autoencoder.max_latents", "--max-latents")
    config_option(p, "baselines.autoencoder.seed", "--seed")
    # the VAE's architecture; model.latents (the VAE's K) is not the baseline's: its k
    # runs over 1 .. --max-latents
    # the key's default is linear, which has no baseline: by hand, the option means mlp
    config_option(p, "model.kind", "--kind", default="mlp", suffix="; the baseline is for mlp only")
    config_option(p, "model.hidden", "--hidden", metavar="WIDTH")
    config_option(p, "model.activation", "--activation")
    config_option(p, "model.sigma2", "--sigma2", type=positive_float)
    add_training_options(p, checkpoint="OUT.k=K.ckpt for the k in training")
    add_job_runtime_options(p)
    p.set_defaults(func=run_autoencoder)


def run_autoencoder(args) -> int:
    from collapse_spectroscopy.jobs.autoencoder_job import autoencoder_baseline  # lazy: torch

    if args.kind != "mlp":
        raise InputError(
            f"model.kind = {args.kind!r}: the autoencoder baseline has the MLP VAE's "
            "architecture (model.hidden, model.activation): expected model.kind mlp"
        )
    if args.max_latents is None:
        raise InputError(
            "give --max-latents, or --run-config with baselines.autoencoder.max_latents"
        )
    if args.out.suffix != ".csv":
        raise InputError(f"--out {str(args.out)!r}: expected a .csv file name")
    check_prepared_file(args.data)

    def report(k, row, result):
        done = result.summary_line() if result else "kept: trained by an earlier run"
        print(f"k={k}: distortion {row['distortion']:.6g}; {done}", flush=True)

    autoencoder_baseline(
        data=args.data,
        out=args.out,
        max_latents=args.max_latents,
        seed=args.seed,
        hidden=widths(args.hidden),
        activation=args.activation,
        sigma2=args.sigma2,
        training=training_options(args),
        eval_split=args.eval_split,
        threads=args.threads,
        report=report,
    )
    print(f"wrote {args.out}")
    return 0
