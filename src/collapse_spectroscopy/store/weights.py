"""A scan point's saved weights (``scan/T=.../seed=....pt``): reading them, and their digest.

A training job saves a dictionary with the model's ``state_dict``, what rebuilds the
model (``d``, ``latents``, and for a nonlinear family ``kind``, ``hidden``,
``activation``) and the point (``temperature``, ``seed``, ``beta``). The maps read it to
rebuild the model, and a continuation start (docs/science.md §5.8) reads the previous
point's to start the next one from them.

:func:`state_digest` names a ``state_dict`` by its values: a checkpoint of a point that
started from other weights must not be resumed, and the digest is what the point's
identity records of its start.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from collapse_spectroscopy.errors import InputError

REQUIRED = ("state_dict", "d", "latents")


def read_weights(path: str | os.PathLike) -> dict:
    """The dictionary a training job saved at ``path``; InputError naming the file when it
    is missing, unreadable or lacks a key of :data:`REQUIRED`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights {str(path)!r} do not exist (expected a scan point's .pt file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise InputError(f"weights {str(path)!r} cannot be read by torch: {exc}") from exc
    if not isinstance(state, dict):
        raise InputError(
            f"weights {str(path)!r}: expected a dictionary, got {type(state).__name__}"
        )
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise InputError(f"weights {str(path)!r} lack key(s) {', '.join(missing)}")
    return state


def state_digest(state_dict: dict) -> str:
    """SHA-256 of a ``state_dict``'s names, dtypes, shapes and values (in name order).

    The values' bytes, not the file's: the same weights give the same digest whichever
    file (or memory) they come from, and any changed weight another.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
