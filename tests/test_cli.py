"""The CLI end to end: prepare-free train -> gather -> spectra -> figures, and beta."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from collapse_spectroscopy.cli import build_parser, main
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.store import scanfile
from synthetic_gaussian import gaussian_prepared

SPECTRUM = [0.6, 0.3, 0.1, 0.0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prepared.npz"
    gaussian_prepared(SPECTRUM, sizes=(3000, 1000, 1000), seed=2).save(path)
    return path


def train(prepared, out, T, seed=0, *extra):
    return main(
        [
            "train",
            "--data",
            str(prepared),
            "-T",
            str(T),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--latents",
            "5",
            "--max-updates",
            "800",
            "--eval-every",
            "200",
            "--patience",
            "0.5",
            *extra,
        ]
    )


@pytest.mark.slow
def test_train_gather_spectra_figures(prepared, tmp_path):
    points = []
    for T in (0.02, 0.2, 0.45):
        for seed in (0, 1):
            out = tmp_path / "points" / f"T{T}_s{seed}.nc"
            assert train(prepared, out, T, seed) == 0
            points.append(out)
    point = scanfile.read(points[0])
    assert float(point["T"]) == 0.02 and int(point["seed"]) == 0
    assert point["signal_fraction"].dims == ("latent",)
    assert point["truncated_distortion"].sizes["k"] == 6
    assert point["signal_fraction"].attrs["symbol"] == "rho"
    assert points[0].with_suffix(".pt").is_file()
    log = pd.read_csv(points[0].with_suffix(".log.csv"))
    assert list(log.columns[:3]) == ["update", "train_loss", "val_loss"]
    # beta = T V / sigma2 with V = d for standardized data
    assert float(point["beta"]) == pytest.approx(0.02 * 4, rel=1e-6)

    scan_path = tmp_path / "scan.nc"
    assert main(["gather", *map(str, points), "--out", str(scan_path)]) == 0
    scan = xr.open_dataset(scan_path, engine="h5netcdf").load()
    assert dict(scan.sizes)["T"] == 3 and dict(scan.sizes)["seed"] == 2
    assert scan["signal_fraction"].dims == ("T", "seed", "latent")
    np.testing.assert_allclose(scan["T"], [0.02, 0.2, 0.45])

    csv, summary = tmp_path / "spectra.csv", tmp_path / "summary.json"
    assert main(["spectra", str(scan_path), "--out", str(csv), "--summary", str(summary)]) == 0
    table = pd.read_csv(csv)
    assert list(table.columns[:8]) == [
        "rank",
        "collapse_threshold",
        "fit_points",
        "free_exponent",
        "utility",
        "best_distortion",
        "pca_ratio",
        "pca_distortion",
    ]
    assert len(table) == 5
    s = json.loads(summary.read_text())
    assert s["scan_points"] == 6 and s["temperatures"] == 3

    figdir = tmp_path / "figures"
    assert main(["figures", str(scan_path), str(csv), "--out-dir", str(figdir)]) == 0
    for stem in (
        "fig1_collapse_scan",
        "fig2_truncated_distortion",
        "fig3_duality",
        "fig4_latent_scale",
    ):
        for ext in (".png", ".pdf"):
            assert (figdir / f"{stem}{ext}").stat().st_size > 1000


def test_missing_dataset_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "p.nc"
    assert train(tmp_path / "nope.npz", out, 0.1) == 2
    assert "nope.npz" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_nan_training_fails_cleanly(tmp_path, capsys):
    bad = gaussian_prepared(SPECTRUM, sizes=(500, 200, 200))
    bad.x_train = bad.x_train * np.float32(1e20)  # the loss overflows to inf
    path = tmp_path / "bad.npz"
    bad.save(path)
    out = tmp_path / "out" / "p.nc"
    assert train(path, out, 0.1, 3) == 3
    err = capsys.readouterr().err
    assert "seed=3" in err and "update 1" in err and "T=0.1" in err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_bad_temperature_is_rejected(prepared, tmp_path):
    with pytest.raises(SystemExit) as exc:
        train(prepared, tmp_path / "p.nc", -0.1)
    assert exc.value.code == 2


def test_gather_rejects_foreign_and_duplicate_files(prepared, tmp_path):
    a = tmp_path / "a.nc"
    assert train(prepared, a, 0.1) == 0
    b = tmp_path / "b.nc"
    b.write_bytes(a.read_bytes())
    assert main(["gather", str(a), str(b), "--out", str(tmp_path / "s.nc")]) == 2
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    assert main(["gather", str(a), str(junk), "--out", str(tmp_path / "s.nc")]) == 2
    assert not (tmp_path / "s.nc").exists()


def test_beta_conversion(capsys, prepared):
    assert main(["beta", "-T", "0.01", "0.1", "-V", "19", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["beta"] for r in out["values"]] == pytest.approx([0.19, 1.9])
    assert main(["beta", "--beta", "0.19", "-V", "19", "--sigma2", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["values"][0]["T"] == pytest.approx(0.005)
    assert main(["beta", "-T", "0.25", "--data", str(prepared), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["values"][0]["beta"] == pytest.approx(1.0)


def test_beta_out_of_range_is_one_clear_line(capsys):
    """T = 1e308 gives beta = inf, which printed as `Infinity`, invalid JSON, with exit 0."""
    assert main(["beta", "-T", "1e308", "-V", "19", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "overflows to inf" in err and "T = 1e+308" in err
    assert main(["beta", "--beta", "1e-320", "-V", "1e10"]) == 2
    assert "underflows to 0" in capsys.readouterr().err


def test_beta_and_train_reject_a_foreign_data_file(tmp_path, capsys):
    """A CSV given as --data: one line naming it, not numpy's allow_pickle advice."""
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    assert main(["beta", "-T", "0.1", "--data", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'" + str(csv) + "' is not a prepared dataset" in err
    assert "pickle" not in err
    assert train(csv, tmp_path / "p.nc", 0.1) == 2
    err = capsys.readouterr().err
    assert "is not a prepared dataset" in err and "pickle" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


def test_train_help_shows_the_real_defaults():
    parser = build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    text = " ".join(train_parser.format_help().split())  # undo argparse's line wrapping
    shown = 0
    for action in train_parser._actions:
        if action.default is None or action.dest == "help":
            continue
        default = action.default
        if isinstance(default, list):  # as typed on the command line: --hidden 64 64
            default = " ".join(map(str, default))
        assert f"default: {default})" in text, action.dest
        shown += 1
    assert shown == 18
    # the defaults are the schema's, shown with the configuration key that sets them
    training = settings.section_defaults("training")
    assert f"(training.max_updates; default: {training['max_updates']})" in text
    assert f"(training.learning_rate; default: {training['learning_rate']})" in text


def test_help_names_the_workflow_and_shows_list_defaults_as_typed():
    """The top help says what the tool measures (linear and MLP VAEs) and that Snakemake
    is the usual entry point; a list option's default reads as it is typed (issue 20.7:
    `train --help` showed "default: ['64', '64']")."""
    top = " ".join(build_parser().format_help().split())
    assert "linear, or MLP" in top and "Snakemake workflow" in top
    train_parser = build_parser("train")._subparsers._group_actions[0].choices["train"]
    train = " ".join(train_parser.format_help().split())
    assert "(model.hidden; default: 64 64)" in train and "['64'" not in train
