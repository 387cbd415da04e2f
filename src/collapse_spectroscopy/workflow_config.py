"""Checks of the workflow's configuration that name the offending key, and the scan grid.

Snakemake's ``validate`` fills in the schema's defaults but reports an error by its
*schema* path. :func:`check_config` runs first and reports the *config* key instead
(``runs.demo.scan.temperatures[1]: -0.2 is less than or equal to the minimum of 0``), then
the checks a schema cannot express:

* no number is NaN or infinite (YAML's ``.nan`` and ``.inf`` pass every JSON Schema bound);
* a string where a number belongs that reads as one gets a hint how to write it (YAML 1.1
  reads ``1e-3`` as a string: a float needs a dot, and a sign in its exponent);
* an integer key holds an integer, not ``1.0e+5`` (JSON Schema would accept an integral
  float, which the command line then rejects inside a job);
* runs named in ``default_runs`` exist; split fractions sum to 1; table-only keys are set
  only for the table source; non-generated sources name a path;
* a run's ``null_run`` is another run, linear, on the same dataset (:func:`null_run_errors`);
* ``figures.fig1_view: modes`` only for a linear run (the per-mode totals are the linear
  VAE's);
* a scan's *expanded* temperature grid has no two points that would write the same
  scan-point file. :func:`scan_temperatures` and :func:`scan_point_label` are the one
  place the workflow expands a grid and names its files, so the check sees exactly the
  jobs the workflow would run;
* a run's ``maps.temperatures`` lie inside its scan and ``maps.seed`` is one of its seeds
  (:func:`map_points` is the one place the mapped scan points are chosen);
* studies name a base run and a key of a run, and each value passes that key's schema
  (:func:`.studies.study_errors`); their derived runs then pass every check above
  (:func:`with_study_runs`).
"""

from __future__ import annotations

import math
import os
from collections import Counter

import jsonschema
import numpy as np
import yaml

from . import settings
from .errors import InputError
from .studies import study_errors, study_runs

TABLE_ONLY_KEYS = ("split_column", "drop_columns")
# the files of a dataset.path folder that a source reads: GeoTIFF layers, a WorldClim zip
DATASET_FOLDER_SUFFIXES = (".tif", ".tiff", ".zip")


def dataset_paths(dataset: dict) -> list[str]:
    """``dataset.path`` as a list (one string is one path; empty: none)."""
    paths = dataset.get("path") or []
    return [paths] if isinstance(paths, str) else [str(p) for p in paths]


def dataset_files(dataset: dict) -> list[str]:
    """The files a run's ``prepare`` job reads from ``dataset.path``: each file named, and
    the GeoTIFFs and zips directly inside each folder named (docs/science.md §5).

    They are the job's inputs, so that a layer replaced or edited in place (a newer file)
    reruns ``prepare`` and everything downstream, as a changed key does; a folder's own
    time stamp would not change when a file inside it is rewritten. A path that does not
    exist is kept: :func:`dataset_path_errors` reports it before any job.
    """
    files = []
    for path in dataset_paths(dataset):
        if not os.path.isdir(path):
            files.append(path)
            continue
        inside = (os.path.join(path, name) for name in sorted(os.listdir(path)))
        files += [
            f
            for f in inside
            if os.path.isfile(f)
            and not os.path.basename(f).startswith(".")
            and f.lower().endswith(DATASET_FOLDER_SUFFIXES)
        ]
    return files


def dataset_path_errors(name: str, dataset: dict) -> list[str]:
    """Every ``dataset.path`` that does not exist (relative paths: from the working
    directory, where the workflow runs), by its key: caught before any job, not by the
    ``prepare`` job minutes later."""
    listed = isinstance(dataset.get("path"), list)
    source = dataset.get("source")
    errors = []
    for i, path in enumerate(dataset_paths(dataset)):
        key = f"config key runs.{name}.dataset.path" + (f"[{i}]" if listed else "")
        if not os.path.exists(path):
            errors.append(
                f"{key} = {path!r}: no such file or folder (from the working directory "
                f"{os.getcwd()!r}): expected an existing folder, zip or file"
            )
        elif (expected := _path_kind_error(source, path)) is not None:
            errors.append(f"{key} = {path!r}: {expected}")
    return errors


