# Latent maps and loadings (docs/science.md §10): one job per mapped scan point, chosen by
# the run's maps section (workflow_config.map_points: maps.temperatures, each its nearest
# scan point, and maps.seed). A raster run maps every active latent's posterior mean on
# the input grid (GeoTIFF and PNG), a table or arrays run writes it per sample (CSV);
# both write the loadings. The job reads rho_min (stage_config("maps"), the spectra section).
include: "maps_common.smk"


rule maps_grid:
    input:
        point=lambda wc: map_point(wc, "nc"),
        weights=lambda wc: map_point(wc, "pt"),
        data="results/{run}/data/prepared.npz",
        run_config=stage_config("maps"),
    output:
        geotiff="results/{run}/maps/T={T}/latent_means.tif",
        means_png=map_report("latent_means"),
        loadings_csv="results/{run}/maps/T={T}/loadings.csv",
        loadings_png=map_report("loadings"),
    log:
        "results/{run}/logs/maps/T={T}.log",
    wildcard_constraints:
        run=map_runs(table=False),
    # before any training job left: a map needs only its own scan point, so it runs while
    # the scan goes on instead of after it, with the gathering and the figures
    priority: MAP_PRIORITY
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        MAPS_SHELL


# the same job for a table or arrays run: the latent means per sample (CSV), no raster
use rule maps_grid as maps_table with:
    output:
        means_csv="results/{run}/maps/T={T}/latent_means.csv",
        loadings_csv="results/{run}/maps/T={T}/loadings.csv",
        loadings_png=map_report("loadings"),
    wildcard_constraints:
        run=map_runs(table=True),
