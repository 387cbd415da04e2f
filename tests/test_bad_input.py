"""Bad input and faults, probed (issue 20, item 8): each probe ends in one line naming the
key, file or value, loses nothing, and reruns cleanly. Each test here failed before the
change it comes with (the docstrings say how).
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_spectroscopy.cli import main
from collapse_spectroscopy.datasets.table import read_table
from collapse_spectroscopy.errors import InputError


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- a CSV written by a spreadsheet in a decimal-comma locale -------------------------------

# three features in a European spreadsheet's export: ';' between fields, ',' in numbers
SEMICOLON_CSV = "temp;rain;wind\n4,9;120,5;3,25\n5,1;80;-2,5\n-0,75;1,5e+2;0\n"
SEMICOLON_VALUES = [[4.9, 120.5, 3.25], [5.1, 80.0, -2.5], [-0.75, 150.0, 0.0]]


def test_semicolon_csv_with_decimal_commas_is_read_as_written(tmp_path):
    """Before: pandas split at ',' alone, took the extra fields for the row index, and the
    run trained on one feature ``temp;rain;wind`` of mean 4.9e15 (exit 0)."""
    path = tmp_path / "stations.csv"
    path.write_text(SEMICOLON_CSV)
    samples = read_table(path)
    assert samples.feature_names == ["temp", "rain", "wind"]
    # the oracle is the text itself; float32 is what the samples are kept in
    np.testing.assert_array_equal(samples.x, np.float32(SEMICOLON_VALUES))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a,b,c\n1,2,3,\n4,5,6,\n", "line 2 has 4 fields but the header has 3"),
        ("a;b;c\n1;2;3\n4;5\n", "line 3 has 2 fields but the header has 3"),
    ],
    ids=["trailing-comma", "short-row"],
)
def test_a_row_of_another_width_than_the_header_is_refused(tmp_path, capsys, text, where):
    """Before: a trailing comma on each row gave the misleading ``no row has finite values
    in all features`` (pandas made the first column the index and read an empty last
    column); a short row was filled with NaN and dropped without a word."""
    path = tmp_path / "t.csv"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["prepare", "--source", "table", "--path", str(path), "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"collapse-spectroscopy prepare: error: table {str(path)!r}: {where}")
    assert line.endswith("expected as many fields in every row as in the header")
    assert not out.exists()


def test_a_tab_separated_gzip_is_read_with_decimal_points(tmp_path):
    """A tab-delimited compressed file with decimal points: the points stay points."""
    import gzip

    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("x\ty\n1.5\t2\n-3.25\t4e-1\n")
    samples = read_table(path)
    assert samples.feature_names == ["x", "y"]
    np.testing.assert_array_equal(samples.x, np.float32([[1.5, 2.0], [-3.25, 0.4]]))


def test_an_empty_csv_is_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n")
    with pytest.raises(InputError, match="is empty: expected a header and rows"):
        read_table(path)
