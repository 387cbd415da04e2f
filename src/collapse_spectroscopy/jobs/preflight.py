"""Checks of a custom model that need the data's shape, made when the workflow starts.

:func:`.config.checks.check_config` checks that a custom model's factory can be loaded;
what it builds can be checked only on the data's ``d`` and ``sample_shape``. For an arrays
source they are in the file's headers (:func:`.datasets.arrays.sample_shape_of`), so the
workflow builds the model once on them and checks it on a small batch
(:meth:`.models.families.Architecture.build`) before any job: a factory whose model
returns the wrong shapes or non-finite values stops the workflow with one line naming
``runs.R.model.factory``. For the other sources the first training job makes the same
check before its first update (docs/custom_models.md).
"""

from __future__ import annotations

import math

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.datasets.arrays import sample_shape_of
from collapse_spectroscopy.errors import InputError


def custom_model_errors(runs: dict) -> list[str]:
    """One line per run whose custom model fails its check on the arrays file's shape."""
    import torch  # lazy: torch (only a run with a custom model pays for it)

    from collapse_spectroscopy.models.families import Architecture  # lazy: torch

    errors = []
    latents_default = settings.section_defaults("model")["latents"]
    for name, run in runs.items():
        model, ds = run.get("model") or {}, run.get("dataset") or {}
        if model.get("kind") != "custom" or not model.get("factory"):
            continue
        if ds.get("source") != "arrays" or not isinstance(ds.get("path"), str):
            continue
        shape = sample_shape_of(ds["path"])
        if not shape:
            continue
        arch = Architecture(
            "custom",
            factory=model["factory"],
            options=dict(model.get("options") or {}),
            sample_shape=tuple(shape),
        )
        try:
            arch.build(
                math.prod(shape),
                int(model.get("latents", latents_default)),
                generator=torch.Generator().manual_seed(0),
                dtype=torch.float32,
            )
        except InputError as exc:
            errors.append(f"config key runs.{name}.{exc}")
    return errors
