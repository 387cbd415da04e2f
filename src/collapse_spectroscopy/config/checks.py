"""The checks of the workflow's configuration that a schema cannot express, by key.

:func:`check_config` is the one entry point (the Snakefile calls it before any job). It
runs the schema checks of :mod:`.validate` (which name the *config* key, where Snakemake's
``validate`` names the schema path), then, per run:

* runs named in ``default_runs`` (and ``default_studies``) exist; split fractions sum to
  1; table-only keys are set only for the table source; non-generated sources name a
  path that exists and is of the right kind (:mod:`.dataset_paths`);
* a scan's expanded temperature grid has no two points that would write the same file,
  and ``maps.temperatures`` lie inside the scan (:mod:`.grid`);
* a model fits in memory, its family takes the keys given, weight averaging has a
  horizon the budget allows;
* a run's ``null_run`` is another run, linear, on the same dataset
  (:func:`null_run_errors`); ``figures.fig1_view: modes`` only for a linear run,
  ``baselines.autoencoder`` only for an MLP run;
* studies name a base run and a key of a run, and each value passes that key's schema
  (:mod:`.studies`); their derived runs then pass every check above
  (:func:`with_study_runs`).
"""

from __future__ import annotations

import math
import os

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.config.dataset_paths import (
    GRIDLESS_SOURCES,
    WORLDCLIM_ACQUISITION_KEYS,
    dataset_path_errors,
    download_errors,
    normalized_paths,
)
from collapse_spectroscopy.config.grid import map_errors, temperature_grid_errors
from collapse_spectroscopy.config.studies import coerce_study_values, study_errors, study_runs
from collapse_spectroscopy.config.validate import (
    coerce_text_scalars,
    nonfinite_errors,
    schema_errors,
)
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.factory import load_factory

TABLE_ONLY_KEYS = ("split_column", "drop_columns")


def _unknown_names(config: dict, key: str, known, kind: str) -> list[str]:
    """The names listed under ``key`` (``default_runs``, ``default_studies``) that are not
    configured, as one error naming the key."""
    unknown = [name for name in config.get(key) or [] if name not in known]
    if not unknown:
        return []
    return [
        f"config key {key}: unknown {kind}(s) {', '.join(map(repr, unknown))}"
        f" (configured: {', '.join(sorted(known)) or 'none'})"
    ]


def start_errors(name: str, run: dict) -> list[str]:
    """A chain of continuation starts cannot train as one batch (each point starts from
    the one before it); a sweep is not refined (docs/science.md §4.9)."""
    scan = run.get("scan") or {}
    start = scan.get("start", "independent")
    engine = (run.get("training") or {}).get("engine")
    errors = []
    if start != "independent" and engine == "batched":
        errors.append(
            f"config key runs.{name}.training.engine = 'batched' trains a job's points "
            f"together, but scan.start = {start!r} starts each from the weights of the one "
            "before it: expected another engine (or 'auto'), or scan.start independent"
        )
    rounds = (scan.get("refine") or {}).get("rounds", 0)
    if start == "sweep" and rounds:
        errors.append(
            f"config key runs.{name}.scan.refine.rounds = {rounds}: a sweep's two chains "
            "would need the added points in both directions, which refinement does not "
            "train: expected rounds 0, or scan.start independent or continuation"
        )
    return errors