def _path_kind_error(source: str | None, path: str) -> str | None:
    """What is wrong with an existing ``path`` for ``source``: a folder given to the table
    source, a file of another format (a study that varies ``dataset.source`` keeps the
    base run's path); None when it is of the right kind."""
    from .datasets.rasters import RASTER_SUFFIXES
    from .datasets.table import CSV_SUFFIXES, NETCDF_SUFFIXES, PARQUET_SUFFIXES

    name = path.lower()
    if source == "table":
        if os.path.isdir(path) or not name.endswith(
            CSV_SUFFIXES + PARQUET_SUFFIXES + NETCDF_SUFFIXES
        ):
            return "not a table for source 'table': expected one CSV, Parquet or NetCDF file"
    elif source == "rasters" and os.path.isfile(path):
        if not name.endswith((*RASTER_SUFFIXES, ".zip")):
            return (
                "not a layer file for source 'rasters': expected a folder, a .zip, or "
                ".tif/.tiff files"
            )
    return None


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _strict_integer(checker, instance) -> bool:
    # JSON Schema counts 100000.0 as an integer; the CLI's int() does not
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


#: The fewest significant digits of a grid's temperatures (:func:`scan_temperatures`).
GRID_DIGITS = 4


def scan_temperatures(grid) -> list[float]:
    """The temperatures T of a scan (``scan.temperatures``), as floats in config order.

    A list is taken as given; ``{min, max, num}`` is ``num`` log-spaced values from ``min``
    to ``max``, both included (``numpy.geomspace``), each rounded to the fewest significant
    digits, at least :data:`GRID_DIGITS`, that keep the grid's distinct values distinct.
    The T of a scan point is its file name (:func:`scan_point_label`), so the names stay
    short (``T=0.001655``, not ``T=0.0016552122635755085``); the rounding moves a T by at
    most 5e-5 of itself, far inside any threshold's resolution, and leaves ends written
    with at most 4 digits (``1.0e-3``, ``0.7``) as they are.
    """
    if not isinstance(grid, dict):
        return [float(t) for t in grid]
    raw = [float(t) for t in np.geomspace(grid["min"], grid["max"], grid["num"])]
    for digits in range(GRID_DIGITS, 18):  # 17 significant digits round-trip any float
        rounded = [float(f"{t:.{digits}g}") for t in raw]
        if len(set(rounded)) == len(set(raw)):
            return rounded
    return raw


#: the default ``maps.temperatures``: those of these inside the scan's range
MAP_TEMPERATURES = (1e-2, 1e-3, 1e-4)
# relative: a bound written in full (3.1622776601683795e-05) is inside the scan whose end
# scan_temperatures rounded to 4 digits (by at most 5e-5 of itself)
_RANGE_ROUNDING = 1e-4


def _inside(t: float, temps: list[float]) -> bool:
    lo, hi = min(temps), max(temps)
    return lo * (1 - _RANGE_ROUNDING) <= t <= hi * (1 + _RANGE_ROUNDING)


def map_points(run: dict) -> tuple[list[float], int]:
    """The scan points a run maps: their temperatures (scan points, config order, each
    once) and the seed.

    Each of ``maps.temperatures`` (default: those of :data:`MAP_TEMPERATURES` inside the
    scan's range) becomes its nearest scan temperature in ``log T``; the seed is
    ``maps.seed``, default the first of ``scan.seeds``. Assumes :func:`check_config`
    passed (a temperature outside the scan is an error there).
    """
    temps = scan_temperatures(run["scan"]["temperatures"])
    maps = run.get("maps") or {}
    wanted = maps.get("temperatures")
    if wanted is None:
        wanted = [t for t in MAP_TEMPERATURES if _inside(t, temps)]
    chosen: list[float] = []
    for w in wanted:
        nearest = min(temps, key=lambda t: abs(math.log(t) - math.log(w)))
        if nearest not in chosen:
            chosen.append(nearest)
    seeds = run["scan"].get("seeds") or settings.section_defaults("scan").get("seeds", [0])
    return chosen, int(maps.get("seed", seeds[0]))


def map_errors(name: str, run: dict) -> list[str]:
    """``maps.temperatures`` outside the scan's range, ``maps.seed`` not a scan seed."""
    maps = run.get("maps") or {}
    temps = scan_temperatures(run["scan"]["temperatures"])
    errors = []
    for i, t in enumerate(maps.get("temperatures") or []):
        if not _inside(t, temps):
            errors.append(
                f"config key runs.{name}.maps.temperatures[{i}] = {t}: outside the scan "
                f"(T from {min(temps):g} to {max(temps):g}): expected a temperature inside "
                "the scan's range (its nearest scan point is mapped)"
            )
    seeds = run["scan"].get("seeds") or settings.section_defaults("scan").get("seeds", [0])
    if "seed" in maps and maps["seed"] not in seeds:
        errors.append(
            f"config key runs.{name}.maps.seed = {maps['seed']}: not a seed of the scan "
            f"(scan.seeds = {list(seeds)}): expected one of them"
        )
    return errors


