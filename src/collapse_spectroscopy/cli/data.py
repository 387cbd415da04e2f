"""``prepare`` a run's dataset and ``fetch`` the WorldClim archive (docs/science.md §5).

Each option that a configuration key sets names it (``dataset.source`` -> ``--source``,
``split.block_km`` -> ``--block-km``, ...) and takes its help, default, choices and
type from the schema.
"""

from __future__ import annotations

import argparse
import json
import sys

from collapse_spectroscopy.cli.argtypes import finite_float
from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.cli.schema_options import schema_argument
from collapse_spectroscopy.datasets.coarsen import CoarsenOptions
from collapse_spectroscopy.datasets.prepare import OUTPUTS, SYNTHETIC_DIR, SplitOptions, prepare
from collapse_spectroscopy.datasets.sources import (
    DEFAULT_CACHE_DIR,
    DEFAULT_SOURCE,
    SourceOptions,
)
from collapse_spectroscopy.datasets.split import check_fractions
from collapse_spectroscopy.datasets.worldclim import (
    archive_name,
    archive_url,
    fetch_archive,
    unpack_archive,
)

PREPARE_DESCRIPTION = f"""\
Build the prepared dataset of one run from a source: keep the grid cells valid in every
layer (or the complete rows of a table), split them into train/validation/test, standardize
every split with the training mean and std, and write the files each training job loads.

inputs (--source, config dataset.source):
  worldclim  WorldClim 2.1 bioclim: --path is {archive_name()} (or a folder of its 19
             GeoTIFFs, or a folder holding the zip); without --path the archive is
             downloaded into --cache-dir from --url, by default
             {archive_url()}
             Features BIO1..BIO19.
  rasters    single-band GeoTIFFs on one grid: --path is a folder or a .zip (layers in
             natural sort order: bio_10 after bio_9) or a list of .tif files (kept in
             the given order). Features are named after the files.
  synthetic  the embedded offline default: a generated 1-degree global stack, written as
             GeoTIFFs into OUT/{SYNTHETIC_DIR}/ and read back like real data.
             --synthetic-kind gaussian (default): 8 layers with a known spectrum
             (0.45, 0.25, 0.15, 0.08, 0.045, 0.02, 0.005, 0); manifold: --features
             smooth nonlinear functions of --intrinsic-dim smooth factors plus white
             noise of std --noise (a known answer for nonlinear VAEs; truth.json holds
             its PCA spectrum and noise floor).
  table      one CSV, Parquet or NetCDF file of samples x numeric features; split at
             random (--fractions, --split-seed) or by --split-column (train/val/test);
             --drop-columns leaves out columns that are not features (ids). Rows with
             a missing value are dropped and counted (log, split_summary.json).
  arrays     one .npy of shape (n, ...) (n samples of any shape: images, say) or .npz
             with x, optionally split (0/1/2 or train/val/test per sample) and
             sample_shape; each sample is flattened into features and its shape kept
             (metadata sample_shape). Without split: at random, as a table (--fractions,
             --split-seed). Samples with a non-finite value are dropped and counted.

Every split is standardized by statistics of the training split (--standardize):
features, one mean and std per feature (the default; a constant feature is an error);
global, one mean and std over all values (pixels: some are constant); none.

A value that marks missing cells but is not declared in the files (a float32 fill of
-3.4e38, say) is an error naming the layer and the value; declare it with --nodata
(dataset.nodata), which replaces the files' nodata tags.

outputs (in OUT):
  {OUTPUTS["prepared"]:<22s} standardized float32 splits + mean/std + metadata (training input)
  {OUTPUTS["split_summary"]:<22s} split rule, parameters, samples/area/blocks per split
  {OUTPUTS["standardization"]:<22s} training mean and std of each feature (source units)
  {OUTPUTS["split_map_png"]:<22s} blocks coloured by split (also {OUTPUTS["split_map_pdf"]})
  {OUTPUTS["split_blocks"]:<22s} one row per spatial block (raster sources only)
  {SYNTHETIC_DIR + "/":<22s} the generated GeoTIFFs and truth.json (synthetic only)

Files are written atomically; on any error none of these outputs remain and the exit
status is 2 with a message naming the file, key or value at fault.
"""

FETCH_DESCRIPTION = f"""\
Download the WorldClim 2.1 bioclim archive into --dest, by default from
{archive_url()}
with retries, resume of a partial download (<file>.part) and a progress bar on a terminal, and
verify it: against --sha256 if given, and (at 10m) each of its 19 GeoTIFFs against the
SHA-256 of the official files. Output: DEST/wc2.1_<resolution>_bio.zip (its path is printed)
and, with --unpack, the folder DEST/wc2.1_<resolution>_bio/ of its 19 GeoTIFFs.
An archive already in DEST is verified and kept. Offline, the error says which file to
download from where and where to put it; a file that fails verification is removed.
"""


def _paths(values) -> list[str]:
    """``--path a b`` -> ["a", "b"]: one path per argument, taken whole (a comma is part
    of a file name, not a separator)."""
    return [str(v) for v in values or [] if str(v)]


def _fractions(values) -> list[float]:
    raw: list[str] = []
    for v in values:
        raw.extend(s for s in str(v).replace(",", " ").split() if s)
    return check_fractions(raw).tolist()