def consistency_errors(config: dict) -> list[str]:
    runs = config.get("runs", {})
    errors = _unknown_names(config, "default_runs", runs, "run")
    errors += _unknown_names(config, "default_studies", config.get("studies", {}), "study")
    for name, run in runs.items():
        fractions = run.get("split", {}).get("fractions")
        if fractions and abs(sum(fractions) - 1.0) > 1e-9:
            errors.append(
                f"config key runs.{name}.split.fractions = {fractions}: "
                "expected three shares that sum to 1"
            )
        errors += temperature_grid_errors(name, run["scan"]["temperatures"])
        errors += map_errors(name, run)
        ds = run.get("dataset", {})
        if ds.get("source") in ("rasters", *GRIDLESS_SOURCES) and not ds.get("path"):
            errors.append(
                f"config key runs.{name}.dataset.path is required for source {ds['source']!r}"
            )
        errors += dataset_path_errors(name, ds)
        if ds.get("source") == "synthetic" and "nodata" in ds:
            errors.append(
                f"config key runs.{name}.dataset.nodata is not used by source 'synthetic' "
                "(its generated layers declare their own nodata)"
            )
        if ds.get("source") == "synthetic" and ds.get("path"):
            errors.append(
                f"config key runs.{name}.dataset.path = {ds['path']!r} is not used by source "
                "'synthetic' (its layers are generated): leave it out, or set dataset.source "
                "to the source of those files"
            )
        errors += model_errors(name, run) + averaging_errors(name, run)
        errors += start_errors(name, run)
        view = (run.get("figures") or {}).get("fig1_view")
        kind = (run.get("model") or {}).get("kind", "linear")
        if view == "modes" and kind != "linear":
            errors.append(
                f"config key runs.{name}.figures.fig1_view = 'modes' needs the per-mode "
                f"totals of the linear VAE, but the run has model.kind {kind!r}: expected "
                "fig1_view latents"
            )
        if "autoencoder" in (run.get("baselines") or {}) and kind != "mlp":
            errors.append(
                f"config key runs.{name}.baselines.autoencoder trains autoencoders of the MLP "
                f"VAE's architecture (model.hidden, model.activation), but the run has "
                f"model.kind {kind!r}: expected model.kind mlp (a linear autoencoder is PCA, "
                "which Fig 5 draws already)"
            )
        if ds.get("source") in GRIDLESS_SOURCES and ds.get("coarsen", 1) > 1:
            errors.append(
                f"config key runs.{name}.dataset.coarsen = {ds['coarsen']} applies to raster "
                f"sources only (worldclim, rasters, synthetic), not {ds['source']!r}"
            )
        for k in TABLE_ONLY_KEYS:
            if ds.get("source") != "table" and k in ds:
                errors.append(
                    f"config key runs.{name}.dataset.{k} applies to source 'table' only, "
                    f"not {ds.get('source')!r}"
                )
    return errors + download_errors(runs) + null_run_errors(runs)


# Bytes a training job holds per pair of latents at its peak: five K x K float64 matrices
# of the measurement (second moments of the posterior, the decoder's Gram matrix, ...).
# Measured (peak RSS of `train`, linear, fast engine, d = 8, n = 1000/300/300): K = 1000,
# 2000, 4000, 8000 took 0.58, 0.70, 1.19, 3.12 GB, a 0.54 GB base plus 40.2 bytes x K^2
# (the differences 4000 -> 8000 and 1000 -> 2000 agree to 2 %); model.latents = 100000
# failed on allocating one (100000, 100000) float64 array, 74.5 GiB.
BYTES_PER_LATENT_PAIR = 40


