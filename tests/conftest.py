import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

# One thread per test process: the machine has 2 cores and BLAS threads only contend
# on these tiny matrices.
torch.set_num_threads(1)
