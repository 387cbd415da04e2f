"""Studies: a base run and copies of it that differ in one key (docs/science.md §11).

A study in the configuration, ``studies.NAME: {run: BASE, vary: SECTION.KEY, values:
[...]}``, expands into one *derived run* per value, named ``NAME__LABEL``
(:func:`value_label`): the base run's configuration with ``SECTION.KEY`` set to the
value, a normal run with its own ``results/NAME__LABEL/`` folder and its own scan. A value
equal to the base run's own (its resolved value, the schema's default if it sets none)
is the base run itself: no run is derived for it and nothing is trained twice.

:func:`study_errors` checks a study before any job, each problem by its config key: an
unknown base run, a ``vary`` that names no key of a run, a value the key's schema
refuses (``studies.NAME.values[0] = 0``), a coarsening of a table, a label that two values
share or a derived name that another run already has. :func:`study_runs` is the one
place the derived runs are made (the workflow adds them to ``runs`` after the checks);
:func:`study_members` lists each value with the run that holds it.
"""

from __future__ import annotations

import copy
import math
import re

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.config.dataset_paths import GRIDLESS_SOURCES
from collapse_spectroscopy.config.validate import coerce_text_scalars, schema_errors

SEPARATOR = "__"
_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")


def value_label(value) -> str:
    """A value as it appears in a derived run's name (letters, digits, ``_`` and ``-``):
    ``2`` -> ``2``, ``0.01`` -> ``0p01``, ``1e-05`` -> ``1em05``, ``-0.5`` -> ``m0p5``,
    ``True`` -> ``true``, text as it is. ValueError for anything else."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value).replace("-", "m")
    if isinstance(value, float) and math.isfinite(value):
        return repr(value).replace("-", "m").replace("+", "").replace(".", "p")
    if isinstance(value, str) and _LABEL.match(value):
        return value
    raise ValueError(
        f"{value!r}: expected a number, true/false, or text of letters, digits, _ and -"
    )


def run_name(study: str, value) -> str:
    """The name of the run a study derives for ``value``: ``STUDY__LABEL``."""
    return f"{study}{SEPARATOR}{value_label(value)}"


def _base_value(run: dict, vary: str):
    section, key = vary.split(".")
    return settings.resolve_run(run).get(section, {}).get(key)


def study_members(config: dict, study: str) -> list[tuple[object, str]]:
    """(value, run name) for each value of ``studies.STUDY``, in config order: the base
    run for a value equal to its own, the derived run otherwise."""
    spec = config["studies"][study]
    base = config["runs"][spec["run"]]
    own = _base_value(base, spec["vary"])
    return [(v, spec["run"] if _same(v, own) else run_name(study, v)) for v in spec["values"]]


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def study_runs(config: dict) -> dict[str, dict]:
    """Every derived run of every study, ``{name: run configuration}``: the base run's
    configuration (as written, a deep copy) with the varied key set. Assumes
    :func:`study_errors` found nothing."""
    out = {}
    for study, spec in (config.get("studies") or {}).items():
        section, key = spec["vary"].split(".")
        for value, name in study_members(config, study):
            if name == spec["run"]:
                continue
            run = copy.deepcopy(config["runs"][spec["run"]])
            run.setdefault(section, {})[key] = copy.deepcopy(value)
            out[name] = run
    return out


def _vary_errors(where: str, vary: str) -> list[str]:
    section, _, key = vary.partition(".")
    sections = settings.SECTIONS
    if section not in sections:
        return [
            f"config key {where}.vary = {vary!r}: no section {section!r} in a run: "
            f"expected SECTION.KEY with SECTION one of {', '.join(sections)}"
        ]
    keys = settings.section_schema(section).get("properties", {})
    if key not in keys:
        return [
            f"config key {where}.vary = {vary!r}: section {section!r} has no key {key!r}: "
            f"expected one of {', '.join(f'{section}.{k}' for k in keys)}"
        ]
    return []


def _value_schema(vary: str) -> dict:
    """The schema of ``{"v": value}`` for one value of a study varying key ``vary``: the
    key's own schema, so that a value is read and checked as that key of a run."""
    return {"type": "object", "properties": {"v": settings.key_schema(vary)}}


def coerce_study_values(config: dict) -> list[str]:
    """Read, in place, each study value given as text that spells what its varied key
    takes (``"0.01"`` for ``split.train_subsample``), as the run keys are read
    (:func:`.validate.coerce_text_scalars`: ``--config`` hands nested values over as text);
    returns the keys converted. A study whose ``vary`` names no key is left to
    :func:`study_errors`."""
    converted = []
    for study, spec in (config.get("studies") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("values"), list):
            continue
        try:
            schema = _value_schema(spec["vary"])
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        for i, value in enumerate(spec["values"]):
            box = {"v": value}
            if coerce_text_scalars(box, schema):
                spec["values"][i] = box["v"]
                converted.append(f"studies.{study}.values[{i}]")
    return converted


def study_errors(config: dict) -> list[str]:
    """Problems of ``config``'s studies, each by its key (module docstring). Assumes the
    configuration passed the schema (each study has ``run``, ``vary`` and ``values``)."""

    runs = config.get("runs", {})
    errors: list[str] = []
    names: dict[str, str] = {}  # derived run -> where it comes from
    for study, spec in (config.get("studies") or {}).items():
        where = f"studies.{study}"
        if SEPARATOR in study:
            errors.append(
                f"config key {where}: a study name may not hold {SEPARATOR!r} (it separates "
                "the study from the value in its runs' names)"
            )
            continue
        if spec["run"] not in runs:
            errors.append(
                f"config key {where}.run = {spec['run']!r}: no such run (configured: "
                f"{', '.join(sorted(runs))})"
            )
            continue
        bad_vary = _vary_errors(where, spec["vary"])
        errors += bad_vary
        if bad_vary:
            continue
        section, key = spec["vary"].split(".")
        schema = _value_schema(spec["vary"])
        source = settings.resolve_run(runs[spec["run"]])["dataset"].get("source")
        if spec["vary"].startswith("dataset.coarsen") and source in GRIDLESS_SOURCES:
            errors.append(
                f"config key {where}.vary = {spec['vary']!r}: base run {spec['run']!r} reads "
                f"{'a table' if source == 'table' else 'an arrays file'} (dataset.source "
                f"{source}): coarsening needs a raster source"
            )
            continue
        own = _base_value(runs[spec["run"]], spec["vary"])
        labels: dict[str, int] = {}
        for i, value in enumerate(spec["values"]):
            at = f"config key {where}.values[{i}] = {value!r}"
            for message in schema_errors({"v": value}, schema):
                what = message.split(": ", 1)[-1]
                errors.append(f"{at}: {what} (as {spec['vary']} of a run)")
            try:
                label = value_label(value)
            except ValueError as exc:
                errors.append(f"{at}: {exc}")
                continue
            if label in labels:
                errors.append(
                    f"{at}: names the same run as values[{labels[label]}] ({study}__{label}): "
                    "expected distinct values"
                )
                continue
            labels[label] = i
            if _same(value, own):
                continue
            name = run_name(study, value)
            if name in runs or name in names:
                other = f"runs.{name}" if name in runs else names[name]
                errors.append(f"{at}: derives run {name!r}, which {other} already names")
            names[name] = f"{where}.values[{i}]"
    return errors