def _run_prepare(args: argparse.Namespace) -> int:
    source = SourceOptions(
        source=args.source,
        path=_paths(args.path),
        resolution=args.resolution,
        url=args.url,
        sha256=args.sha256,
        cache_dir=args.cache_dir,
        retries=args.retries,
        verify=not args.no_verify,
        split_column=args.split_column,
        drop_columns=list(args.drop_columns or []),
        synthetic_seed=args.synthetic_seed,
        synthetic_kind=args.synthetic_kind,
        intrinsic_dim=args.intrinsic_dim,
        features=args.features,
        noise=args.noise,
        nodata=args.nodata,
    )
    split = SplitOptions(
        block_km=args.block_km,
        fractions=tuple(_fractions(args.fractions)),
        seed=args.split_seed,
        train_subsample=args.train_subsample,
    )
    coarsen = CoarsenOptions(factor=args.coarsen, min_valid=args.coarsen_min_valid)
    summary = prepare(args.out, source, split, coarsen, standardize=args.standardize)
    counts = ", ".join(f"{k} {v['samples']:,}" for k, v in summary["splits"].items())
    if "train_subsample" in summary:  # split.train_subsample < 1: the training samples kept
        counts += f" (train kept: {summary['train_subsample']['samples_kept']:,})"
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in summary["timings_s"].items())
    dropped = summary.get("dropped_rows")
    dropped = (
        f" ({dropped['count']:,} of {dropped['of']:,} rows dropped: {dropped['reason']})"
        if dropped
        else ""
    )
    print(
        f"prepared {summary['source']}: {summary['n_samples']:,} samples x "
        f"{len(summary['feature_names'])} features{dropped}; {counts}"
    )
    print(f"timings: {timings}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    path = fetch_archive(
        args.dest, args.resolution, url=args.url, sha256=args.sha256, retries=args.retries
    )
    print(path)
    if args.unpack:
        print(unpack_archive(path, args.resolution))
    return 0


def _add_retries(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="extra download attempts (default: %(default)s)",
    )


def _add_source_options(p: argparse.ArgumentParser) -> None:
    """Where the samples come from (dataset.*), and how the archive is downloaded."""
    # --source and --resolution: prepare names the valid values itself (choices=None)
    config_option(
        p, "dataset.source", "--source", default=DEFAULT_SOURCE, metavar="SOURCE", choices=None
    )
    config_option(
        p,
        "dataset.path",
        "--path",
        nargs="*",
        default=[],
        metavar="PATH",
        suffix="; several files: several arguments; here the download goes into --cache-dir",
    )
    config_option(p, "dataset.resolution", "--resolution", choices=None)
    config_option(p, "dataset.url", "--url")
    config_option(p, "dataset.sha256", "--sha256", metavar="HEX")
    _add_retries(p)
    p.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE_DIR),
        help="where the worldclim source downloads the archive when no --path is given "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the SHA-256 check of the WorldClim GeoTIFFs",
    )


def _add_split_options(p: argparse.ArgumentParser) -> None:
    """The train/validation/test split (split.*, and a table's own split columns)."""
    config_option(p, "split.block_km", "--block-km")
    config_option(
        p, "split.fractions", "--fractions", metavar="F", suffix="; separated by spaces or commas"
    )
    config_option(p, "split.seed", "--split-seed")
    config_option(p, "dataset.split_column", "--split-column", metavar="COLUMN")
    config_option(
        p, "dataset.drop_columns", "--drop-columns", nargs="*", default=[], metavar="COLUMN"
    )
    config_option(
        p,
        "dataset.nodata",
        "--nodata",
        type=finite_float,
        metavar="VALUE",
        suffix="; write a negative value as --nodata=-3.4e38",
    )


def _add_synthetic_options(p: argparse.ArgumentParser) -> None:
    """The synthetic source's generator (dataset.synthetic_*, intrinsic_dim, ...)."""
    config_option(p, "dataset.synthetic_seed", "--synthetic-seed")
    config_option(p, "dataset.synthetic_kind", "--synthetic-kind")
    config_option(p, "dataset.intrinsic_dim", "--intrinsic-dim", metavar="M")
    config_option(p, "dataset.features", "--features", metavar="D")
    config_option(p, "dataset.noise", "--noise", type=finite_float, metavar="STD")


def register_prepare(sub) -> None:
    """Add the ``prepare`` subcommand to the CLI."""
    p = sub.add_parser(
        "prepare",
        help="build a run's prepared dataset (split + standardization) from a source",
        description=PREPARE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="output folder of the run, e.g. results/demo/data",
    )
    add_run_config_argument(p)
    _add_source_options(p)
    _add_split_options(p)
    _add_synthetic_options(p)
    config_option(p, "dataset.coarsen", "--coarsen", metavar="N")
    config_option(
        p,
        "dataset.coarsen_min_valid",
        "--coarsen-min-valid",
        type=finite_float,
        metavar="SHARE",
    )
    config_option(p, "split.train_subsample", "--train-subsample", type=finite_float, metavar="F")
    config_option(p, "dataset.standardize", "--standardize")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.set_defaults(func=_run_prepare)


def register_fetch(sub) -> None:
    """Add the ``fetch`` subcommand to the CLI."""
    f = sub.add_parser(
        "fetch",
        help="download and verify the WorldClim 2.1 bioclim archive",
        description=FETCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument(
        "--dest",
        default=str(DEFAULT_CACHE_DIR),
        help="folder for the archive (default: %(default)s)",
    )
    # the workflow passes these from the runs that download this archive (fetch serves
    # every run of a resolution, so it reads no run configuration)
    schema_argument(f, "dataset.resolution", "--resolution", choices=None)
    schema_argument(f, "dataset.url", "--url")
    schema_argument(f, "dataset.sha256", "--sha256", metavar="HEX")
    _add_retries(f)
    f.add_argument(
        "--unpack",
        action="store_true",
        help="also extract the 19 GeoTIFFs into DEST/wc2.1_<resolution>_bio/ (prepare reads "
        "the zip directly, so this is optional)",
    )
    f.set_defaults(func=_run_fetch)
