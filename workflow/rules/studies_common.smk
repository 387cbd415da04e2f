# The functions of rules/studies.smk: each study's runs (its base run and the runs derived
# from it, studies.study_members), the scan point compared in each, and the study's
# command line (kept apart from the rules, as the Snakemake linter asks).
import json

from collapse_spectroscopy.config.studies import study_members


def study_names():
    """A regex matching the configured studies' names."""
    return any_of(config.get("studies", {}))


def study_seed(study):
    """The seed of the scan points compared: the base run's first scan seed."""
    return run_config(config["studies"][study]["run"])["scan"]["seeds"][0]


def study_point(study, run):
    """The T label of the scan point of `run` nearest (in log T) the study's temperature,
    by default the lowest T of the base run's scan."""
    spec = config["studies"][study]
    base = scan_temperatures(run_config(spec["run"])["scan"]["temperatures"])
    target = spec.get("temperature", min(base))
    temps = scan_temperatures(run_config(run)["scan"]["temperatures"])
    return scan_point_label(min(temps, key=lambda t: abs(math.log(t / target))))


def study_runs_of(study):
    """(value, run) of each value of the study, then (None, base run) if not among them."""
    members = study_members(config, study)
    base = config["studies"][study]["run"]
    extra = [] if base in [run for _, run in members] else [(None, base)]
    return members + extra


def study_inputs(wildcards):
    """What the study's command reads of each of its runs."""
    seed = study_seed(wildcards.study)
    out = []
    for _, run in study_runs_of(wildcards.study):
        point = (study_point(wildcards.study, run), seed)
        out += [f"results/{run}/spectra.csv", f"results/{run}/data/prepared.npz"]
        out += [scan_point_file(run, point), scan_point_file(run, point, ".pt")]
    return out


def study_args(wildcards):
    """--member VALUE RUN_DIR T for each value, --base, --seed, --vary, --rho-min."""
    study = wildcards.study
    spec = config["studies"][study]
    args = [
        f"--member {shlex.quote(json.dumps(value))} results/{run} "
        f"{study_point(study, run)}"
        for value, run in study_members(config, study)
    ]
    base = spec["run"]
    args += [
        f"--base results/{base} {study_point(study, base)}",
        f"--seed {study_seed(study)}",
        f"--vary {shlex.quote(spec['vary'])} --name {shlex.quote(study)}",
        f"--rho-min {run_config(base)['spectra']['rho_min']!r}",
    ]
    return " ".join(args)


def study_targets():
    """The table and figure of each study of `default_studies` (absent: every configured
    study), as `default_runs` selects the runs of `all`."""
    chosen = config.get("default_studies", list(config.get("studies", {})))
    return [
        f"results/studies/{study}/{name}"
        for study in chosen
        for name in ("spectra.csv", "study.png")
    ]
