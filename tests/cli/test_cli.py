"""The CLI end to end: prepare-free train -> gather -> spectra -> figures, and beta."""

import json
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from collapse_spectroscopy import figures  # noqa: E402
from collapse_spectroscopy.cli import build_parser, main  # noqa: E402
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.figures.style import DPI  # noqa: E402
from collapse_spectroscopy.store import scanfile
from synthetic_gaussian import gaussian_prepared
from workflow_helpers import SPECTRA_CSV_HEAD

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


TEMPERATURES = (0.02, 0.2, 0.45)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def pipeline(prepared, tmp_path_factory):
    """train (3 T x 2 seeds) -> gather -> spectra -> figures through the CLI, each command
    checked to succeed; the later tests check what each wrote."""
    tmp = tmp_path_factory.mktemp("pipeline")
    points = []
    for T in TEMPERATURES:
        for seed in SEEDS:
            out = tmp / "points" / f"T{T}_s{seed}.nc"
            assert train(prepared, out, T, seed) == 0
            points.append(out)
    scan = tmp / "scan.nc"
    assert main(["gather", *map(str, points), "--out", str(scan)]) == 0
    csv, summary = tmp / "spectra.csv", tmp / "summary.json"
    spectra = ["spectra", str(scan), "--out", str(csv), "--summary", str(summary)]
    assert main([*spectra, "--prepared", str(prepared)]) == 0
    figdir = tmp / "figures"
    assert main(["figures", str(scan), str(csv), "--out-dir", str(figdir)]) == 0
    assert main(["rate-distortion", str(summary), "--out-dir", str(figdir)]) == 0
    return {
        "points": points,
        "scan": scan,
        "csv": csv,
        "summary": summary,
        "figures": figdir,
        "prepared": prepared,
    }


@pytest.mark.slow
def test_train_writes_a_point_its_weights_and_its_log(pipeline):
    first = pipeline["points"][0]
    point = scanfile.read(first)
    assert float(point["T"]) == 0.02 and int(point["seed"]) == 0
    assert point["signal_fraction"].dims == ("latent",)
    assert point["truncated_distortion"].sizes["k"] == 6
    assert point["signal_fraction"].attrs["symbol"] == "rho"
    assert first.with_suffix(".pt").is_file()
    log = pd.read_csv(first.with_suffix(".log.csv"))
    assert list(log.columns[:3]) == ["update", "train_loss", "val_loss"]
    assert len(log) >= 1 and log["update"].is_monotonic_increasing
    # beta = T V / sigma2 with V = d for standardized data
    assert float(point["beta"]) == pytest.approx(0.02 * 4, rel=1e-6)


@pytest.mark.slow
def test_gather_stacks_the_points_by_temperature_and_seed(pipeline):
    scan = xr.open_dataset(pipeline["scan"], engine="h5netcdf").load()
    assert dict(scan.sizes)["T"] == 3 and dict(scan.sizes)["seed"] == 2
    assert scan["signal_fraction"].dims == ("T", "seed", "latent")
    np.testing.assert_allclose(scan["T"], TEMPERATURES)
    # each (T, seed) slice is that point's file, not another's
    for path, (T, seed) in zip(
        pipeline["points"], [(T, s) for T in TEMPERATURES for s in SEEDS], strict=True
    ):
        point = scanfile.read(path)
        np.testing.assert_array_equal(
            scan["signal_fraction"].sel(T=T, seed=seed).values, point["signal_fraction"].values
        )


@pytest.mark.slow
def test_spectra_writes_one_row_per_latent_and_a_summary(pipeline):
    table = pd.read_csv(pipeline["csv"])
    assert list(table.columns[:8]) == SPECTRA_CSV_HEAD
    assert list(table["rank"]) == [1, 2, 3, 4, 5]  # one row per latent (--latents 5)
    # the training split's PCA spectrum: the declared one, to sampling (3000 samples)
    np.testing.assert_allclose(table["pca_ratio"][:4], SPECTRUM, atol=0.03)
    assert (np.diff(table["pca_ratio"][:4]) <= 0).all()
    s = json.loads(pipeline["summary"].read_text())
    assert s["scan_points"] == 6 and s["temperatures"] == 3


@pytest.mark.slow
def test_each_rank_gets_the_rate_of_the_point_that_sets_its_level(pipeline):
    """The `rate` column, against a naive search of the scan: for rank k, the point with
    the lowest Dn_k, and that point's KL rate of its rank-k latent."""
    table = pd.read_csv(pipeline["csv"])
    scan = xr.open_dataset(pipeline["scan"], engine="h5netcdf").load()
    for k in range(1, 6):
        best = None
        for T in TEMPERATURES:
            for seed in SEEDS:
                point = scan.sel(T=T, seed=seed)
                dn = float(point["truncated_distortion"][k])
                if best is None or dn < best[0]:
                    best = (dn, float(point["kl_rate"][k - 1]))
        # the CSV keeps 10 significant digits (float_format %.10g): 5e-10 relative
        assert table["rate"][k - 1] == pytest.approx(best[1], rel=1e-9)
    assert np.all(np.isfinite(table["rate"]))


