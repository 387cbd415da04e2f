"""Studies (docs/science.md §11): their expansion into runs, the checks that name a bad key
before any job, the stability measures against hand-built cases, and one small study
end to end through Snakemake."""

import copy
import subprocess

import numpy as np
import pandas as pd
import pytest

from collapse_spectroscopy.config.checks import check_config
from collapse_spectroscopy.config.studies import study_members, study_runs, value_label
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.maps.latent_maps import Grid
from collapse_spectroscopy.studies.compare import (
    STUDY_COLUMNS,
    Effective,
    base_signs,
    leading_subspace_angles,
    map_correlations,
    point_warnings,
    resample_map,
    weighted_pearson,
)
from collapse_spectroscopy.studies.compare import Member as StudyMember
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir


def _config(**study):
    config = tiny_config([0.003, 0.03, 0.3])
    config["studies"] = {"s": {"run": "tiny", "vary": "dataset.coarsen", "values": [1, 2]}}
    config["studies"]["s"].update(study)
    return config


@pytest.mark.parametrize(
    "value, label",
    [
        (2, "2"),
        (0.01, "0p01"),
        (1.0, "1p0"),
        (1e-05, "1em05"),
        (-0.5, "m0p5"),
        (True, "true"),
        ("gelu", "gelu"),
    ],
)
def test_value_labels_are_run_names(value, label):
    assert value_label(value) == label


def test_a_study_derives_one_run_per_value_and_reuses_the_base_run():
    config = _config(vary="split.train_subsample", values=[0.01, 0.1, 1.0])
    before = copy.deepcopy(config)
    derived = study_runs(config)
    assert config == before  # the config itself is not changed
    assert list(derived) == ["s__0p01", "s__0p1"]  # 1.0 is the base run's own (default)
    assert study_members(config, "s") == [(0.01, "s__0p01"), (0.1, "s__0p1"), (1.0, "tiny")]
    expected = copy.deepcopy(config["runs"]["tiny"])
    expected["split"] = {"train_subsample": 0.01}
    assert derived["s__0p01"] == expected  # every other key of the base run kept
    check_config(config)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["runs"]["tiny"]["dataset"].update(coarsen=0),
            "runs.tiny.dataset.coarsen: 0 is less than the minimum of 1",
        ),
        (
            lambda c: c["runs"]["tiny"].update(split={"train_subsample": 0}),
            "runs.tiny.split.train_subsample: 0 is less than or equal to the minimum of 0",
        ),
        (
            lambda c: c["runs"]["tiny"].update(split={"train_subsample": 1.5}),
            "runs.tiny.split.train_subsample: 1.5 is greater than the maximum of 1",
        ),
        (
            lambda c: c["studies"]["s"].update(values=[1, 0]),
            r"studies.s.values\[1\] = 0: 0 is less than the minimum of 1 \(as dataset.coarsen",
        ),
        (
            lambda c: c["studies"]["s"].update(vary="split.train_subsample", values=[0.5, 2]),
            r"studies.s.values\[1\] = 2: 2 is greater than the maximum of 1",
        ),
        (
            lambda c: c["studies"]["s"].update(vary="dataset.coarsne"),
            "studies.s.vary = 'dataset.coarsne': section 'dataset' has no key 'coarsne'",
        ),
        (
            lambda c: c["studies"]["s"].update(vary="data.coarsen"),
            "studies.s.vary = 'data.coarsen': no section 'data' in a run",
        ),
        (
            lambda c: c["studies"]["s"].update(values=[]),
            r"studies.s.values: \[\] should be non-empty",
        ),
        (lambda c: c["studies"]["s"].update(run="nope"), "studies.s.run = 'nope': no such run"),
        (
            lambda c: c["studies"]["s"].update(values=[2, 2.0]),
            r"studies.s.values\[1\] = 2.0: 2.0 is not of type 'integer'",
        ),
        (
            lambda c: c["runs"].update(
                s__2={"dataset": {"source": "synthetic"}, "scan": {"temperatures": [0.1]}}
            ),
            r"studies.s.values\[1\] = 2: derives run 's__2', which runs.s__2 already names",
        ),
        (
            lambda c: c["studies"].update(a__b=c["studies"]["s"]),
            "studies.a__b: a study name may not hold '__'",
        ),
        (
            lambda c: c["runs"]["tiny"]["dataset"].update(source="table", path="x.csv"),
            "studies.s.vary = 'dataset.coarsen': base run 'tiny' reads a table",
        ),
        (
            lambda c: (
                c["runs"]["tiny"]["dataset"].update(source="table", path="x.csv", coarsen=2),
                c.pop("studies"),
            ),
            "runs.tiny.dataset.coarsen = 2 applies to raster sources only",
        ),
    ],
)
def test_a_bad_study_or_transform_names_its_key(change, message):
    config = _config()
    change(config)
    with pytest.raises(InputError, match=message):
        check_config(config)


