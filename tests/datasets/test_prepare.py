"""Tests of `prepare` itself (datasets/prepare.py) and its CLI: option checks that name
their config key, no outputs left behind by a failed run, and the help text."""

from __future__ import annotations

import pytest
from rasterio.transform import from_origin

from collapse_spectroscopy import cli
from collapse_spectroscopy.datasets.prepare import SplitOptions, prepare
from collapse_spectroscopy.datasets.sources import SourceOptions
from collapse_spectroscopy.errors import InputError
from dataset_helpers import assert_fails, leftovers, run_cli, small_stack

pytestmark = [
    # rasterio's own from_origin still uses Affine's `*`; not ours to fix.
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]


def test_bad_unknown_source(tmp_path, capsys):
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--source", "landsat"],
        capsys,
        tmp_path / "o",
        "dataset.source",
        "'landsat'",
        "worldclim, rasters",
    )


def test_bad_fractions(tmp_path, capsys):
    assert_fails(
        ["prepare", "--out", tmp_path / "o", "--fractions", "0.6", "0.3", "0.2"],
        capsys,
        tmp_path / "o",
        "split.fractions",
        "sum to 1",
    )


def test_failed_run_removes_earlier_outputs(tmp_path, capsys):
    small_stack(tmp_path / "tifs", transform=from_origin(10, 50, 1, 1))
    out = tmp_path / "o"
    rc, _, _ = run_cli(
        ["prepare", "--out", out, "--source", "rasters", "--path", tmp_path / "tifs"], capsys
    )
    assert rc == 0 and (out / "prepared.npz").is_file()
    (out / "logs").mkdir()  # something that is not ours stays
    rc, _, _ = run_cli(
        [
            "prepare",
            "--out",
            out,
            "--source",
            "rasters",
            "--path",
            tmp_path / "tifs",
            "--block-km",
            "5000",
        ],
        capsys,
    )
    assert rc == 2
    assert leftovers(out) == ["logs"]


def test_bad_inputs_raise_input_error_directly(tmp_path):
    with pytest.raises(InputError, match="split.fractions"):
        prepare(tmp_path / "o", split=SplitOptions(fractions=(0.5, 0.5, 0.5)))
    with pytest.raises(InputError, match="split.block_km"):
        prepare(tmp_path / "o", split=SplitOptions(block_km=-1))
    with pytest.raises(InputError, match="dataset.path"):
        prepare(tmp_path / "o", SourceOptions(source="synthetic", path=["x"]))
    assert not (tmp_path / "o").exists()


def test_cli_help_explains_inputs_and_outputs(capsys):
    for cmd in ("prepare", "fetch"):
        with pytest.raises(SystemExit) as exc:
            cli.main([cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "wc2.1_10m_bio.zip" in text
    parser = cli.build_parser()
    help_text = parser._subparsers._group_actions[0].choices["prepare"].format_help()
    for word in (
        "prepared.npz",
        "split_summary.json",
        "split_map.png",
        "standardization.json",
        "--block-km",
        "--fractions",
        "--split-seed",
        "dataset.source",
    ):
        assert word in help_text