def scan_point_label(t) -> str:
    """T in a scan-point file name: Python's shortest repr, which ``float()`` reads back
    exactly (two different temperatures never share a label)."""
    return repr(float(t))


def _yaml_spelling(text: str, value: float, integer: bool) -> str | None:
    """How to write ``value`` (given as ``text``) so that YAML 1.1 reads it as a number."""
    if not math.isfinite(value):
        return None
    if integer:
        return str(int(value)) if value.is_integer() else None
    for spelled in (text.strip().lower(), repr(value)):
        mantissa, e, exponent = spelled.partition("e")
        if e:  # YAML 1.1 wants a dot in the mantissa and a sign in the exponent
            mantissa = mantissa if "." in mantissa else mantissa + ".0"
            exponent = exponent if exponent[:1] in ("+", "-") else "+" + exponent
            spelled = f"{mantissa}e{exponent}"
        try:
            if yaml.safe_load(spelled) == value:
                return spelled
        except yaml.YAMLError:
            continue
    return None


def _number_hint(error) -> str:
    """A hint for a number YAML read as text (``1e-3``) or an integral float (``1.0e+5``)."""
    if error.validator != "type":
        return ""
    wanted = error.validator_value
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    integer = "integer" in wanted and "number" not in wanted
    if not (integer or "number" in wanted):
        return ""
    instance = error.instance
    if isinstance(instance, str):
        try:
            value = float(instance)
        except ValueError:
            return ""
        spelled = _yaml_spelling(instance, value, integer)
        if spelled is None:
            return ""
        if spelled == instance.strip():  # a number in quotes
            return f" (a number in quotes is text: write {spelled} without quotes)"
        return f" (YAML 1.1 reads {instance} as text, not a number: write {spelled})"
    if integer and isinstance(instance, float) and instance.is_integer():
        return f" (expected an integer: write {int(instance)})"
    return ""


def _message(error) -> str:
    where = list(error.absolute_path)  # from the config's root, also inside oneOf
    if error.validator == "required":
        missing = [p for p in error.validator_value if p not in error.instance]
        out = []
        for prop in missing:
            about = error.schema.get("properties", {}).get(prop, {}).get("description")
            out.append(
                f"config key {_key([*where, prop])} is required"
                + (f": {about.strip()}" if about else "")
            )
        return "\n  ".join(out)
    # a conditional rule (if/then) says in its description which other key imposes it
    why = f" ({error.schema['description']})" if "then" in error.absolute_schema_path else ""
    return f"config key {_key(where)}: {error.message}{why}{_number_hint(error)}"


def _all_errors(errors):
    """Every error and, recursively, the sub-errors of its oneOf/anyOf alternatives."""
    for error in errors:
        yield error
        yield from _all_errors(error.context or [])