def test_principal_angles_of_hand_built_decoders():
    """Base decoder columns e1, e2, e3 of R^4. A run whose second column leans 30 degrees
    towards e4 (and whose first is 3 e1: a subspace ignores scale) has leading-k angles
    0, 30, 30; a run with ranks 1 and 2 swapped has 90 (e2 is orthogonal to e1), then 0."""
    base = np.eye(4)[:3]
    t = np.radians(30)
    tilted = np.array([[3, 0, 0, 0], [0, np.cos(t), 0, np.sin(t)], [0, 0, 1, 0]])
    np.testing.assert_allclose(leading_subspace_angles(tilted, base), [0, 30, 30], atol=1e-6)
    swapped = base[[1, 0, 2]]
    np.testing.assert_allclose(leading_subspace_angles(swapped, base), [90, 0, 0], atol=1e-6)
    assert leading_subspace_angles(base[:2], base).shape == (2,)  # up to the fewer active


def test_resampled_map_and_its_correlation():
    """A base map on a 4 x 6 grid (one cell missing), by hand: each 2 x 2 block's
    area-weighted mean of its cells. A run whose maps are those block means correlates 1
    rank by rank. Its rank-2 latent flipped (map and loadings together, the same model)
    still correlates 1: signs follow the base run's loadings. A map negated under
    unchanged loadings (no model does that) would read -1, so the sign is not forced."""
    values = np.arange(24.0).reshape(4, 6)
    values[0, 0] = np.nan
    areas = np.repeat([[1.0], [2.0], [3.0], [4.0]], 6, axis=1)
    want = np.empty((2, 3))
    for i in range(2):
        for j in range(3):
            v, a = (
                values[2 * i : 2 * i + 2, 2 * j : 2 * j + 2],
                areas[2 * i : 2 * i + 2, 2 * j : 2 * j + 2],
            )
            ok = np.isfinite(v)
            want[i, j] = (v[ok] * a[ok]).sum() / a[ok].sum()
    np.testing.assert_allclose(resample_map(values, areas, 2), want)

    wkt = 'PROJCS["x",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Cylindrical_Equal_Area"],PARAMETER["standard_parallel_1",30],UNIT["metre",1]]'  # noqa: E501
    fine = Grid((4, 6), (1e5, 0, 0, 0, -1e5, 4e5), wkt, None)
    coarse = Grid((2, 3), (2e5, 0, 0, 0, -2e5, 4e5), wkt, None)
    base_bands = np.stack([values, values**2])  # projected grid: equal areas
    equal = np.ones((4, 6))
    run_bands = np.stack([resample_map(values, equal, 2), -resample_map(values**2, equal, 2)])
    loadings = np.eye(2, 3)
    flipped = loadings * [[1.0], [-1.0]]
    corr = map_correlations(
        Effective(flipped, run_bands, coarse), Effective(loadings, base_bands, fine)
    )
    np.testing.assert_allclose(corr, [1, 1], atol=1e-12)
    corr = map_correlations(
        Effective(loadings, run_bands, coarse), Effective(loadings, base_bands, fine)
    )
    np.testing.assert_allclose(corr, [1, -1], atol=1e-12)
    shifted = Grid((2, 3), (2e5, 0, 1e5, 0, -2e5, 4e5), wkt, None)  # not nested: no value
    assert np.isnan(
        map_correlations(
            Effective(loadings, run_bands, shifted), Effective(loadings, base_bands, fine)
        )
    ).all()


