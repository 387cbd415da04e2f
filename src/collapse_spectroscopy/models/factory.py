"""Finding a custom model's factory, ``model.factory`` (docs/custom_models.md), without torch.

``"package.module:function"`` is imported from the run's environment;
``"path/to/file.py:function"`` (anything ending in ``.py`` or holding a ``/``) is loaded from
that file, relative to the working directory. :func:`load_factory` returns the callable or
one :class:`.errors.InputError` line naming the key and what was wrong;
:func:`.config.model_source.factory_source` identifies the factory's code from the same
reference. Torch is not imported here: the workflow calls both when it reads its
configuration (the user's module may import torch itself).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path

from collapse_spectroscopy.errors import InputError

KEY = "model.factory"


def split_factory(factory: str, key: str) -> tuple[str, str]:
    text = factory if isinstance(factory, str) else ""
    where, _, name = text.partition(":")
    if text.count(":") != 1 or not where or not name.isidentifier():
        raise InputError(
            f"{key} = {factory!r}: expected 'package.module:function' or 'path/to/file.py:function'"
        )
    return where, name


def is_file_reference(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def factory_file(where: str, key: str, factory: str) -> Path:
    """The factory's file (relative to the working directory), or InputError."""
    path = Path(where).resolve()
    if not path.is_file():
        raise InputError(f"{key} = {factory!r}: no file {str(path)!r}")
    return path


def _load_module(where: str, key: str, factory: str):
    if is_file_reference(where):
        path = factory_file(where, key, factory)
        name = (
            "collapse_spectroscopy_factory_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        )
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: any error is theirs, in one line
            raise InputError(f"{key} = {factory!r}: {path.name} failed to load: {exc!r}") from None
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"{key} = {factory!r}: module {where!r} is not importable ({exc}); install it in "
            "the run's environment or give a file path 'path/to/file.py:function'"
        ) from None
    except Exception as exc:
        raise InputError(f"{key} = {factory!r}: importing {where!r} failed: {exc!r}") from None


def load_factory(factory: str, key: str = KEY):
    """The callable ``factory`` names; InputError naming ``key`` if it cannot be had."""
    where, name = split_factory(factory, key)
    module = _load_module(where, key, factory)
    fn = getattr(module, name, None)
    if fn is None:
        raise InputError(f"{key} = {factory!r}: {where!r} has no attribute {name!r}")
    if not callable(fn):
        raise InputError(
            f"{key} = {factory!r}: {name!r} is not callable (type {type(fn).__name__}): "
            "expected a function that returns the model"
        )
    return fn
