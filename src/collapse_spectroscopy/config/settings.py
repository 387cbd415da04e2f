"""The configuration schema, the one home of every default.

``schema.yaml`` (shipped inside the package) declares each key of a run, its
constraints and its default. The workflow validates ``config/config.yaml`` against it
and hands each job the sections of the run it reads (:data:`STAGES`, resolved here); the
command line takes its options' help, defaults, choices and types from it
(:mod:`.cli.schema_options`), and so does the training configuration each ``train`` job
builds: a default, and a key's description, is written once and read everywhere.

A *run* is one entry of ``runs:``: the sections ``dataset``, ``split``, ``model``,
``training``, ``scan`` and ``spectra``. :func:`resolve_run` fills in every default the
schema declares, exactly as Snakemake's ``validate`` does for the workflow.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from collapse_spectroscopy.config.model_source import factory_source
from collapse_spectroscopy.store.atomic import atomic_path, write_json

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")

# the sections of a run, in workflow order (the optional `baselines` of an MLP run and
# the `null_run` key stand beside them: a study cannot vary them)
SECTIONS = ("dataset", "split", "model", "training", "scan", "spectra", "figures", "maps")

# The sections each command reads from a run configuration: the one table both sides use.
# The workflow writes these sections of a run to results/RUN/config/STAGE.json, the
# command's input (so a change to one of them, and only to one of them, reruns its jobs),
# and the command reads nothing else (the CLI refuses an option keyed outside its stage).
# `scan` is read by the workflow alone: it decides which training jobs exist, not how one
# trains; so is `maps`: it decides which scan points are mapped (one maps job each), and a
# maps job reads rho_min (which latents are active) from the spectra section, and so does
# the hysteresis figure of a sweep.
STAGES = {
    "prepare": ("dataset", "split"),
    "train": ("model", "training"),
    "spectra": ("spectra",),
    "figures": ("spectra", "figures"),
    "maps": ("spectra",),
    "hysteresis": ("spectra",),
    # the autoencoder baseline: the run's architecture and training protocol (docs/science.md §9)
    "autoencoder": ("model", "training", "baselines"),
    # a refinement round (docs/science.md §4.9): rho_min and one key of the scan section
    # (section.name: that key alone, so that a changed scan.refine.rounds reruns no round)
    "refine": ("spectra", "scan.refine.points_per_mode"),
}
# the key of a stage's file that identifies a custom model's code (not a schema section)
MODEL_SOURCE = "model_source"
# the stages only a run with scan.start sweep has a job of, only a run with
# baselines.autoencoder, and only a run with scan.refine.rounds > 0 (the others: every run)
SWEEP_STAGES = ("hysteresis",)
BASELINE_STAGES = ("autoencoder",)
REFINE_STAGES = ("refine",)


@functools.cache
def _schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def load_schema() -> dict:
    """The configuration schema (a fresh copy: callers may change it freely)."""
    return copy.deepcopy(_schema())


def section_schema(section: str) -> dict:
    """The schema of one section of a run, e.g. ``"training"``."""
    properties = _schema()["$defs"]["run"]["properties"]
    if section not in properties:
        raise KeyError(f"no run section {section!r} (sections: {', '.join(properties)})")
    return copy.deepcopy(properties[section])


def key_schema(key: str) -> dict:
    """The schema of one key of a run, ``section.name`` (e.g. ``"training.engine"``), or
    deeper in a section of nested objects (``"baselines.autoencoder.max_latents"``)."""
    section, *names = key.split(".")
    prop = section_schema(section)
    for name in names:
        prop = prop["properties"][name]
    return prop


def section_defaults(section: str) -> dict:
    """The schema's default of every key of one run section that has one.

    ``section_defaults("training")["max_updates"]`` is 500000; keys without a default
    (``dataset.source``, ``scan.temperatures``) are absent.
    """
    props = section_schema(section).get("properties", {})
    return {k: copy.deepcopy(p["default"]) for k, p in props.items() if "default" in p}


def _fill(instance: dict, schema: dict) -> dict:
    # What Snakemake's validate(set_default=True) does: a missing property with a default
    # takes it, then every object property is filled from its own schema.
    for key, prop in schema.get("properties", {}).items():
        if key not in instance and "default" in prop:
            instance[key] = copy.deepcopy(prop["default"])
        if isinstance(instance.get(key), dict) and "properties" in prop:
            _fill(instance[key], prop)
    return instance


def _ordered(instance, schema: dict):
    # keys in the schema's order: the same settings give the same params and file
    # whatever order config.yaml lists them in
    if not isinstance(instance, dict):
        return instance
    props = schema.get("properties") or next(
        (alt["properties"] for alt in schema.get("oneOf", ()) if "properties" in alt), {}
    )
    known = {k: _ordered(instance[k], p) for k, p in props.items() if k in instance}
    return known | {k: instance[k] for k in sorted(instance) if k not in props}


def stage_config(run: dict, stage: str) -> dict:
    """The sections of a resolved ``run`` that command ``stage`` reads (:data:`STAGES`),
    each with its keys in the schema's order (an entry ``section.name``: that key alone,
    nested as in the run); for a custom model, also what identifies its factory's code
    (:data:`MODEL_SOURCE`, :func:`.config.model_source.factory_source`)."""
    sections = stage_sections(run, stage, order=True)
    model = sections.get("model") or {}
    if model.get("kind") == "custom" and model.get("factory"):
        # not a setting but the factory's code: a changed model rewrites the file, and
        # Snakemake reruns the jobs that read it (the command ignores this key)
        sections[MODEL_SOURCE] = factory_source(model["factory"])
    return sections


def stage_sections(run: dict, stage: str, order: bool = False) -> dict:
    """What ``run`` holds of each entry of ``STAGES[stage]`` (a section, or
    ``section.name``: that key alone, nested as in the run); ``order``: each with its
    keys in the schema's order."""
    sections = {}
    for entry in STAGES[stage]:
        section, *names = entry.split(".")
        value = run
        for name in entry.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            continue
        value = _ordered(value, key_schema(entry)) if order else value
        for name in reversed(names):
            value = {name: value}
        sections[section] = value
    return sections


def stage_schema(stage: str) -> dict:
    """The schema of the file of command ``stage`` (:func:`stage_config` of a run):
    its sections, and for an entry ``section.name`` only that key."""
    schema: dict = {"type": "object", "properties": {}}
    for entry in STAGES[stage]:
        section, *names = entry.split(".")
        if not names:
            schema["properties"][section] = section_schema(section)
            continue
        node = schema["properties"].setdefault(section, {"type": "object", "properties": {}})
        for name in names[:-1]:
            node = node["properties"].setdefault(name, {"type": "object", "properties": {}})
        node["properties"][names[-1]] = key_schema(entry)
    return schema


def write_run_config(path, run: dict, log=None) -> None:
    """Write (sections of) a resolved run as JSON, atomically
    (``results/RUN/config/STAGE.json``); ``log``, if given, gets one line saying so."""

    write_json(path, run)
    if log is not None:
        with atomic_path(log) as tmp:
            tmp.write_text(f"wrote the run configuration {path}\n")


def resolve_run(run: dict) -> dict:
    """A copy of ``run`` with every default of the schema filled in, its keys in the
    schema's order.

    Does not validate: the workflow checks the configuration first
    (:func:`collapse_spectroscopy.config.checks.check_config`).
    """
    schema = _schema()["$defs"]["run"]
    return _ordered(_fill(copy.deepcopy(run), schema), schema)