def test_the_map_correlation_weights_cells_by_area():
    """Against an independent computation: integer weights are the same as repeating each
    cell that many times (np.corrcoef on the repeated values), NaN cells are left out, and
    equal weights give the plain correlation. Both sides sum a few dozen float64 products:
    1e-12 is round-off."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(40), rng.standard_normal(40)
    b += 0.5 * a
    w = rng.integers(1, 6, size=40).astype(float)
    a[3], b[7] = np.nan, np.nan
    keep = np.isfinite(a) & np.isfinite(b)
    want = np.corrcoef(
        np.repeat(a[keep], w[keep].astype(int)), np.repeat(b[keep], w[keep].astype(int))
    )
    assert weighted_pearson(a, b, w) == pytest.approx(want[0, 1], abs=1e-12)
    plain = np.corrcoef(a[keep], b[keep])[0, 1]
    assert weighted_pearson(a, b, np.ones(40)) == pytest.approx(plain, abs=1e-12)
    assert abs(weighted_pearson(a, b, w) - plain) > 1e-3  # the weights matter here


def test_signs_follow_the_base_loadings():
    base = np.array([[1.0, 0.99, 0.0], [0.0, 0.0, 1.0]])
    # the largest-loading rule flips rank 1 (its two largest nearly tie): the base sign wins
    run = np.array([[-0.99, -1.0, 0.01], [0.0, 0.1, -1.0]])
    np.testing.assert_array_equal(base_signs(run, base), [-1.0, -1.0])
    np.testing.assert_array_equal(base_signs(run[:1], base), [-1.0])


def _snakemake(wd, *args):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_a_bad_study_stops_the_workflow_before_any_job(tmp_path):
    wd = workdir(tmp_path, _config(vary="dataset.coarsne"))
    result = _snakemake(wd, "-n", "studies")
    assert result.returncode == 2, result.stderr
    assert "studies.s.vary = 'dataset.coarsne'" in result.stderr
    assert "Traceback" not in result.stderr and not (wd / "results").exists()


def _planned_jobs(wd, *config_args) -> dict[str, int]:
    """Jobs per rule (study, prepare) of a dry run of `studies` in ``wd`` (``--config``
    arguments added, if any)."""
    config = ("--config", *config_args) if config_args else ()
    result = _snakemake(wd, *config, "-n", "studies", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    return {
        line.split()[0]: int(line.split()[1])
        for line in result.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in ("study", "prepare")
    }


def test_studies_expand_into_runs_and_default_studies_selects(tmp_path):
    """A dry run of `studies`: one study job per selected study and one prepared dataset per
    run, derived runs included, a study's value equal to its base run's setting being the
    base run itself (not trained twice). `default_studies` selects the studies built;
    named on the command line, the others are planned as well."""
    config = tiny_config([0.003, 0.03, 0.3])
    config["runs"]["other"] = copy.deepcopy(config["runs"]["tiny"])
    config["studies"] = {
        # 1.0 is the base run's own train_subsample (the default): one derived run
        "size": {"run": "tiny", "vary": "split.train_subsample", "values": [0.3, 1.0]},
        # coarsen 1 is the base run's own: two derived runs
        "coarse": {"run": "other", "vary": "dataset.coarsen", "values": [1, 2, 4]},
    }
    config["default_studies"] = ["size"]
    wd = workdir(tmp_path, config)
    assert _planned_jobs(wd) == {"study": 1, "prepare": 1 + 1}  # size__0p3, tiny
    every = _planned_jobs(wd, "default_studies=[size, coarse]")
    assert every == {"study": 2, "prepare": (1 + 1) + (2 + 1)}  # and coarse__2, __4, other


def test_default_studies_must_name_configured_studies():
    config = _config()
    config["default_studies"] = ["s", "nope"]
    with pytest.raises(InputError, match=r"config key default_studies: unknown study\(s\) 'nope'"):
        check_config(config)
    config["default_studies"] = ["s"]
    check_config(config)


@pytest.mark.slow
def test_a_coarsening_study_end_to_end(tmp_path):
    """The tiny synthetic run and its 2 x 2 coarsening (3 temperatures, 20k updates, one
    training job per run). The table's contract columns; the base
    run's rows compare it with itself (angles 0, map correlations 1, to float rounding);
    the coarse run's two
    leading effective variables survive: under 2 x 2 block means the synthetic layers'
    white part averages out and their smooth part stays, each with the declared
    covariance's shape, so their leading PCA subspaces turn by < 0.4 degrees; the trained
    runs' decoder subspaces within 15 degrees, maps correlate > 0.9."""
    config = _config()
    config["runs"]["tiny"]["scan"]["points_per_job"] = 3  # one training job per run
    # 20k updates (as test_workflow's end-to-end run): with far fewer the latents of
    # ranks 2-3 are still turning, and the decoder subspaces of two runs differ by what
    # the unfinished training left, not by the data
    config["runs"]["tiny"]["training"]["max_updates"] = 20_000
    wd = workdir(tmp_path, config)
    result = _snakemake(wd, "studies")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(wd / "results" / "studies" / "s" / "spectra.csv")
    assert list(table.columns[: len(STUDY_COLUMNS)]) == STUDY_COLUMNS
    assert sorted(table["value"].unique()) == [1, 2]
    assert set(table["run"]) == {"tiny", "s__2"}
    base, coarse = table[table["value"] == 1], table[table["value"] == 2]
    np.testing.assert_allclose(base["subspace_angle_deg"], 0, atol=1e-6)
    np.testing.assert_allclose(base["map_correlation"], 1, atol=1e-9)
    lead = coarse[coarse["rank"] <= 2]
    assert (lead["subspace_angle_deg"] < 15).all() and (lead["map_correlation"] > 0.9).all()
    prepared = np.load(wd / "results" / "s__2" / "data" / "prepared.npz")
    assert '"coarsen"' in str(prepared["metadata"])
    assert (wd / "results" / "studies" / "s" / "study.png").stat().st_size > 10_000


