import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

# One thread per test process: the machine has 2 cores and BLAS threads only contend
# on these tiny matrices.
torch.set_num_threads(1)

#: The environment variable that lets the `slurm` tests install SLURM and munge with apt
#: (they stay installed) and start a one-node cluster. Off by default: `python -m pytest`
#: must not install system packages on a user's machine. .ci/run sets it.
SLURM_OPT_IN = "COLLAPSE_TEST_SLURM"


def slurm_opted_in(config) -> bool:
    """True when the user asked for the real-cluster tests: the environment variable set
    to 1, or the tests selected by marker (`-m slurm`)."""
    if os.environ.get(SLURM_OPT_IN) == "1":
        return True
    expr = (config.option.markexpr or "").replace(" ", "")
    return expr == "slurm"


def pytest_collection_modifyitems(config, items):
    if slurm_opted_in(config):
        return
    skip = pytest.mark.skip(
        reason=f"opt-in: installs SLURM and munge with apt (they stay); "
        f"run with {SLURM_OPT_IN}=1 or -m slurm"
    )
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(skip)
