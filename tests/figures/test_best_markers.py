"""A hollow Dn*_k marker means: the point the drawn value came from is under-equilibrated.

Oracle: a hand-made scan of three points and one rank where the test split and the
validation split choose different points (the paper's choice and ``select_on: val``,
docs/science.md §9), and only one of them is flagged. The marker must follow the choice
the spectra made, not always the test split's minimum.
"""

import numpy as np
import xarray as xr

from collapse_spectroscopy.analysis.selection import Selection
from collapse_spectroscopy.figures.common import best_from_flagged


def scan():
    # k = 0, 1 at T = 0.01, 0.1, 1 (one seed): the test level is lowest at T = 0.01,
    # the validation level at T = 0.1
    test = np.array([[1.0, 0.20], [1.0, 0.25], [1.0, 0.90]])[:, None, :]
    val = np.array([[1.0, 0.30], [1.0, 0.22], [1.0, 0.95]])[:, None, :]
    dims = ("T", "seed", "k")
    return xr.Dataset(
        {"truncated_distortion": (dims, test), "truncated_distortion_val": (dims, val)},
        coords={"T": [0.01, 0.1, 1.0], "seed": [0], "k": [0, 1]},
    )


def test_the_marker_follows_the_point_the_spectra_chose():
    flags = np.array([[False], [True], [False]])  # only T = 0.1 is under-equilibrated
    assert best_from_flagged(scan(), flags).tolist() == [False, False]  # test: T = 0.01
    val = Selection(select_on="val")
    assert best_from_flagged(scan(), flags, val).tolist() == [False, True]  # val: T = 0.1
    flags = np.array([[True], [False], [False]])
    assert best_from_flagged(scan(), flags).tolist() == [False, True]
    assert best_from_flagged(scan(), flags, val).tolist() == [False, False]