def test_study_figure_draws_every_fitted_rank_and_ticks_the_values():
    """Ranks with a fitted threshold are drawn in (a) and (b) even where the compared scan
    point has fewer active latents (the comparison temperature is a choice; the spectra
    are the whole scan's), and the x ticks are the values themselves."""
    import matplotlib

    matplotlib.use("Agg")
    from collapse_spectroscopy.figures import study

    rows = []
    for value in (1, 2, 4, 8):
        for rank in range(1, 7):
            fitted = rank <= 4
            rows.append(
                {
                    "value": value,
                    "rank": rank,
                    "collapse_threshold": 0.5 / rank**2 if fitted else np.nan,
                    "utility": 0.5 / rank**2 if fitted else 1e-9,
                    "pca_ratio": 0.5 / rank**2,
                    "fit_points": 5 if fitted else 0,
                    "active_latents": 2,
                    "subspace_angle_deg": 1.0 if rank <= 2 else np.nan,
                    "map_correlation": 0.99 if rank <= 2 else np.nan,
                }
            )
    fig = study.draw(pd.DataFrame(rows), "dataset.coarsen", 1, "s")
    ax_t, ax_u, ax_angle, _ = fig.axes[:4]
    assert len(ax_t.get_lines()) == 4 + 1  # ranks 1-4 and the base run's guide
    assert len(ax_u.get_lines()) == 4 + 1  # rank 5-6's round-off utilities are not drawn
    assert len(ax_angle.get_lines()) == 2 + 1
    assert [t.get_text() for t in ax_angle.get_xticklabels()] == ["1", "2", "4", "8"]
    assert ax_angle.get_xscale() == "log"


def _analytic_run(tmp_path, spread_mode=None, stop_reason="converged"):
    """A run folder with one analytic-equilibrium scan point at T = 0.01 (test_modes.py's
    spectrum; ``spread_mode`` held by three latents)."""
    from analytic_scan import point, spread, train_equilibrium
    from collapse_spectroscopy.store import scanfile
    from synthetic_gaussian import gaussian_splits

    spectrum = [0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0]
    xtr, _, _, _, _ = gaussian_splits(spectrum, sizes=(3000, 10, 10), seed=1)
    params = train_equilibrium(xtr, 0.01, 11)
    if spread_mode is not None:
        params = spread(params, spread_mode, [9, 10])
    ds = point(params, 0.01, xtr, xtr)
    ds["stop_reason"] = stop_reason
    path = tmp_path / "run" / "scan" / "T=0.01" / "seed=0.nc"
    path.parent.mkdir(parents=True)
    scanfile.write(ds, path, engine=scanfile.POINT_ENGINE)
    return StudyMember(1, tmp_path / "run", "0.01", 0)


def test_compared_point_warnings_name_a_split_mode_and_an_unfinished_point(tmp_path):
    """A compared point where one mode is spread over three latents, or that stopped at
    max_updates, is named with what is wrong with it; an equilibrium point is not."""
    clean = _analytic_run(tmp_path / "a")
    assert point_warnings(clean, 0.05) == []
    spread_run = _analytic_run(tmp_path / "b", spread_mode=1)
    (line,) = point_warnings(spread_run, 0.05)
    # each of mode 2's three latents keeps a third of its signal: rho = 0.32 / (0.32 +
    # 0.04) = 0.89 at T = 0.01 (T_2 = 0.25), between mode 3's 1 - 0.01/0.13 = 0.92 and
    # mode 4's 1 - 0.01/0.07 = 0.86: ranks 3, 4 and 5
    assert line.endswith("ranks 3, 4 and 5 carry the same PCA mode, 2"), line
    assert "run 'run', scan point T=0.01, seed 0" in line
    budget = _analytic_run(tmp_path / "c", stop_reason="max_updates")
    (line,) = point_warnings(budget, 0.05)
    assert "under-equilibrated" in line


def test_study_values_given_as_text_are_read_as_their_key_takes():
    """``--config`` hands nested values over as text: a study's ``"0.01"`` for a number
    key is read as 0.01, as a run's keys are, and derives the same runs; text that spells
    nothing the key takes still names its key."""
    config = _config(vary="split.train_subsample", values=["0.01", "1e-1", 1.0])
    check_config(config)
    assert config["studies"]["s"]["values"] == [0.01, 0.1, 1.0]
    assert list(study_runs(config)) == ["s__0p01", "s__0p1"]
    config = _config(vary="model.latents", values=["3", "x"])
    with pytest.raises(InputError, match=r"studies\.s\.values\[1\] = 'x'"):
        check_config(config)
    assert config["studies"]["s"]["values"][0] == 3