def machine_memory_bytes() -> int:
    """The physical memory of this machine (where the workflow checks its configuration)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def model_errors(name: str, run: dict) -> list[str]:
    """``model.latents`` beyond what a training job can hold in memory (a lower bound of
    its need, :data:`BYTES_PER_LATENT_PAIR` x K^2, against this machine's memory: such a
    run would train for minutes and then fail on its first K x K matrix); ``hidden`` or
    ``activation`` for a linear model, which has neither (docs/science.md §9)."""
    model = run.get("model") or {}
    errors = []
    latents = model.get("latents", settings.section_defaults("model")["latents"])
    need, have = BYTES_PER_LATENT_PAIR * latents**2, machine_memory_bytes()
    if need > have:
        most = math.isqrt(have // BYTES_PER_LATENT_PAIR)
        errors.append(
            f"config key runs.{name}.model.latents = {latents}: a training job would need at "
            f"least {need / 2**30:.3g} GiB ({BYTES_PER_LATENT_PAIR} bytes per pair of "
            f"latents), more than this machine's {have / 2**30:.3g} GiB: expected at most "
            f"{most} latents (a few more than the features are plenty: the surplus collapse)"
        )
    return errors + family_errors(name, model)


def family_errors(name: str, model: dict) -> list[str]:
    """Keys of another family than ``model.kind`` (``hidden``/``activation`` are the MLP's,
    ``factory``/``options`` a custom model's), and a custom factory that cannot be loaded
    (not importable, not callable: :func:`.models.factory.load_factory`; what it builds is
    checked when a job builds it, on the dataset's shape)."""
    kind = model.get("kind", "linear")
    why = {
        "linear": "the linear VAE has no hidden layers or factory",
        "mlp": "the MLP VAE is built from model.hidden and model.activation",
        "custom": "a custom model takes its settings in model.options",
    }.get(kind, "")
    owner = {"hidden": "mlp", "activation": "mlp", "factory": "custom", "options": "custom"}
    errors = [
        f"config key runs.{name}.model.{key} = {model[key]!r} applies to model.kind "
        f"{family} only; {why}: leave it out, or set model.kind {family}"
        for key, family in owner.items()
        if key in model and kind != family
    ]
    if kind == "custom" and model.get("factory"):
        try:
            load_factory(model["factory"], key=f"runs.{name}.model.factory")
        except InputError as exc:
            errors.append(f"config key {exc}")
    return errors


def averaging_errors(name: str, run: dict) -> list[str]:
    """``training.average_horizon`` longer than the training: the average would hold every
    update since the initial weights whatever the budget (ema is the plain mean of the
    updates so far until the horizon, polyak's tail reaches back to the start), so the
    weights validated and measured are not the trained ones (docs/science.md §5.4)."""
    training = {**settings.section_defaults("training"), **(run.get("training") or {})}
    if training["average"] == "none":
        return []
    horizon, budget = training["average_horizon"], training["max_updates"]
    updates = horizon * budget if horizon < 1 else horizon  # < 1: a fraction of the budget
    if updates <= budget:
        return []
    return [
        f"config key runs.{name}.training.average_horizon = {horizon}: an average over "
        f"{updates:g} updates is longer than training.max_updates = {budget}, so it would "
        "average in the initial weights: expected at most max_updates (or a fraction < 1 "
        "of it; the default 0.02)"
    ]


def null_run_errors(runs: dict) -> list[str]:
    """A run's ``null_run`` names another run, of ``model.kind`` linear, whose ``dataset``
    and ``split`` sections equal this run's once the schema's defaults are filled in: the
    linear null model measured on the same data (docs/science.md §9)."""
    errors = []
    for name, run in runs.items():
        null = run.get("null_run")
        if null is None:
            continue
        key = f"config key runs.{name}.null_run = {null!r}"
        if null == name:
            errors.append(f"{key}: a run cannot be its own null model: expected another run")
            continue
        if null not in runs:
            errors.append(f"{key}: no such run (configured: {', '.join(sorted(runs))})")
            continue
        this, other = settings.resolve_run(run), settings.resolve_run(runs[null])
        kind = other["model"].get("kind", "linear")
        if kind != "linear":
            errors.append(
                f"{key}: run {null!r} has model.kind {kind!r}: expected a linear run "
                "(model.kind linear), the null model"
            )
        # the same data and the same split: the null model's Dn*_k is measured on the
        # same evaluation cells, so the two curves differ only by the decoder
        for section in ("dataset", "split"):
            mine, theirs = this.get(section, {}), other.get(section, {})
            if section == "dataset":  # data/layers/ and ./data/layers are one folder
                mine, theirs = normalized_paths(mine), normalized_paths(theirs)
            keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            if section == "dataset" and mine.get("source") == theirs.get("source") == "worldclim":
                # where the archive comes from (a local copy, a mirror) is not which data
                # it is: WorldClim 2.1 at one resolution either way
                keys = [k for k in keys if k not in WORLDCLIM_ACQUISITION_KEYS]
            if not keys:
                continue
            errors.append(
                f"{key}: its {section} section differs from runs.{name}.{section} (in "
                f"{', '.join(keys)}): expected a null run on the same {section}"
            )
    return errors


def with_study_runs(config: dict) -> dict:
    """``config`` with the derived runs of its studies added to ``runs``
    (:func:`.studies.study_runs`; a shallow copy, ``config`` itself unchanged)."""
    derived = study_runs(config)
    return {**config, "runs": {**config.get("runs", {}), **derived}} if derived else config


def check_config(config: dict) -> None:
    """Raise :class:`InputError` listing every problem of ``config``, each by its key,
    against the package's schema (:mod:`.settings`)."""
    coerce_text_scalars(config, settings.load_schema())
    coerce_study_values(config)  # the schema types a study's values only by their key
    errors = nonfinite_errors(config)
    errors += schema_errors(config, settings.load_schema())
    if not errors:
        errors = study_errors(config)
    if not errors:  # the derived runs of the studies are runs like any other
        errors = consistency_errors(with_study_runs(config))
    if errors:
        raise InputError("invalid configuration:\n  " + "\n  ".join(errors))


PROJECT_ROOT_VARIABLE = "COLLAPSE_SPECTROSCOPY_ROOT"


def export_project_root(basedir: str | os.PathLike) -> None:
    """Tell the conda environment file where this checkout is.

    ``envs/collapse-spectroscopy.yaml`` installs the project with
    ``-e ${COLLAPSE_SPECTROSCOPY_ROOT}``: Snakemake builds that environment from a copy of the
    file inside ``.snakemake/conda/``, where a relative path would point into ``.snakemake/``.
    """
    os.environ[PROJECT_ROOT_VARIABLE] = os.fspath(os.path.abspath(basedir))