@pytest.mark.slow
def test_the_summary_places_every_point_on_the_rate_distortion_plane(pipeline):
    """Every point's rate is its scan rate; its distortion the stored sampled one rescaled
    from E||x - xbar_train||^2 to the evaluation split's own variance (computed here from
    the prepared file). A linear VAE on Gaussian data cannot lie below the Gaussian bound
    but for the one-draw estimate of D: with 1,000 test samples and >= 1 noisy mode its
    relative error is ~sqrt(2/1000) = 4.5 %, which at D >= 0.06 and T >= 0.02 moves R
    by <= 0.045 D / (2 T) ~ 0.07 nats; -0.25 nats is over three of those."""
    block = json.loads(pipeline["summary"].read_text())["rate_distortion"]
    scan = xr.open_dataset(pipeline["scan"], engine="h5netcdf").load()
    with np.load(pipeline["prepared"]) as z:
        train, test = z["x_train"].astype(np.float64), z["x_test"].astype(np.float64)
    v_eval = np.var(test, axis=0).sum()
    ref2 = np.square(test - train.mean(axis=0)).sum(axis=1).mean()
    assert len(block["points"]) == 6
    for p in block["points"]:
        point = scan.sel(T=p["T"], seed=p["seed"])
        assert p["rate"] == pytest.approx(float(point["rate"]), rel=1e-12)
        assert p["distortion"] == pytest.approx(
            float(point["distortion_sampled"]) * ref2 / v_eval, rel=1e-9
        )
        assert p["excess_rate"] > -0.25, p
    assert block["points_below_bound"] == sum(p["excess_rate"] < 0 for p in block["points"])
    assert (pipeline["figures"] / "rate_distortion.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_figures_writes_each_figure_as_a_drawn_png_and_a_pdf(pipeline):
    """Each figure of the registry as a PDF and as a PNG of the figure's size at the
    output's dpi (cropped to its content), with ink in every quarter and the ranks'
    colours."""
    figdir = pipeline["figures"]
    scan = xr.open_dataset(pipeline["scan"], engine="h5netcdf").load()
    table = pd.read_csv(pipeline["csv"])
    for stem, draw in figures.REGISTRY.items():
        assert (figdir / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        image = mpimg.imread(figdir / f"{stem}.png")
        width, height = draw(scan, table).get_size_inches() * DPI
        # the tight crop trims the margins and keeps a legend outside the axes (Fig 1's)
        assert 0.95 <= image.shape[1] / width <= 1.25, (stem, image.shape, width)
        assert 0.95 <= image.shape[0] / height <= 1.25, (stem, image.shape, height)
        ink = np.any(image[..., :3] < 0.9, axis=-1)
        h, w = ink.shape
        quarters = [ink[: h // 2, : w // 2], ink[: h // 2, w // 2 :], ink[h // 2 :, : w // 2]]
        quarters.append(ink[h // 2 :, w // 2 :])
        assert all(q.mean() > 0.01 for q in quarters), (stem, [q.mean() for q in quarters])
        # the ranks' colours, not only black lines and text
        rgb = image[..., :3][ink]
        assert np.mean(np.ptp(rgb, axis=-1) > 0.2) > 0.001, stem


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


def test_gather_of_points_measured_by_different_versions_is_quiet(prepared, tmp_path):
    """A point measured before a variable existed (here: without the validation levels)
    gathers beside newer ones without a warning per variable; its missing values are NaN
    and the other point's are kept."""
    old, new = tmp_path / "old.nc", tmp_path / "new.nc"
    assert train(prepared, old, 0.1) == 0 and train(prepared, new, 0.3) == 0
    older = scanfile.read(old).drop_vars("truncated_distortion_val")
    older.load().to_netcdf(old, engine="h5netcdf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan = scanfile.gather([old, new])
    val = scan["truncated_distortion_val"]
    assert np.isnan(val.sel(T=0.1).values).all()
    np.testing.assert_array_equal(
        val.sel(T=0.3).values.ravel(), scanfile.read(new)["truncated_distortion_val"].values
    )


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
    assert shown == 20
    # the defaults are the schema's, shown with the configuration key that sets them
    training = settings.section_defaults("training")
    assert f"(training.max_updates; default: {training['max_updates']})" in text
    assert f"(training.learning_rate; default: {training['learning_rate']})" in text


def test_help_names_the_workflow_and_shows_list_defaults_as_typed():
    """The top help says what the tool measures (linear and MLP VAEs) and that Snakemake
    is the usual entry point; a list option's default reads as it is typed (`64 64`, not
    a Python list)."""
    top = " ".join(build_parser().format_help().split())
    assert "linear, or MLP" in top and "Snakemake workflow" in top
    train_parser = build_parser("train")._subparsers._group_actions[0].choices["train"]
    train = " ".join(train_parser.format_help().split())
    assert "(model.hidden; default: 64 64)" in train and "['64'" not in train
