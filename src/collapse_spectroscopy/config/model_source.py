"""What identifies a custom model's code in the run's configuration (docs/custom_models.md,
"What is recorded"): a changed factory rewrites the training stage's configuration, and
Snakemake reruns the jobs that read it. Torch is not imported here."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.factory import (
    KEY,
    factory_file,
    is_file_reference,
    split_factory,
)
from collapse_spectroscopy.store.digest import file_sha256


def factory_source(factory: str, key: str = KEY) -> dict:
    """What identifies the factory's code, for the run's configuration (a changed model
    reruns training): for a file, its SHA-256 (not its path, which the key already holds
    as given: a moved working directory retrains nothing); for a module, its file's
    SHA-256 and, when an installed distribution provides it, that distribution's name and
    version."""
    where, _ = split_factory(factory, key)
    if is_file_reference(where):
        # the digest, not the path: a moved working directory keeps its trained points
        return {"sha256": file_sha256(factory_file(where, key, factory))}
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise InputError(
            f"{key} = {factory!r}: module {where!r} is not importable ({exc})"
        ) from None
    if spec is None or spec.origin is None:
        raise InputError(f"{key} = {factory!r}: module {where!r} is not importable")
    source = {"module": where}
    if os.path.isfile(spec.origin):
        source["sha256"] = file_sha256(spec.origin)
    top = where.split(".")[0]
    dists = _distributions().get(top, [])
    if dists:
        source.update(distribution=dists[0], version=importlib.metadata.version(dists[0]))
    return source


@functools.cache  # scans every installed distribution: once per process
def _distributions() -> dict:
    return importlib.metadata.packages_distributions()
