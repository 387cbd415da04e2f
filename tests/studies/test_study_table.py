"""scripts/study_table.py: the Markdown table of docs/science.md §11 from a study's
long-form spectra.csv. Oracle: a hand-written two-run table whose cells are known."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from workflow_helpers import ROOT


def module():
    spec = importlib.util.spec_from_file_location("study_table", ROOT / "scripts/study_table.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def long_table():
    # the base run (value 1) and a 2x coarser one; rank 2 of the coarser run has no map
    # correlation (not active at the compared point) and a round-off utility
    return pd.DataFrame(
        {
            "value": [1, 1, 2, 2],
            "rank": [1, 2, 1, 2],
            "collapse_threshold": [0.5624, 0.178, 0.506, np.nan],
            "utility": [0.563, 0.184, 0.497, 3e-9],
            "subspace_angle_deg": [0.0, 0.0, 2.4, np.nan],
            "map_correlation": [1.0, 1.0, 0.9987, np.nan],
        }
    )


def test_each_cell_is_its_runs_number():
    text = module().study_table(long_table(), base="1").splitlines()
    assert text[0] == "| rank | T_k @1 | T_k @2 | u_k @1 | u_k @2 | angle/r @2 |"
    assert text[2] == "| 1 | 0.562 | 0.506 | 0.563 | 0.497 | 2 / 1.00 |"
    assert text[3] == "| 2 | 0.178 | – | 0.184 | <1e-7 | – |"


def test_a_base_that_is_not_a_value_is_refused():
    with pytest.raises(SystemExit, match="--base '4' is not a value"):
        module().study_table(long_table(), base="4")
