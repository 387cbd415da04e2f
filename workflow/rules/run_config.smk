# The configuration each job reads, results/{run}/config/{stage}.json: the sections of the
# run's resolved configuration (every key of the schema, defaults filled in) that command
# `stage` reads. Why one file per stage: see stage_config in common.smk.


# writing a small JSON file: never worth a cluster job
localrules:
    run_config,


rule run_config:
    output:
        "results/{run}/config/{stage}.json",
    log:
        "results/{run}/logs/config_{stage}.log",
    # at the start, not between the last training job and the figures it configures
    priority: MAP_PRIORITY
    params:
        sections=lambda wc: settings.stage_config(run_config(wc.run), wc.stage),
    run:
        settings.write_run_config(output[0], params.sections, log=log[0])
