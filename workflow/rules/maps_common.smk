# The functions of rules/maps.smk: which runs and scan points are mapped, and the
# maps' outputs and command (kept apart from the rules, as the Snakemake linter asks).
# The maps a run asks for are map_targets in common.smk, beside run_targets.
from collapse_spectroscopy.config.dataset_paths import GRIDLESS_SOURCES
from collapse_spectroscopy.config.grid import map_points


def map_runs(table):
    """A regex matching the names of the runs whose samples are (not) without a grid
    (a table or arrays: their latent means are a table too)."""
    runs = [
        name
        for name, run in config["runs"].items()
        if (run["dataset"]["source"] in GRIDLESS_SOURCES) == table
    ]
    return any_of(runs)


def map_point(wildcards, suffix):
    """The mapped scan point's file (.nc or .pt) at T, for the run's maps.seed."""
    seed = map_points(run_config(wildcards.run))[1]
    return f"results/{wildcards.run}/scan/T={wildcards.T}/seed={seed}.{suffix}"


def map_report(name):
    return report(
        f"results/{{run}}/maps/T={{T}}/{name}.png",
        caption=f"../report/maps_{name}.rst",
        category="{run}",
        subcategory="Maps",
        labels={"figure": name, "T": "{T}"},
    )


MAPS_SHELL = (
    "MPLBACKEND=Agg collapse-spectroscopy maps {input.point} --data {input.data} "
    "--weights {input.weights} --run-config {input.run_config} "
    "--out-dir results/{wildcards.run}/maps/T={wildcards.T} > {log} 2>&1"
)
