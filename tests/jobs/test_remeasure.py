"""Measuring scan points again from their weights (`collapse-spectroscopy measure`,
jobs/remeasure.py): with an unchanged version a point's file comes back the same, number
for number; a changed measurement shows up; bad input is one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from collapse_spectroscopy.cli import main
from collapse_spectroscopy.jobs import remeasure as remeasure_module
from collapse_spectroscopy.store import scanfile
from synthetic_gaussian import gaussian_prepared


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """A linear and an MLP scan point trained by the train command (a few hundred updates:
    what is measured need not be equilibrated)."""
    root = tmp_path_factory.mktemp("remeasure")
    data = root / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05], sizes=(1500, 500, 500), seed=3).save(data)
    out = {}
    for kind, extra in (("linear", []), ("mlp", ["--kind", "mlp", "--hidden", "16"])):
        path = root / kind / "T=0.05" / "seed=1.nc"
        args = ["train", "--data", str(data), "-T", "0.05", "--seed", "1", "--out", str(path)]
        args += ["--latents", "4", "--max-updates", "400", "--eval-every", "100", *extra]
        assert main(args) == 0
        out[kind] = path
    return data, out


def _same(a, b):
    """Every variable equal: the same computation on the same machine, float64 throughout,
    so the values agree to round-off of identical operations (1e-12 relative is generous;
    integers and strings exactly)."""
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert {k: v for k, v in a.attrs.items()} == {k: v for k, v in b.attrs.items()}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_measured_again_a_point_is_the_same(points, kind, tmp_path):
    data, paths = points
    copy = tmp_path / "seed=1.nc"
    shutil.copy(paths[kind], copy)
    shutil.copy(paths[kind].with_suffix(".pt"), copy.with_suffix(".pt"))
    assert main(["measure", str(copy), "--data", str(data)]) == 0
    _same(scanfile.read(paths[kind]), scanfile.read(copy))


def test_a_changed_measurement_reaches_the_file(points, tmp_path, monkeypatch):
    """The file is rebuilt from the measurement, not copied: a measurement that reports
    a different rate (here patched) is what the rewritten file holds, while the training
    record (updates, stop reason, time) is kept."""
    data, paths = points
    copy = tmp_path / "seed=1.nc"
    shutil.copy(paths["linear"], copy)
    shutil.copy(paths["linear"].with_suffix(".pt"), copy.with_suffix(".pt"))
    original = remeasure_module.point_dataset

    def doubled_rate(*args, **kwargs):
        ds = original(*args, **kwargs)
        return ds.assign(rate=ds["rate"] * 2)

    monkeypatch.setattr(remeasure_module, "point_dataset", doubled_rate)
    remeasure_module.remeasure([copy], data)
    before, after = scanfile.read(paths["linear"]), scanfile.read(copy)
    assert float(after["rate"]) == pytest.approx(2 * float(before["rate"]), rel=1e-12)
    for name in ("updates_run", "best_update", "elapsed_s", "stop_reason", "beta"):
        assert after[name].values.item() == before[name].values.item(), name


def test_a_chunk_record_keeps_the_point_measured_again(points, tmp_path, monkeypatch):
    """A point a chunk job recorded as finished, measured again: when the job is rerun
    (Snakemake deleted its outputs first), the record restores the new measurement, not
    the file it linked before (the WorldClim MLP scan lost a point's validation levels
    that way)."""
    from collapse_spectroscopy.jobs import chunks
    from collapse_spectroscopy.jobs.points import PointFiles

    data, paths = points
    copy = tmp_path / "seed=1.nc"
    for suffix in (".nc", ".pt", ".log.csv"):
        shutil.copy(paths["linear"].with_suffix(suffix), copy.with_suffix(suffix))
    point = PointFiles.of(0.05, 1, copy)
    chunks.keep(point, {"T": 0.05})
    original = remeasure_module.point_dataset
    monkeypatch.setattr(
        remeasure_module,
        "point_dataset",
        lambda *a, **k: original(*a, **k).assign(measured_again=1.0),
    )
    remeasure_module.remeasure([copy], data)
    copy.unlink()  # what Snakemake does to a failed job's outputs
    assert chunks.restore(point, {"T": 0.05})
    assert float(scanfile.read(copy)["measured_again"]) == 1.0
    assert not chunks.refresh(tmp_path / "no_record.nc")


def test_bad_input_is_one_line(points, tmp_path, capsys):
    data, paths = points
    lonely = tmp_path / "seed=1.nc"
    shutil.copy(paths["linear"], lonely)  # no .pt beside it
    assert main(["measure", str(lonely), "--data", str(data)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights" in err and "seed=1.pt" in err
    other = tmp_path / "other.npz"
    gaussian_prepared([0.6, 0.4], sizes=(300, 100, 100), seed=0).save(other)
    shutil.copy(paths["linear"].with_suffix(".pt"), lonely.with_suffix(".pt"))
    assert main(["measure", str(lonely), "--data", str(other)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4 features" in err and "2" in err
