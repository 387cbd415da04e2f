"""The subcommands of ``collapse-spectroscopy``, in workflow order.

Each entry is a ``register(subparsers)`` function from the module that implements it.
"""

from .datasets.cli import register as register_prepare
from .scan_cli import register_beta, register_gather, register_train
from .spectra_cli import register_figures, register_spectra

REGISTRY = [
    register_prepare,
    register_train,
    register_gather,
    register_spectra,
    register_figures,
    register_beta,
]