def _scalar_from_text(text: str, wanted: list[str]):
    """The number or boolean that ``text`` spells, if the schema wants one; else None."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(value, str) and "number" in wanted:  # YAML 1.1 reads 1e-3 as text
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool):
        return value if "boolean" in wanted else None
    if isinstance(value, int) and ("integer" in wanted or "number" in wanted):
        return value
    if isinstance(value, float) and "number" in wanted and math.isfinite(value):
        return value
    return None


def coerce_text_scalars(config: dict, schema: dict) -> list[str]:
    """Read as YAML, in place, each text value where the schema expects a number, an
    integer or a boolean and the text spells one; returns the keys converted.

    Snakemake hands the values inside a nested ``--config 'runs={...}'`` over as text
    (``'12'`` for ``12``), so without this the README's own one-line commands were
    refused; a config file's ``latents: "12"`` is read the same way. Text that spells no
    such value is left for the schema check to report."""
    validator = _Validator(schema)
    converted = []
    for _ in range(64):  # a converted value can reveal another inside a oneOf
        fixes = []
        for error in _all_errors(validator.iter_errors(config)):
            if error.validator != "type" or not isinstance(error.instance, str):
                continue
            wanted = error.validator_value
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            value = _scalar_from_text(error.instance, wanted)
            if value is not None and error.absolute_path:
                fixes.append((list(error.absolute_path), value))
        if not fixes:
            break
        for path, value in fixes:
            node = config
            for part in path[:-1]:
                node = node[part]
            if isinstance(node[path[-1]], str):
                node[path[-1]] = value
                converted.append(_key(path))
    return converted


def schema_errors(config: dict, schema: dict) -> list[str]:
    """Every schema violation as ``"config key <path>: <what is wrong>"``."""
    validator = _Validator(schema)
    messages = []
    for error in validator.iter_errors(config):
        # for oneOf/anyOf, the deepest sub-error that is not a mere type mismatch says
        # what is wrong (the alternative the user meant), not "matches none of"
        best = error
        if error.context:
            best = max(error.context, key=lambda e: (e.validator != "type", len(e.absolute_path)))
        messages.append(_message(best))
    return messages


def nonfinite_errors(node, path=()) -> list[str]:
    """Every NaN or infinite number in the config, by key (no key takes one)."""
    if isinstance(node, float) and not math.isfinite(node):
        spelled = ("-" if node < 0 else "") + (".nan" if math.isnan(node) else ".inf")
        return [
            f"config key {_key(path)}: {spelled} is not a finite number: expected a finite value"
        ]
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in nonfinite_errors(v, (*path, k))]
    if isinstance(node, list):
        return [m for i, v in enumerate(node) for m in nonfinite_errors(v, (*path, i))]
    return []


def temperature_grid_errors(name: str, grid) -> list[str]:
    """Problems of a run's ``scan.temperatures`` once expanded into scan points."""
    key = f"runs.{name}.scan.temperatures"
    if isinstance(grid, dict) and grid["min"] > grid["max"]:
        return [f"config key {key}: min {grid['min']} > max {grid['max']}"]
    temps = scan_temperatures(grid)
    labels = Counter(scan_point_label(t) for t in temps)
    repeated = [label for label, count in labels.items() if count > 1]
    if not repeated:
        return []
    expected = "min < max when num > 1" if isinstance(grid, dict) else "every temperature once"
    return [
        f"config key {key} = {grid}: expands to {len(temps)} temperatures but only "
        f"{len(labels)} distinct scan point(s) (T = {', '.join(repeated)} repeated; each T "
        f"names one scan-point file): expected {expected}"
    ]


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
        if ds.get("source") in ("rasters", "table") and not ds.get("path"):
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
        view = (run.get("figures") or {}).get("fig1_view")
        kind = (run.get("model") or {}).get("kind", "linear")
        if view == "modes" and kind != "linear":
            errors.append(
                f"config key runs.{name}.figures.fig1_view = 'modes' needs the per-mode "
                f"totals of the linear VAE, but the run has model.kind {kind!r}: expected "
                "fig1_view latents"
            )
        if ds.get("source") == "table" and ds.get("coarsen", 1) > 1:
            errors.append(
                f"config key runs.{name}.dataset.coarsen = {ds['coarsen']} applies to raster "
                "sources only (worldclim, rasters, synthetic), not 'table'"
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
    if model.get("kind", "linear") == "linear":
        errors += [
            f"config key runs.{name}.model.{key} = {model[key]!r} applies to model.kind mlp "
            "only; the linear VAE has no hidden layers: leave it out, or set model.kind mlp"
            for key in ("hidden", "activation")
            if key in model
        ]
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


def download_errors(runs: dict) -> list[str]:
    """WorldClim runs without ``dataset.path`` that share a resolution share one download:
    their ``dataset.url`` and ``dataset.sha256`` must agree."""
    errors = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # (resolution, key) -> (run, value)
    for name, run in runs.items():
        ds = run.get("dataset", {})
        if ds.get("source") != "worldclim" or ds.get("path"):
            continue
        resolution = ds.get("resolution", "10m")
        for key in ("url", "sha256"):
            if key not in ds:
                continue
            other, value = seen.setdefault((resolution, key), (name, ds[key]))
            if value != ds[key]:
                errors.append(
                    f"config key runs.{name}.dataset.{key} = {ds[key]!r} differs from "
                    f"runs.{other}.dataset.{key} = {value!r}: both runs download the one "
                    f"{resolution} archive; give them the same {key}"
                )
    return errors


# dataset keys of a worldclim run that say where its archive comes from, not what it holds
WORLDCLIM_ACQUISITION_KEYS = ("path", "url", "sha256")


def _normalized_paths(dataset: dict) -> dict:
    """``dataset`` with each ``path`` normalized (no trailing ``/``, no ``./``): the same
    files written two ways are the same dataset."""
    if not dataset.get("path"):
        return dataset
    return {**dataset, "path": [os.path.normpath(p) for p in dataset_paths(dataset)]}


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
                mine, theirs = _normalized_paths(mine), _normalized_paths(theirs)
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
