"""Continuation starts (``scan.start``; docs/science.md §5.8).

With ``scan.start: continuation`` (or ``sweep``) the scan points of one seed form a chain
over T: each point starts from the weights the previous point of the chain ended with
(its best-validation weights, as saved in its ``.pt``) instead of the seed's random
initialization. Its batches and noise are still its own seed's, and so is everything the
protocol does after the start (a fresh Adam state, early stopping, the best weights kept).

:func:`load_start` puts such weights into a freshly built model.
"""

from __future__ import annotations

import torch

from collapse_spectroscopy.errors import InputError


def load_start(model, start: dict) -> None:
    """Load the start weights ``start`` (a ``state_dict``) into ``model``, cast to its
    dtype; InputError when they are another model's (other names or shapes)."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in start.items()}
    if given != own:
        raise InputError(
            f"the start weights are another model's (parameters {sorted(given.items())}), "
            f"not this run's ({sorted(own.items())}): a continuation start needs the "
            "previous scan point of the same run"
        )
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        model.load_state_dict({k: v.to(dtype) for k, v in start.items()})
